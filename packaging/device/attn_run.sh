#!/usr/bin/env bash
# On the GPU box (#21): build with FlashAttention-3 (carry .fa3/, made by packaging/fetch_fa3.sh,
# and .debs/ and .whl/), its GPU tests against fp32 math and cuDNN, the attention comparison
# table (backend x shape -> ms, TFLOP/s), then balanced with automatic attention (FA3 on sm_90)
# and with cuDNN, drift against the plain path included. Results under $OUT in few files.
#   packaging/device/attn_run.sh
. packaging/device/common.sh
device_build "test_model longlive"
LONGLIVE_ATTENTION_BENCH=1 LONGLIVE_ATTENTION_BENCH_JSON=$out/attention.json timeout 300 \
  $b/tests/test_model --gtest_filter='AttentionBackend*:Fa3Attention.*:AttentionBench.*' \
  >"$out/attn_tests.log" 2>&1
echo "attention tests rc=$?"
grep -E "^\| |relative L2|^\[  (PASSED|FAILED|SKIPPED)|FAILED|Failure" "$out/attn_tests.log" | head -60
for att in ${ATTN_RUN_BACKENDS:-auto cudnn}; do
  timeout 200 $b/app/longlive bench --preset balanced --random full --blocks 20 --warmup 3 \
    --attention "$att" --drift-blocks 4 --profile-blocks 2 --json "$out/balanced_$att.json" \
    >"$out/balanced_$att.log" 2>&1
  echo "== balanced --attention $att rc=$?"
  grep -v "^\[" "$out/balanced_$att.log" | head -30
done
