#!/usr/bin/env bash
# On the GPU box: build, the kernel-profiler and host-frames GPU tests, and `bench --kernels` at
# balanced (what sampling costs). Results under $OUT (few files: the device returns at most 8).
set -uo pipefail
out=${OUT:-/tmp/out}
export LONGLIVE_FIXTURES=$PWD/.fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
bash packaging/device/build_and_test.sh . >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
grep -E "LongLive|built in" "$out/build.log"
b=build-gpu
{
  $b/tests/test_core --gtest_filter='KernelProfiler*:Apis/KernelProfilerGpu.*'
  $b/tests/test_model --gtest_filter='DitKernels.*'
  $b/tests/test_engine --gtest_filter='Engine.HostFrames*:EngineGpu*:Engine.DeviceFrames*'
} >"$out/tests.log" 2>&1
grep -E "^\[  (PASSED|FAILED)|FAILED|Failure|error" "$out/tests.log" | head -30
$b/app/longlive bench --preset balanced --random full --blocks 10 --warmup 3 --kernels \
  --json "$out/bench_balanced_kernels.json" >"$out/bench_balanced_kernels.log" 2>&1
tail -45 "$out/bench_balanced_kernels.log"
