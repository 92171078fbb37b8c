#!/usr/bin/env bash
# On the GPU box (#17 speed): build test_model + longlive for sm_90 (no FA3: the overhead is
# against the same backend), the VACE GPU tests (graph replay = eager, fused/FP8 VACE blocks
# against the plain path), the fast-path tests the layer-loop refactor touches and the Wan VAE
# encoder's GPU parity in both layouts, then
# `bench --vace` for balanced and turbo_fp8 (with/without VACE, hint reuse and its drift, the
# VACE encoder). Most important first; results under $OUT.
#   packaging/device/vace_run.sh        (VACE_BENCH_PRESETS="balanced turbo_fp8" by default)
. packaging/device/common.sh
device_build "longlive"
# The tests build after the CLI, so a test that does not compile still leaves the benches.
cmake --build $b -j "$(nproc)" --target test_model 2>&1 | grep -E "error|FAILED" | head -20
timeout ${VACE_TEST_TIMEOUT:-100} $b/tests/test_model \
  --gtest_filter='VaceFastPath.*:HintReuse*:CudaGraphs.GraphPath*:FastPathStream.*' \
  >"$out/tests.log" 2>&1
echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|\[ (vace|drift|graphs) " "$out/tests.log" | head -40
# The Wan VAE encoder on the GPU in both layouts (fp32 parity, bf16 channels-last): the
# encoder's own layout choice rests on it and on bench --vace's two encode timings.
cmake --build $b -j "$(nproc)" --target test_vae 2>&1 | grep -E "error|FAILED" | head -20
timeout ${VACE_TEST_TIMEOUT:-100} $b/tests/test_vae --gtest_filter='WanVaeGpu.Encoder*' \
  >"$out/encoder_tests.log" 2>&1
echo "encoder tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|Wan VAE encoder" "$out/encoder_tests.log"
for p in ${VACE_BENCH_PRESETS:-balanced turbo_fp8}; do
  timeout ${VACE_BENCH_TIMEOUT:-100} $b/app/longlive bench --preset $p --random full --blocks 20 \
    --warmup 3 --profile-blocks 0 --vace --vace-drift-blocks 6 \
    --json "$out/bench_${p}_vace.json" >"/tmp/bench_$p.log" 2>&1
  echo "== $p --vace rc=$?"
  grep -vE "^\[" "/tmp/bench_$p.log" | tee -a "$out/bench.log" | grep -E "steady|vace|fallback|error"
done
# The same VACE steps eagerly (no CUDA graphs), for what the graphs save (DiT and VACE eager).
if [ -n "${VACE_EAGER:-1}" ]; then
  timeout ${VACE_EAGER_TIMEOUT:-60} $b/app/longlive bench --preset balanced --random full --blocks 10 \
    --warmup 3 --profile-blocks 0 --vace --vace-drift-blocks 0 --cuda-graphs off \
    --json "$out/bench_balanced_vace_eager.json" >/tmp/bench_eager.log 2>&1
  echo "== balanced --vace --cuda-graphs off rc=$?"
  grep -vE "^\[" /tmp/bench_eager.log | tee -a "$out/bench.log" | grep -E "steady|vace"
fi
