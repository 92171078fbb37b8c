# Shared compile settings for our own targets (not third-party headers).
function(longlive_target_defaults target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  if(LONGLIVE_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
endfunction()

# One engine component = one static library over the sources of its folders, so a component
# can be built and tested alone (keeps rebuilds short on small machines).
#   longlive_component(NAME dirs... DEPS libs...)
function(longlive_component name)
  cmake_parse_arguments(ARG "" "" "DIRS;DEPS" ${ARGN})
  set(sources)
  foreach(dir IN LISTS ARG_DIRS)
    file(GLOB dir_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*.cpp)
    list(APPEND sources ${dir_sources})
    if(LONGLIVE_WITH_CUDA)
      file(GLOB dir_cuda CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*.cu)
      list(APPEND sources ${dir_cuda})
    endif()
  endforeach()
  if(NOT sources)
    # A component whose folders are still empty: keep the target so dependents link.
    set(empty ${CMAKE_CURRENT_BINARY_DIR}/${name}_empty.cpp)
    file(WRITE ${empty} "// no sources yet\n")
    set(sources ${empty})
  endif()
  add_library(${name} STATIC ${sources})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  longlive_target_defaults(${name})
endfunction()

# One GoogleTest executable per test folder: tests/<area>/*.cpp -> test_<area>.
#   longlive_test(area LIBS libs...)
function(longlive_test area)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${area}/*.cpp)
  if(NOT sources)
    return()
  endif()
  set(target test_${area})
  add_executable(${target} ${sources})
  target_compile_definitions(${target} PRIVATE LONGLIVE_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/support
                                               ${PROJECT_SOURCE_DIR}/engine/src)
  target_link_libraries(${target} PRIVATE ${ARG_LIBS} longlive_test_support GTest::gtest GTest::gmock)
  longlive_target_defaults(${target})
  gtest_discover_tests(${target} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS ${area})
endfunction()
