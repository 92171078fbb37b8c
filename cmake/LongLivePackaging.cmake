# Install rules and the Debian package: `cmake --build build --target package` writes
# build/longlive-studio_<version>_amd64.deb for Debian 12 (packaging/test_deb.sh installs it into
# a clean Debian 12 chroot and runs it).
#
# LibTorch is bundled (LONGLIVE_BUNDLE_TORCH, default ON) in /usr/lib/longlive-studio: Debian 12
# has no LibTorch 2.11 (its python3-torch is 1.13, another ABI), the engine is built against the
# venv's wheel, and a desktop app must start after `apt install ./longlive-studio.deb` without a
# pip step. The package therefore carries the wheel's libraries (LibTorch, and for the CUDA wheel
# its CUDA runtime, cuBLAS, cuDNN, NCCL: ~3.5 GB unpacked); only the NVIDIA driver (libcuda) comes
# from the system, recommended, not required (the studio runs on the CPU without it). Everything
# else (Qt 6, FFmpeg, SentencePiece, spdlog, fmt, ImGui) is a Debian 12 package found by
# dpkg-shlibdeps. OFF: the binaries keep the build's RUNPATH to the venv (a local install only).
include(GNUInstallDirs)
option(LONGLIVE_BUNDLE_TORCH "Bundle the LibTorch (and CUDA) libraries in the package" ON)
set(LONGLIVE_PRIVATE_LIBDIR ${CMAKE_INSTALL_LIBDIR}/longlive-studio)

set(_longlive_programs longlive)
if(TARGET longlive-studio)
  list(APPEND _longlive_programs longlive-studio)
endif()
if(LONGLIVE_BUNDLE_TORCH)
  # $ORIGIN: the bundled LibTorch libraries carry RPATH $ORIGIN themselves, so one flat folder
  # resolves LibTorch -> cuDNN -> cuBLAS without LD_LIBRARY_PATH.
  set_target_properties(${_longlive_programs} PROPERTIES
                        INSTALL_RPATH "$ORIGIN/../${LONGLIVE_PRIVATE_LIBDIR}")
endif()
install(TARGETS ${_longlive_programs} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/presets/ DESTINATION ${CMAKE_INSTALL_DATADIR}/longlive-studio/presets
        FILES_MATCHING PATTERN "*.json")
