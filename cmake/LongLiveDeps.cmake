# Finds every third-party dependency. LibTorch comes from the PyPI torch wheel: the caller passes
# its cmake prefix (packaging/setup.sh does), or we ask the project venv's python for it.
if(NOT Torch_DIR)
  foreach(py IN ITEMS "${CMAKE_SOURCE_DIR}/.venv/bin/python3" python3)
    execute_process(COMMAND ${py} -c "import torch;print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _torch_rc ERROR_QUIET)
    if(_torch_rc EQUAL 0 AND _torch_prefix)
      list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
      break()
    endif()
  endforeach()
endif()

# Decide CUDA before LibTorch's config runs, so both agree on the toolkit.
include(CheckLanguage)
check_language(CUDA)
# Our kernels are built for every GPU generation users have: Ampere (sm_80 A100, sm_86 RTX 30),
# Ada (sm_89 RTX 40), Hopper (sm_90), Blackwell (sm_100 B200, sm_120 RTX 50), plus PTX of the
# newest for what comes after. Which fast path a device may take is decided at run time
# (longlive/capabilities.h). Naming the list also keeps LibTorch's config from probing for
# installed GPUs (none in CI).
set(LONGLIVE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;100-real;120-real;120-virtual"
    CACHE STRING "CUDA architectures of our kernels (CMake CUDA_ARCHITECTURES syntax)")
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(_torch_archs)
  foreach(_arch IN LISTS LONGLIVE_CUDA_ARCHITECTURES)
    if(_arch MATCHES "^([0-9]+)([0-9])-real$")
      list(APPEND _torch_archs "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    endif()
  endforeach()
  list(JOIN _torch_archs ";" _torch_arch_list)
  set(ENV{TORCH_CUDA_ARCH_LIST} "${_torch_arch_list}")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(Torch REQUIRED)
set(LONGLIVE_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(LONGLIVE_TORCH_HAS_CUDA ON)
endif()
if(LONGLIVE_CUDA STREQUAL "AUTO")
  if(LONGLIVE_TORCH_HAS_CUDA AND CMAKE_CUDA_COMPILER)
    set(LONGLIVE_WITH_CUDA ON)
  else()
    set(LONGLIVE_WITH_CUDA OFF)
  endif()
else()
  set(LONGLIVE_WITH_CUDA ${LONGLIVE_CUDA})
endif()
if(LONGLIVE_WITH_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES ${LONGLIVE_CUDA_ARCHITECTURES})
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()
message(STATUS "LongLive: LibTorch ${Torch_VERSION} (CUDA in LibTorch: ${LONGLIVE_TORCH_HAS_CUDA}), CUDA kernels: ${LONGLIVE_WITH_CUDA}")

find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
if(LONGLIVE_TESTS)
  find_package(GTest REQUIRED)
endif()
# libavdevice: live inputs (V4L2 cameras, screen grabs) for VACE and video-to-video.
if(LONGLIVE_GUI)
  pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavformat libavcodec libavutil libswscale
                    libavdevice)
else()
  pkg_check_modules(FFMPEG QUIET IMPORTED_TARGET libavformat libavcodec libavutil libswscale
                    libavdevice)
endif()
set(LONGLIVE_WITH_FFMPEG ${FFMPEG_FOUND})
# OSC control (control/): liblo, the OSC library of the Linux audio/VJ tools (small C API, its own
# receive thread, UDP and TCP). Required with the studio, optional otherwise.
if(LONGLIVE_GUI)
  pkg_check_modules(LIBLO REQUIRED IMPORTED_TARGET liblo)
else()
  pkg_check_modules(LIBLO QUIET IMPORTED_TARGET liblo)
endif()
set(LONGLIVE_WITH_OSC ${LIBLO_FOUND})
message(STATUS "LongLive: OSC control (liblo): ${LONGLIVE_WITH_OSC}")
# MIDI input (control/): the ALSA sequencer (libasound), which every Linux MIDI device and app
# speaks natively (USB controllers, virtual ports of DAWs). Optional: the binding logic builds
# without it.
pkg_check_modules(ALSA QUIET IMPORTED_TARGET alsa)
set(LONGLIVE_WITH_ALSA ${ALSA_FOUND})
message(STATUS "LongLive: MIDI input (ALSA sequencer): ${LONGLIVE_WITH_ALSA}")
if(LONGLIVE_GUI)
  find_package(Qt6 REQUIRED COMPONENTS Core Gui Widgets OpenGL OpenGLWidgets Test)
  # Debian's libimgui-dev: a static libimgui with the backends (OpenGL 3 included), fonts via stb.
  pkg_check_modules(IMGUI REQUIRED IMPORTED_TARGET imgui)
endif()
# GL headers for the video view's CUDA-GL interop (ui/interop); EGL for its headless GPU test.
find_package(OpenGL QUIET COMPONENTS OpenGL EGL)
message(STATUS "LongLive: GL headers (CUDA-GL interop): ${OPENGL_INCLUDE_DIR}, EGL (headless interop test): ${OpenGL_EGL_FOUND}")
