# The studio's Qt-free parts (the inputs a new engine opens again, frame pacing, live recording, session frames, the Wan VAE export)
# as a library of their own: their tests link the engine and the recorder only. Included by ui/CMakeLists.txt, and
# by the top level without the studio (LONGLIVE_GUI=OFF, e.g. the sanitizer builds) when the
# recorder is built, so test_ui_core runs there too.
set(ui_core_sources ${CMAKE_CURRENT_LIST_DIR}/followed_inputs.cpp
                    ${CMAKE_CURRENT_LIST_DIR}/followed_inputs.h
                    ${CMAKE_CURRENT_LIST_DIR}/frame_pacer.cpp
                    ${CMAKE_CURRENT_LIST_DIR}/frame_pacer.h
                    ${CMAKE_CURRENT_LIST_DIR}/live_recording.cpp
                    ${CMAKE_CURRENT_LIST_DIR}/live_recording.h
                    ${CMAKE_CURRENT_LIST_DIR}/wan_export.cpp
                    ${CMAKE_CURRENT_LIST_DIR}/wan_export.h)
add_library(longlive_ui_core STATIC ${ui_core_sources})
target_include_directories(longlive_ui_core PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(longlive_ui_core PUBLIC longlive_engine longlive_recorder)
longlive_target_defaults(longlive_ui_core)
