#!/usr/bin/env bash
# One entry point for newcomers and CI.
#   packaging/setup.sh run    install what is missing, configure, build, launch longlive-studio
#   packaging/setup.sh test   install what is missing, configure, build, run the whole test suite
#                             (ctest, then 30 s of libFuzzer per parser: packaging/fuzz.sh)
#   packaging/setup.sh build  install what is missing, configure, build
# Idempotent: a second run installs nothing and only rebuilds what changed.
set -euo pipefail

mode=${1:-run}
shift || true
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${LONGLIVE_BUILD_DIR:-$repo/build}
venv=$repo/.venv
torch_version=2.11.0
jobs=${LONGLIVE_JOBS:-$(nproc)}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git curl python3 python3-venv python3-pip
  qt6-base-dev libqt6opengl6-dev libgl-dev libgl1-mesa-dri
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libavdevice-dev
  libimgui-dev nlohmann-json3-dev libgtest-dev libgmock-dev libspdlog-dev libfmt-dev libcli11-dev
  libsentencepiece-dev sentencepiece
  liblo-dev liblo-tools libasound2-dev libgloo-dev
  xvfb xauth xdotool x11-utils clang libclang-rt-14-dev
)

install_system_packages() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_libtorch() {
  if [ -x "$venv/bin/python3" ] &&
     "$venv/bin/python3" -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
    return 0
  fi
  say "creating $venv with torch==$torch_version (LibTorch for C++, a few GB once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "torch==$torch_version" numpy safetensors
}

# Header-only cudnn-frontend (cuDNN's FP8 attention for the fp8 presets): optional, the engine
# builds without it (bf16 attention).
cudnn_frontend_version=1.32.0
install_cudnn_frontend() {
  if "$venv/bin/python3" -c "import importlib.metadata as m,sys; sys.exit(m.version('nvidia-cudnn-frontend') != '$cudnn_frontend_version')" 2>/dev/null; then
    return 0
  fi
  "$venv/bin/pip" install -q --no-deps "nvidia-cudnn-frontend==$cudnn_frontend_version" ||
    say "cudnn-frontend not installed: the FP8 presets will use bf16 attention"
}

