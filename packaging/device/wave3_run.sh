#!/usr/bin/env bash
# On the GPU box, wave 3 (#15): build; the session-factory and text GPU tests (kept caches,
# umT5 moved between devices); the preset-switch matrix with the change's own time; a balanced
# bench. Results under $OUT in few files (the device returns at most 8).
#   packaging/device/wave3_run.sh [repeats]
set -uo pipefail
out=${OUT:-/tmp/out}
repeats=${1:-2}
export LONGLIVE_FIXTURES=$PWD/.fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
export LONGLIVE_COMMIT=${LONGLIVE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
bash packaging/device/build_and_test.sh . >"$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
grep -E "built in" "$out/build.log"
b=build-gpu
for t in engine text model; do
  echo "=== test_$t"
  timeout 300 $b/tests/test_$t --gtest_filter='SessionFactory*:Umt5*:PromptCache*:DitResume*:Engine*:CudaGraphs*' 2>&1 |
    grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|rror" | head -20
done >"$out/tests.log" 2>&1
cat "$out/tests.log"
timeout 420 $b/app/longlive bench-presets --random full --repeats "$repeats" --steady-blocks 1 \
  --json "$out/preset_switch.json" >"$out/preset_switch.log" 2>&1
echo "bench-presets rc=$?"; tail -46 "$out/preset_switch.log"
