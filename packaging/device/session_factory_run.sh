#!/usr/bin/env bash
# On the GPU box: build, the GPU tests touched by the KV-cache and session-factory work, the
# preset-switch benchmark and the balanced/ultra block benchmarks. Results under $OUT.
#   packaging/device/session_factory_run.sh
set -uo pipefail
out=${OUT:-/tmp/out}
export LONGLIVE_FIXTURES=$PWD/.fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
export LONGLIVE_COMMIT=${LONGLIVE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
bash packaging/device/build_and_test.sh . >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
tail -3 "$out/build.log"
export LD_LIBRARY_PATH=/opt/longlive-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
b=build-gpu
LONGLIVE_GPU_FILTER='*Gpu*:CudaGraphs*:FastPath*:FusedKernels*:AttentionBackends*:DitResume*:DitStreamParity*:KvCache*' \
  bash packaging/device/gpu_tests.sh $b >"$out/gpu_tests.log" 2>&1
grep -cE "^\[ +OK" "$out/gpu_tests.log"; grep -E "FAILED|Failure" "$out/gpu_tests.log" | head
$b/tests/test_engine --gtest_filter='SessionFactory*:Engine*' >"$out/engine.log" 2>&1; tail -3 "$out/engine.log"
$b/app/longlive bench-presets --random full --repeats 2 --steady-blocks 2 \
  --json "$out/preset_switch.json" >"$out/preset_switch.log" 2>&1
cat "$out/preset_switch.log" | tail -50
for p in balanced ultra; do
  $b/app/longlive bench --preset $p --blocks 20 --switch-every 5 --json "$out/bench_$p.json" >"$out/bench_$p.log" 2>&1
  grep -E "steady|switch block" "$out/bench_$p.log"
done
