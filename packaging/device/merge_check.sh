#!/usr/bin/env bash
# On the GPU box, after merging branches that touched the layer loop: build test_model only (sm_90,
# no FA3: quickest) and run the GPU tests of the fused loop, the direct K/V write, CUDA graphs and
# VACE's fast path. Results under $OUT.
#   packaging/device/merge_check.sh     (GPU_FILTER overrides the test filter)
. packaging/device/common.sh
device_build "test_model"
filter=${GPU_FILTER:-'FusedKernels.*:FastPath*:CudaGraphs.*:VaceFastPath.*:KvCacheDirectWrite.*:HintReuse*:DitStreamParity.*'}
timeout ${TEST_TIMEOUT:-150} $b/tests/test_model --gtest_filter="$filter" >"$out/tests.log" 2>&1
echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|^\[ (vace|drift|graphs) " "$out/tests.log" | head -40
