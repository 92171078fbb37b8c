#!/usr/bin/env bash
# On the GPU box, the wave-3 merge: build (FlashAttention-3 when .fa3/ is carried); the GPU tests
# of the session factory (kept caches, FP8 quantised on the device, umT5 moved), umT5 and the
# attention backends; balanced and turbo_fp8 benches (automatic attention); the preset-switch
# matrix; FP8's own drift (balanced_fp8 vs balanced, turbo_fp8 vs turbo: same steps). Most
# important first: a call that runs out of time still returns what finished. Results under $OUT.
#   packaging/device/wave3_final.sh
. packaging/device/common.sh
device_build "test_engine test_text test_model longlive"
filter='SessionFactory*:Umt5*:PromptCache*:DitResume*:Fa3Attention.*:AttentionBackend*:CudaGraphs*:FastPath*:FusedKernels*'
for t in engine text model; do
  echo "=== test_$t"
  timeout 300 $b/tests/test_$t --gtest_filter="$filter" 2>&1 |
    grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|rror" | head -20
done >"$out/tests.log" 2>&1
cat "$out/tests.log"
# The attention comparison table (backend x shape -> ms, TFLOP/s; test_model's AttentionBench).
LONGLIVE_ATTENTION_BENCH=1 LONGLIVE_ATTENTION_BENCH_JSON=$out/attention.json timeout 240 \
  $b/tests/test_model --gtest_filter='AttentionBench.*' >/tmp/attention.log 2>&1
echo "attention bench rc=$?"; grep -E "^\| " /tmp/attention.log | head -30
logs=$out/bench.log; : >"$logs"
timeout 150 $b/app/longlive bench --preset balanced --random full --blocks 20 --warmup 3 \
  --switch-every 5 --attention cudnn --json /tmp/bench_balanced_cudnn.json >>"$logs" 2>&1
echo "== balanced cudnn rc=$?: $(grep -E 'steady block|switch block' "$logs" | tail -2 | tr '\n' ' ')"
for p in balanced turbo_fp8; do
  timeout 150 $b/app/longlive bench --preset $p --random full --blocks 20 --warmup 3 \
    --switch-every 5 --drift-blocks 4 --json "$out/bench_$p.json" >>"$logs" 2>&1
  echo "== $p rc=$?: $(grep -E 'steady block|switch block|attention' "$logs" | tail -3 | tr '\n' ' ')"
done
timeout 240 $b/app/longlive bench-presets --random full --repeats 1 --steady-blocks 1 \
  --json "$out/preset_switch.json" >/tmp/preset_switch.log 2>&1
echo "bench-presets rc=$?"; tail -46 /tmp/preset_switch.log | tee -a "$logs" | tail -4
# FP8's own drift: the same sampling with and without FP8.
presets=/tmp/presets; rm -rf $presets; cp -r presets $presets
python3 - "$presets" <<'PY'
import json, sys
p = json.load(open(sys.argv[1] + '/balanced.json'))
p.update(name='balanced_fp8', dtype='fp8', quality_preserving=False)
json.dump(p, open(sys.argv[1] + '/balanced_fp8.json', 'w'), indent=1)
PY
for pair in "balanced_fp8 balanced" "turbo_fp8 turbo"; do
  set -- $pair
  timeout 150 $b/app/longlive bench --preset $1 --drift-vs $2 --presets-dir $presets --random full \
    --blocks 6 --warmup 2 --profile-blocks 0 --json "/tmp/drift_$1.json" >>"$logs" 2>&1
  echo "== drift $1 vs $2 rc=$?: $(grep -iE 'drift|psnr|steady block' "$logs" | tail -3 | tr '\n' ' ')"
done
# One file for both drift runs (the device returns at most 8 files).
python3 -c "
import json, sys
json.dump({p: json.load(open('/tmp/drift_%s.json' % p)) for p in ('balanced_fp8', 'turbo_fp8')
           if __import__('os').path.exists('/tmp/drift_%s.json' % p)}, open(sys.argv[1], 'w'), indent=1)
" "$out/fp8_drift.json"