# The fast path (our fused kernels, FP8, the decode stream, CUDA-GL interop) needs a CUDA compiler
# matching LibTorch's CUDA. A machine with an NVIDIA driver but no nvcc gets NVIDIA's own compiler
# wheels from PyPI (nvcc, crt, cccl headers, nvvm; ~300 MB) in the venv, beside the CUDA runtime
# and libraries the torch wheel already installed there; so does a system nvcc of another CUDA
# major version than LibTorch's. LONGLIVE_CUDA_WHEELS=1 forces this, =0 skips it. Sets cuda_root
# (empty: CMake finds the compiler itself, or builds without our kernels when there is none).
has_nvidia_gpu() { [ -e /proc/driver/nvidia/version ] || nvidia-smi -L >/dev/null 2>&1; }
system_nvcc() { command -v nvcc 2>/dev/null || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true; }
install_cuda_compiler() {
  local want=${LONGLIVE_CUDA_WHEELS:-auto}
  [ "$want" = 0 ] && return 0
  local cuda site root nvcc
  cuda=$("$venv/bin/python3" -c 'import torch;print(torch.version.cuda or "")')
  if [ "$want" = auto ]; then
    has_nvidia_gpu || return 0
    [ -n "$cuda" ] || return 0
    nvcc=$(system_nvcc)
    if [ -n "$nvcc" ] && "$nvcc" --version | grep -q "release ${cuda%%.*}\."; then return 0; fi
  fi
  [ -n "$cuda" ] || { say "LibTorch has no CUDA: no CUDA compiler installed"; return 0; }
  site=$("$venv/bin/python3" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
  root=$site/nvidia/cu${cuda%%.*}
  if [ ! -x "$root/bin/nvcc" ]; then
    say "NVIDIA GPU without a CUDA compiler: installing CUDA $cuda's nvcc from PyPI into $venv"
    "$venv/bin/python3" -m pip install -q "nvidia-cuda-nvcc==$cuda.*" "nvidia-cuda-crt==$cuda.*" \
      "nvidia-cuda-cccl==$cuda.*" "nvidia-nvvm==$cuda.*" "nvidia-cuda-runtime==$cuda.*"
  fi
  # The wheels ship versioned libraries only; CMake's FindCUDAToolkit looks for the plain names.
  local lib
  for lib in "$root"/lib/lib*.so.*; do
    [ -e "$lib" ] || continue
    local plain=${lib%%.so.*}.so
    [ -e "$plain" ] || ln -s "$(basename "$lib")" "$plain"
  done
  [ -e "$root/lib64" ] || ln -s lib "$root/lib64"
  cuda_root=$root
}

# FlashAttention-3's Hopper kernels (the fastest bf16 attention on sm_90, docs/benchmarks.md): its
# sources are fetched from GitHub at pinned commits into .fa3/ (packaging/fetch_fa3.sh; never
# kept in this repository) when the machine has an sm_90 GPU and a CUDA compiler. LONGLIVE_FA3=1
# fetches them on any machine (a build for a Hopper server), =0 never. Without them (no network,
# another GPU), attention runs on cuDNN: slower, never wrong. Sets fa3_dir.
gpu_compute_caps() { nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true; }
install_fa3() {
  local want=${LONGLIVE_FA3:-auto} dest=$repo/.fa3
  fa3_dir=
  [ "$want" = 0 ] && return 0
  if [ "$want" = auto ]; then
    gpu_compute_caps | grep -qx "9.0" || return 0
    [ -n "$cuda_root" ] || [ -n "$(system_nvcc)" ] || return 0
  fi
  if [ ! -f "$dest/flash-attention/hopper/flash_fwd_launch_template.h" ]; then
    say "fetching FlashAttention-3's sources for sm_90 into $dest (packaging/fetch_fa3.sh)"
    if ! bash "$repo/packaging/fetch_fa3.sh" "$dest" >"$repo/.fa3.log" 2>&1; then
      say "could not fetch FlashAttention-3 (.fa3.log says why): attention runs on cuDNN"
      rm -rf "$dest"
      return 0
    fi
  fi
  fa3_dir=$dest
}

configure_and_build() {
  local torch_prefix
  torch_prefix=$("$venv/bin/python3" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  if [ ! -f "$build_dir/build.ninja" ]; then
    say "configuring $build_dir"
    mkdir -p "$build_dir"
    local cuda_args=()
    # LibTorch's config still uses the legacy FindCUDA: name the root for both.
    [ -n "$cuda_root" ] && cuda_args=(-DCMAKE_CUDA_COMPILER="$cuda_root/bin/nvcc"
      -DCUDAToolkit_ROOT="$cuda_root" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root")
    if ! cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_PREFIX_PATH="$torch_prefix" -DLONGLIVE_GUI=ON "${cuda_args[@]}" \
      ${fa3_dir:+-DLONGLIVE_FA3_DIR="$fa3_dir"} ${LONGLIVE_CMAKE_ARGS:-} \
      >"$build_dir/configure.log" 2>&1; then
      cat "$build_dir/configure.log"
      rm -f "$build_dir/build.ninja"
      exit 1
    fi
  fi
  # FA3 fetched after the first configure (a new GPU, LONGLIVE_FA3=1): tell the existing build;
  # FA3's folder deleted since: build without it rather than fail the configure.
  local cached
  cached=$(sed -n 's/^LONGLIVE_FA3_DIR:PATH=//p' "$build_dir/CMakeCache.txt")
  if [ -n "$fa3_dir" ] && [ "$cached" != "$fa3_dir" ]; then
    cmake -DLONGLIVE_FA3_DIR="$fa3_dir" "$build_dir" >>"$build_dir/configure.log" 2>&1
  elif [ -n "$cached" ] && [ ! -d "$cached" ]; then
    say "$cached is gone: building without FlashAttention-3"
    cmake -DLONGLIVE_FA3_DIR= "$build_dir" >>"$build_dir/configure.log" 2>&1
  fi
  say "building (ninja -j$jobs)"
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  cmake --build "$build_dir" -j "$jobs" | grep -v '^\[' || true
  # grep swallows ninja's status: check the build really finished.
  cmake --build "$build_dir" -j "$jobs" >/dev/null
}

install_system_packages
install_libtorch
install_cudnn_frontend
cuda_root=
install_cuda_compiler
fa3_dir=
install_fa3
configure_and_build

case "$mode" in
  build) ;;
  test)
    say "running tests (ctest)"
    cd "$build_dir"
    ctest --output-on-failure -j "$jobs" --timeout 900 "$@"
    # The parsers of untrusted files under libFuzzer, 30 s each (LONGLIVE_FUZZ_SECONDS=0 skips).
    if [ "${LONGLIVE_FUZZ_SECONDS:-30}" != 0 ] && [ $# -eq 0 ]; then
      "$repo/packaging/fuzz.sh"
    fi
    ;;
  run)
    say "launching longlive-studio"
    exec "$build_dir/app/longlive-studio" "$@"
    ;;
  *)
    echo "usage: packaging/setup.sh run|test|build" >&2
    exit 2
    ;;
esac
