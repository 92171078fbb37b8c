#!/usr/bin/env bash
# On the GPU box (repo root or a snapshot of it): build the engine, CLI and tests without Qt/FFmpeg
# for sm_90 against the box's Python torch, run ctest (CUDA tests included), print a summary.
#   packaging/device/build_and_test.sh [SOURCE_DIR]
# Debian dev packages the box lacks (gtest, nlohmann-json, spdlog, fmt, CLI11, sentencepiece,
# pkgconf) are taken from .debs/ when present (packaging/device/fetch_debs.sh makes it).
set -uo pipefail
src=$(cd "${1:-.}" && pwd)
build=${LONGLIVE_GPU_BUILD:-$PWD/build-gpu}
deps=/opt/longlive-deps
debs=${LONGLIVE_DEBS:-$PWD/.debs}

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
nvcc --version | tail -2
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
cmake --version | head -1
echo "cores $(nproc)"

if [ -d "$debs" ]; then
  mkdir -p "$deps"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$deps"; done
  export PKG_CONFIG_SYSROOT_DIR=$deps
  # ffmpeg/: the studio's minimal FFmpeg (packaging/device/prepare_studio_carry.sh), when there.
  export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig:$deps/ffmpeg/lib/pkgconfig
  export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  command -v pkg-config >/dev/null || export PKG_CONFIG=$deps/usr/bin/pkgconf
fi
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
# cudnn-frontend headers (FP8 attention) from the PyPI wheel carried in .whl/, if any.
fe_dir=
for whl in "$PWD"/.whl/nvidia_cudnn_frontend-*.whl; do
  [ -f "$whl" ] || continue
  mkdir -p "$deps/cudnn_frontend" && python3 -m zipfile -e "$whl" "$deps/cudnn_frontend" &&
    fe_dir=$deps/cudnn_frontend/include
  break
done
# ... or only its headers, as the snapshot's cudnn_frontend.tar.xz (packaging/device/make_snapshot.sh).
if [ -z "$fe_dir" ] && [ -f "$PWD/cudnn_frontend.tar.xz" ]; then
  mkdir -p "$deps/cudnn_frontend" && tar -xJf "$PWD/cudnn_frontend.tar.xz" -C "$deps/cudnn_frontend" &&
    fe_dir=$deps/cudnn_frontend/include
fi

# FlashAttention-3 (sm_90 attention backend) from .fa3/ when carried (packaging/fetch_fa3.sh),
# or unpacked here from the snapshot's fa3.tar.xz (make_snapshot.sh): every build gets it.
[ -f "$PWD/fa3.tar.xz" ] && [ ! -d "$PWD/.fa3" ] && tar -xJf "$PWD/fa3.tar.xz" -C "$PWD"
fa3_dir=
[ -f "$PWD/.fa3/flash-attention/hopper/flash_fwd_launch_template.h" ] && fa3_dir=$PWD/.fa3
echo "== configure"
# LONGLIVE_GUI=ON builds the studio too (studio_run.sh unpacks Qt, FFmpeg and the rest first).
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLIVE_GUI=${LONGLIVE_GUI:-OFF} -DLONGLIVE_CUDA=ON \
  ${LONGLIVE_CUDA_ARCHITECTURES:+-DLONGLIVE_CUDA_ARCHITECTURES=$LONGLIVE_CUDA_ARCHITECTURES} -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" \
  ${fe_dir:+-DLONGLIVE_CUDNN_FRONTEND_DIR=$fe_dir} ${fa3_dir:+-DLONGLIVE_FA3_DIR=$fa3_dir} \
  ${PKG_CONFIG:+-DPKG_CONFIG_EXECUTABLE=$PKG_CONFIG} >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
grep "LongLive" "$build.configure.log"
echo "== build"
start=$(date +%s)
# LONGLIVE_BUILD_TARGETS="test_model longlive" builds only those (a short device call).
targets=()
for t in ${LONGLIVE_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}" 2>&1 | grep -E "error|warning: unused|FAILED" | head -40
cmake --build "$build" -j "$(nproc)" "${targets[@]}" >/dev/null || exit 1
echo "built in $(( $(date +%s) - start )) s"
# test_interop_egl (headless CUDA-GL interop): glvnd's libEGL (from .debs) finds NVIDIA's EGL
# library through a vendor JSON; write one when the driver installed none.
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] &&
  ! ls /usr/share/glvnd/egl_vendor.d/*nvidia*.json /etc/glvnd/egl_vendor.d/*nvidia*.json >/dev/null 2>&1; then
  egl_nvidia=$(ldconfig -p | awk '/libEGL_nvidia\.so\.0 /{print $NF; exit}')
  if [ -n "$egl_nvidia" ]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s"}}\n' "$egl_nvidia" >"$build/nvidia_egl.json"
    export __EGL_VENDOR_LIBRARY_FILENAMES=$build/nvidia_egl.json
  fi
fi
# LONGLIVE_CTEST=0 skips ctest (quick iterations that run gpu_tests.sh / bench.sh only).
if [ "${LONGLIVE_CTEST:-1}" != 0 ]; then
  echo "== tests"
  (cd "$build" && ctest --output-on-failure -j 4 --timeout 600 2>&1 | tail -25)
fi
