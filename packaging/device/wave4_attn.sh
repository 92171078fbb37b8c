#!/usr/bin/env bash
# On the GPU box (#21, wave 4): build with FlashAttention-3 (carry .fa3/, .debs/, .whl/), the
# FA3 GPU tests (every schedule against fp32 math and cuDNN, graph replay) and the fused path's
# GPU tests (keys written straight into the KV cache), the attention table with FA3's schedules
# side by side, then balanced once per schedule (LONGLIVE_FA3_SCHEDULE), drift and switch blocks
# included. Most important first; results under $OUT in at most 8 files.
#   FA3_SCHEDULES="default whole" EXTRA_PRESETS=turbo_fp8 packaging/device/wave4_attn.sh
. packaging/device/common.sh
t0=$(date +%s)
device_build "test_model longlive" /tmp/build.log
logs=$out/tests.log
timeout 150 $b/tests/test_model --gtest_filter='Fa3Attention.*:AttentionBackend*' >"$logs" 2>&1
echo "fa3 tests rc=$? ($(($(date +%s) - t0)) s)"
grep -E "relative L2|^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure" "$logs" | head -40
timeout 120 $b/tests/test_model \
  --gtest_filter='FastPath*:FusedKernels*:CudaGraphs*:KvCache*:RegionProfiler*:DitStreamParity*' \
  >>"$logs" 2>&1
echo "fused-path tests rc=$?"; grep -E "^\[  (PASSED|FAILED)|FAILED  \]" "$logs" | tail -6
LONGLIVE_ATTENTION_BENCH=1 LONGLIVE_ATTENTION_BENCH_JSON=$out/attention.json timeout 120 \
  $b/tests/test_model --gtest_filter='AttentionBench.*' >/tmp/attention.log 2>&1
echo "attention bench rc=$? ($(($(date +%s) - t0)) s)"; grep -E "^\| " /tmp/attention.log
# "default": the engine's own choice; any other name is a LONGLIVE_FA3_SCHEDULE. (Run 2 also
# had "rope_block", the A/B switch of a warp-per-row RMSNorm+RoPE kernel dropped since.)
for s in ${FA3_SCHEDULES:-default whole}; do
  unset LONGLIVE_FA3_SCHEDULE
  [ "$s" = default ] || export LONGLIVE_FA3_SCHEDULE=$s
  timeout 110 $b/app/longlive bench --preset balanced --random full \
    --blocks 20 --warmup 3 --switch-every 5 --drift-blocks 4 --profile-blocks 2 \
    --json "$out/balanced_$s.json" >"/tmp/balanced_$s.log" 2>&1
  echo "== balanced schedule $s rc=$? ($(($(date +%s) - t0)) s)"
  grep -E "schedule|steady block|switch block|drift|self_attention|kv_write|rms_rope" \
    "/tmp/balanced_$s.log" | head -12
  cat "/tmp/balanced_$s.log" >>"$out/bench.log"
done
unset LONGLIVE_FA3_SCHEDULE
# turbo_fp8 (cuDNN's FP8 attention; FP8 KV storage keeps the separate K/V write).
for p in ${EXTRA_PRESETS:-}; do
  timeout 110 $b/app/longlive bench --preset "$p" --random full --blocks 20 --warmup 3 \
    --switch-every 5 --drift-blocks 4 --profile-blocks 2 --json "$out/$p.json" >"/tmp/$p.log" 2>&1
  echo "== $p rc=$? ($(($(date +%s) - t0)) s)"
  grep -E "steady block|switch block|drift|self_attention|kv_write|rms_rope" "/tmp/$p.log" | head
  cat "/tmp/$p.log" >>"$out/bench.log"
done
