#!/usr/bin/env bash
# On the GPU box: build the multi-architecture kernels, run the capability/fallback tests (the
# H200 forced down to sm_75/86/89), bench balanced and turbo_fp8 at the device's own capability
# and forced to sm_86 and sm_89, and the whole preset-switch matrix. Results under $OUT.
#   packaging/device/capability_run.sh      (carry .fixtures and .whl)
set -uo pipefail
out=${OUT:-/tmp/out}
export LONGLIVE_FIXTURES=$PWD/.fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
export LONGLIVE_COMMIT=${LONGLIVE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
bash packaging/device/build_and_test.sh . >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
grep -E "LongLive|built in" "$out/build.log"
b=build-gpu
cuobjdump --list-elf $b/engine/liblonglive_runtime.a 2>/dev/null | grep -o "sm_[0-9]*" | sort | uniq -c
$b/tests/test_core --gtest_filter='Quality*' 2>&1 | tail -3
$b/tests/test_engine --gtest_filter='DeviceFit*:SessionFactory*' >"$out/engine.log" 2>&1
grep -E "^\[  (PASSED|FAILED)|FAILED|Failure|OK \] DeviceFit" "$out/engine.log" | head -20
for p in balanced turbo_fp8; do
  for sm in 0 89 86; do
    $b/app/longlive bench --preset $p --blocks 10 --warmup 3 --profile-blocks 0 --force-sm $sm \
      --json "$out/bench_${p}_sm$sm.json" >"$out/bench_${p}_sm$sm.log" 2>&1
    echo "== $p force-sm $sm"; grep -E "capability|fallback|steady|error" "$out/bench_${p}_sm$sm.log"
  done
done
for p in turbo_fp8 ultra speed; do
  $b/app/longlive bench --preset $p --blocks 3 --warmup 1 --profile-blocks 0 --drift-vs balanced \
    --drift-blocks 6 --json "$out/drift_${p}_vs_balanced.json" >"$out/drift_$p.log" 2>&1
  grep -E "drift vs|error" "$out/drift_$p.log"
done
timeout 300 $b/app/longlive bench-presets --random full --repeats 2 --steady-blocks 2 \
  --json "$out/preset_switch.json" >"$out/preset_switch.log" 2>&1
echo "bench-presets rc=$?"; tail -8 "$out/preset_switch.log"
