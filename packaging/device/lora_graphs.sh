#!/usr/bin/env bash
# On the GPU box (#19, style LoRAs): build longlive + test_model for sm_90 (no FA3), run the style-
# LoRA GPU tests (the side path inside CUDA graphs across fader moves against the eager loop; the
# eager side path against weights baked on the device, bf16 and FP8), then the side-path bench
# (`bench --style-loras N --style-lora-rank R`: steady block with the faders up, the device bake,
# blocks after it) for 1x32, 4x128, none (the baseline of the same run), 1x128 and 4x32. Most
# important first; results under $OUT (bench_loras_<N>x<R>.json, tests.log, bench.log).
#   packaging/device/lora_graphs.sh     (LORA_RUNS="1x32 4x128 0x0 1x128 4x32" by default;
#                                        LORA_TEST_FIXTURES="dir ...": the tests' fixture sets)
. packaging/device/common.sh
device_build "longlive"
# The tests build after the CLI, so a test that does not compile still leaves the benches.
cmake --build $b -j "$(nproc)" --target test_model 2>&1 | grep -E "error|FAILED" | head -20
# LORA_TEST_FIXTURES: the fixture folders to run them on, one after the other (default: the one
# common.sh chose); each appends to tests.log.
for f in ${LORA_TEST_FIXTURES:-$LONGLIVE_FIXTURES}; do
  echo "== fixtures $f" | tee -a "$out/tests.log"
  LONGLIVE_FIXTURES=$f timeout ${LORA_TEST_TIMEOUT:-60} $b/tests/test_model \
    --gtest_filter='StyleLoraGpu.*' >>"$out/tests.log" 2>&1
  echo "tests rc=$?"
done
grep -E "^== fixtures|^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|\[ (graphs|bake|drift) " "$out/tests.log" | head -40
for run in ${LORA_RUNS:-1x32 4x128 0x0 1x128 4x32}; do
  n=${run%x*} r=${run#*x}
  [ "$r" = 0 ] && r=32  # the baseline: no LoRA (the rank is unused)
  timeout ${LORA_BENCH_TIMEOUT:-60} $b/app/longlive bench --preset balanced --random full \
    --blocks 10 --warmup 3 --profile-blocks 0 --style-loras $n --style-lora-rank $r \
    --json "$out/bench_loras_${run}.json" >"/tmp/bench_loras_$run.log" 2>&1
  echo "== $run rc=$?"
  grep -vE "^\[" "/tmp/bench_loras_$run.log" | tee -a "$out/bench.log" | grep -E "steady|style|error"
done