install(FILES ${PROJECT_SOURCE_DIR}/resources/longlive-studio.desktop
        DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
install(FILES ${PROJECT_SOURCE_DIR}/resources/longlive-studio.svg
        DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps)

if(LONGLIVE_BUNDLE_TORCH)
  # The wheel's folders: torch/lib and the nvidia/*/lib folders its libraries point to.
  get_filename_component(_site_packages "${Torch_DIR}/../../../.." ABSOLUTE)
  # The CUDA toolkit the kernels were built with: the programs link its libnvrtc and libcudart.
  set(_cuda_lib_root "/nonexistent")
  if(LONGLIVE_WITH_CUDA AND CUDAToolkit_LIBRARY_ROOT)
    set(_cuda_lib_root "${CUDAToolkit_LIBRARY_ROOT}")
  endif()
  # Where the programs' own CUDA dependencies (libnvrtc, libcudart) are found: the build tree
  # reaches them through LibTorch's RPATH, which GET_RUNTIME_DEPENDENCIES does not apply to them.
  file(GLOB _wheel_dirs LIST_DIRECTORIES true "${_site_packages}/nvidia/*/lib")
  list(APPEND _wheel_dirs "${_site_packages}/torch/lib")
  set(_bundle_programs)
  foreach(p ${_longlive_programs})
    list(APPEND _bundle_programs "$<TARGET_FILE:${p}>")
  endforeach()
  install(CODE "
    set(_programs \"${_bundle_programs}\")
    set(_site \"${_site_packages}\")
    set(_cuda \"${_cuda_lib_root}\")
    # file(INSTALL) adds DESTDIR (CPack's staging folder) itself.
    set(_dest \"\${CMAKE_INSTALL_PREFIX}/${LONGLIVE_PRIVATE_LIBDIR}\")
    # What the programs load from the wheel (LibTorch and its CUDA libraries) and from the CUDA
    # toolkit they were built with.
    file(GET_RUNTIME_DEPENDENCIES EXECUTABLES \${_programs}
         RESOLVED_DEPENDENCIES_VAR _deps UNRESOLVED_DEPENDENCIES_VAR _missing
         DIRECTORIES ${_wheel_dirs}
         POST_INCLUDE_REGEXES \"^\${_site}/\" \"^\${_cuda}/\" POST_EXCLUDE_REGEXES \".*\"
         CONFLICTING_DEPENDENCIES_PREFIX _conflicts)
    # Plus what cuDNN and NVRTC load with dlopen from their folders (invisible to ldd): cuDNN's
    # engine libraries and NVRTC's builtins. Not whole folders: the wheel's NVSHMEM and cuFile
    # transport plugins need MPI, UCX and libfabric, which a desktop never has.
    # A library found in two places (the wheel's and the toolkit's libcudart) lands here, not in
    # _deps: take the first candidate.
    foreach(_name \${_conflicts_FILENAMES})
      list(GET _conflicts_\${_name} 0 _first)
      list(APPEND _deps \"\${_first}\")
    endforeach()
    set(_files \${_deps})
    foreach(_d \${_deps})
      get_filename_component(_dir \"\${_d}\" DIRECTORY)
      get_filename_component(_name \"\${_d}\" NAME)
      if(_name MATCHES \"^libcudnn\\\\.so\")
        file(GLOB _extra \"\${_dir}/libcudnn_*.so*\")
        list(APPEND _files \${_extra})
      elseif(_name MATCHES \"^libnvrtc\\\\.so\")
        file(GLOB _extra \"\${_dir}/libnvrtc-builtins*.so*\")
        list(APPEND _files \${_extra})
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _files)
    # Python bindings and the Python-only shared-memory helper are never loaded by C++.
    list(FILTER _files EXCLUDE REGEX \"libtorch_python|libshm|_C\\\\.\")
    foreach(_f \${_files})
      file(INSTALL \"\${_f}\" DESTINATION \"\${_dest}\" FOLLOW_SYMLINK_CHAIN)
    endforeach()
    list(LENGTH _files _count)
    message(STATUS \"Bundled \${_count} LibTorch/CUDA libraries into \${_dest}\")
  ")
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME longlive-studio)
set(CPACK_PACKAGE_VENDOR "LongLive Studio")
set(CPACK_PACKAGE_CONTACT "LongLive Studio maintainers <longlive-studio@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Live streaming video diffusion studio (LongLive)")
set(CPACK_PACKAGE_DESCRIPTION
    "Performs LongLive-style streaming text-to-video live: prompt switches, blends and
transitions at block edges, presets, recording to MP4. Includes the longlive command line
(generate, render, bench, soak) and a tiny random model to try it without weights.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION video)
# Declared by hand: dpkg-shlibdeps also walks the bundled CUDA libraries and stops at libcuda.so.1
# (the NVIDIA driver's, absent on a CPU machine). These are the Debian 12 packages of what the two
# programs link (readelf -d); software OpenGL and the xcb platform plugin serve machines
# without a GPU driver.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.36), libstdc++6 (>= 12), libgcc-s1, libqt6core6 (>= 6.4), libqt6gui6 (>= 6.4), libqt6widgets6 (>= 6.4), libqt6opengl6 (>= 6.4), libqt6openglwidgets6 (>= 6.4), qt6-qpa-plugins, libavcodec59, libavformat59, libavutil57, libswscale6, libavdevice59, libsentencepiece0, libspdlog1.10, libfmt9, libstb0, libgl1, libegl1, libgl1-mesa-dri")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "nvidia-driver")
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)  # xz takes minutes per GB on the bundled libraries
include(CPack)
