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
  build-essential cmake ninja-build ccache pkg-config git python3 python3-venv python3-pip
  qt6-base-dev libqt6opengl6-dev libgl-dev libgl1-mesa-dri
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  libimgui-dev nlohmann-json3-dev libgtest-dev libgmock-dev libspdlog-dev libfmt-dev libcli11-dev
  libsentencepiece-dev sentencepiece
  liblo-dev liblo-tools libasound2-dev
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

configure_and_build() {
  local torch_prefix
  torch_prefix=$("$venv/bin/python3" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  if [ ! -f "$build_dir/build.ninja" ]; then
    say "configuring $build_dir"
    mkdir -p "$build_dir"
    if ! cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_PREFIX_PATH="$torch_prefix" -DLONGLIVE_GUI=ON ${LONGLIVE_CMAKE_ARGS:-} \
      >"$build_dir/configure.log" 2>&1; then
      cat "$build_dir/configure.log"
      rm -f "$build_dir/build.ninja"
      exit 1
    fi
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
