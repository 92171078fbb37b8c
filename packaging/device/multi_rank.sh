#!/usr/bin/env bash
# On a GPU box (#20, docs/multi-gpu.md): the sequence-parallel ranks on CUDA. Builds test_model and
# longlive (sm_90, no FA3), runs the ranks' tests (two ranks on one GPU against one rank), then
# `bench --gpus N` for balanced: with one GPU, 2 ranks sharing it over Gloo (correctness and
# overhead, not speed); with several GPUs (nvidia-smi -L), N = 2, 4, 8 up to the count over NCCL.
# Results under $OUT (bench_ranks<N>.json).
. packaging/device/common.sh
device_build "test_model longlive"
timeout ${TEST_TIMEOUT:-200} $b/tests/test_model \
  --gtest_filter='RowShard.*:RankGroup.*:SequenceParallel.*' >"$out/tests.log" 2>&1
echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|Skipped" "$out/tests.log" | head -20
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
bench() { timeout ${BENCH_TIMEOUT:-240} $b/app/longlive bench --random full --preset balanced \
  --blocks ${BENCH_BLOCKS:-6} --warmup 2 "$@"; }
bench --json "$out/bench_ranks1.json" >"$out/bench_ranks1.log" 2>&1; echo "1 rank rc=$?"
if [ "$gpus" -le 1 ]; then
  bench --gpus 2 --share-gpu --json "$out/bench_ranks2_shared.json" >"$out/bench_ranks2_shared.log" 2>&1
  echo "2 ranks on one GPU rc=$?"
else
  for n in 2 4 8; do
    [ "$n" -le "$gpus" ] || break
    bench --gpus $n --json "$out/bench_ranks$n.json" >"$out/bench_ranks$n.log" 2>&1
    echo "$n ranks rc=$?"
  done
fi
grep -hE "steady block|switch block|video FPS|received|Error|error" "$out"/bench_ranks*.log | head -20
