#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (own build dir) and runs each for $LONGLIVE_FUZZ_SECONDS
# (default 30) from the committed seed corpus. Needs clang and libclang-rt (setup.sh installs
# them) and the project venv's LibTorch.
#   packaging/fuzz.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LONGLIVE_FUZZ_BUILD_DIR:-$repo/build-fuzz}
seconds=${LONGLIVE_FUZZ_SECONDS:-30}
jobs=${LONGLIVE_JOBS:-$(nproc)}
say() { printf '\033[1m[fuzz]\033[0m %s\n' "$*"; }

if [ ! -f "$build/build.ninja" ]; then
  say "configuring $build (clang, libFuzzer + AddressSanitizer)"
  mkdir -p "$build"
  torch_prefix=$("$repo/.venv/bin/python3" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DLONGLIVE_GUI=OFF -DLONGLIVE_CUDA=OFF -DLONGLIVE_FUZZ=ON \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address" >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; rm -f "$build/build.ninja"; exit 1; }
fi
say "building fuzz targets"
cmake --build "$build" -j "$jobs" --target fuzz_safetensors_header fuzz_preset >/dev/null
# LibTorch's static initialisers allocate for the process lifetime: leak and ODR checks off.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0}
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
for target in safetensors_header preset; do
  corpus=$(mktemp -d)  # libFuzzer writes new inputs into its first corpus folder
  seeds=$repo/tests/fuzz/corpus/${target%%_*}
  log=$build/fuzz_$target.log
  say "fuzz_$target for ${seconds}s (seeds: ${seeds#"$repo"/})"
  status=0
  "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -max_len=65536 \
    -artifact_prefix="$artifacts/$target-" "$corpus" "$seeds" >"$log" 2>&1 || status=$?
  grep -E "^#[0-9]+[[:space:]]+DONE|^Done" "$log" || true
  rm -rf "$corpus"
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    say "fuzz_$target failed (exit $status); reproducer under $artifacts"
    exit 1
  fi
done
