#!/usr/bin/env bash
# Builds the CPU configuration under a sanitizer (own build dir each) and runs the tests there.
#   packaging/sanitize.sh asan [ctest args]   AddressSanitizer + UndefinedBehaviorSanitizer in
#                                             build-asan (`ubsan` is the same build), whole suite
#   packaging/sanitize.sh tsan [ctest args]   ThreadSanitizer in build-tsan, the threaded parts:
#                                             engine worker and command queue, prompt-cache
#                                             prefetch, recorder and its encoder thread, async
#                                             decoder, live recording (ui_core)
# Extra arguments go to ctest (e.g. `-R Timeline`); without them the default selection runs.
# LibTorch, OpenMP and FFmpeg are not instrumented: packaging/sanitizers/*.supp hold the
# suppressions for reports inside them, each with its reason. LONGLIVE_SANITIZE_TARGETS limits
# the build (default: everything the selection runs). Needs clang (setup.sh installs it) and the
# project venv's LibTorch.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-}
shift || true
jobs=${LONGLIVE_JOBS:-$(nproc)}
supp=$repo/packaging/sanitizers
say() { printf '\033[1m[sanitize]\033[0m %s\n' "$*"; }

case "$mode" in
  asan | ubsan)
    build=${LONGLIVE_SANITIZE_BUILD_DIR:-$repo/build-asan}
    flags="-fsanitize=address,undefined -fno-omit-frame-pointer"
    default_targets="all"
    # The CPU suite minus what needs a GPU or a display; fixture re-runs repeat the same code.
    default_ctest=(-LE "fixtures|soak")
    ;;
  tsan)
    build=${LONGLIVE_SANITIZE_BUILD_DIR:-$repo/build-tsan}
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    default_targets="test_engine test_text test_recorder test_ui_core"
    default_ctest=(-L "^(engine|text|recorder|ui_core)$" -LE "fixtures|soak")
    ;;
  *)
    echo "usage: packaging/sanitize.sh asan|ubsan|tsan [ctest args]" >&2
    exit 2
    ;;
esac

if [ ! -f "$build/build.ninja" ]; then
  say "configuring $build ($flags)"
  mkdir -p "$build"
  torch_prefix=$("$repo/.venv/bin/python3" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DLONGLIVE_GUI=OFF -DLONGLIVE_CUDA=OFF \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="${flags%% *}" -DCMAKE_SHARED_LINKER_FLAGS="${flags%% *}" \
    >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; rm -f "$build/build.ninja"; exit 1; }
fi
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
read -r -a targets <<<"${LONGLIVE_SANITIZE_TARGETS:-$default_targets}"
say "building ${targets[*]} in $build (-j$jobs)"
# Targets that this configuration does not have (no FFmpeg: no recorder) are left out.
available=$(cmake --build "$build" --target help | sed -n 's/^\([A-Za-z0-9_.-]*\): .*/\1/p')
build_targets=()
for t in "${targets[@]}"; do
  if [ "$t" = all ] || grep -qx "$t" <<<"$available"; then build_targets+=("$t"); fi
done
cmake --build "$build" -j "$jobs" --target "${build_targets[@]}" >"$build/build.log" 2>&1 ||
  { tail -40 "$build/build.log"; exit 1; }

# One thread for LibTorch's and OpenMP's pools: they are not instrumented (TSan cannot see their
# barriers) and the tests' threading is ours, not theirs.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# LibTorch's static initialisers allocate for the process lifetime (leaks off), and its shared
# libraries repeat some global symbols (ODR check off).
export ASAN_OPTIONS="detect_leaks=0:detect_odr_violation=0:abort_on_error=1:suppressions=$supp/asan.supp"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"
ctest_args=("$@")
[ $# -gt 0 ] || ctest_args=("${default_ctest[@]}")
say "ctest ${ctest_args[*]}"
cd "$build"
ctest --output-on-failure -j "$jobs" --timeout 1800 "${ctest_args[@]}"
