#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (own build dir, AddressSanitizer + UndefinedBehavior-
# Sanitizer) and runs each for $LONGLIVE_FUZZ_SECONDS (default 30) from the committed seed
# corpus; then, in the same build, the parsers' unit tests (labels core, io, preset: checkpoint,
# safetensors and preset errors; LONGLIVE_FUZZ_UNIT_TESTS=0 skips them). Needs clang and
# libclang-rt (setup.sh installs them) and the project venv's LibTorch.
#   packaging/fuzz.sh                  every parser, then the unit tests (CI: 30 s each)
#   packaging/fuzz.sh timeline preset  only these fuzzers
# LONGLIVE_FUZZ_CORPUS_DIR=<dir> keeps the inputs each run found in <dir>/<target> (long local
# runs); by default they go to a temporary folder that is removed.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LONGLIVE_FUZZ_BUILD_DIR:-$repo/build-fuzz}
seconds=${LONGLIVE_FUZZ_SECONDS:-30}
jobs=${LONGLIVE_JOBS:-$(nproc)}
say() { printf '\033[1m[fuzz]\033[0m %s\n' "$*"; }

# UBSan stops at its first report (a fuzzer's crash, a test's failure).
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
# A build folder configured with other flags (before UBSan was added) is configured again.
if [ ! -f "$build/build.ninja" ] ||
   ! grep -qxF "CMAKE_CXX_FLAGS:STRING=$flags" "$build/CMakeCache.txt" 2>/dev/null; then
  say "configuring $build (clang, libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer)"
  mkdir -p "$build"
  rm -f "$build/CMakeCache.txt"
  torch_prefix=$("$repo/.venv/bin/python3" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DLONGLIVE_GUI=OFF -DLONGLIVE_CUDA=OFF -DLONGLIVE_FUZZ=ON \
    -DCMAKE_CXX_FLAGS="$flags" >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; rm -f "$build/build.ninja"; exit 1; }
fi
# target -> seed corpus folder under tests/fuzz/corpus
declare -A seeds_of=([safetensors_header]=safetensors [safetensors_file]=safetensors
  [torch_checkpoint]=torch_checkpoint [preset]=preset [timeline]=timeline
  [prompt_set]=prompt_set [tokenizer]=tokenizer [video_reader]=video_reader)
targets=(safetensors_header safetensors_file torch_checkpoint preset timeline prompt_set tokenizer
  video_reader)
unit_tests=${LONGLIVE_FUZZ_UNIT_TESTS:-1}
if [ $# -gt 0 ]; then
  unit_tests=0
  for t in "$@"; do [ -n "${seeds_of[$t]:-}" ] || { say "unknown fuzz target '$t' (known: ${targets[*]})"; exit 2; }; done
  targets=("$@")
fi
say "building fuzz targets"
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}" >/dev/null
# LibTorch's static initialisers allocate for the process lifetime: leak and ODR checks off.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$repo/packaging/sanitizers/ubsan.supp}
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
for target in "${targets[@]}"; do
  # libFuzzer writes new inputs into its first corpus folder
  if [ -n "${LONGLIVE_FUZZ_CORPUS_DIR:-}" ]; then
    corpus=$LONGLIVE_FUZZ_CORPUS_DIR/$target
    mkdir -p "$corpus"
  else
    corpus=$(mktemp -d)
  fi
  seeds=$repo/tests/fuzz/corpus/${seeds_of[$target]}
  log=$build/fuzz_$target.log
  say "fuzz_$target for ${seconds}s (seeds: ${seeds#"$repo"/})"
  status=0
  "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -max_len=65536 \
    -artifact_prefix="$artifacts/$target-" "$corpus" "$seeds" >"$log" 2>&1 || status=$?
  grep -E "^#[0-9]+[[:space:]]+DONE|^Done" "$log" || true
  [ -n "${LONGLIVE_FUZZ_CORPUS_DIR:-}" ] || rm -rf "$corpus"
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    say "fuzz_$target failed (exit $status); reproducer under $artifacts"
    exit 1
  fi
done

# The parsers' unit tests in the same sanitized build: their error paths (truncated, corrupt and
# hostile checkpoints, bad presets) run under ASan + UBSan in CI too. Leak and ODR checks stay off
# (LibTorch's initialisers); one OpenMP thread (LibTorch's pool is not instrumented).
if [ "$unit_tests" != 0 ]; then
  say "parsers' unit tests under ASan + UBSan (test_core, test_io, test_preset)"
  cmake --build "$build" -j "$jobs" --target test_core test_io test_preset >"$build/unit_build.log" 2>&1 ||
    { tail -40 "$build/unit_build.log"; exit 1; }
  (cd "$build" && OMP_NUM_THREADS=1 ctest --output-on-failure -j "$jobs" --timeout 600 \
    -L "^(core|io|preset)$" -LE "fixtures|soak")
fi
