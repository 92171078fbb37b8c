#!/usr/bin/env bash
# On the GPU box, after merging branches that touched the layer loop: build test_model only (sm_90,
# no FA3: quickest) and run the GPU tests of the fused loop, the direct K/V write, CUDA graphs and
# VACE's fast path. Results under $OUT.
#   packaging/device/merge_check.sh     (GPU_FILTER overrides the test filter)
set -uo pipefail
out=${OUT:-/tmp/out}
fixtures=$PWD/.fixtures; [ -d "$fixtures" ] || fixtures=$PWD/tests/data/fixtures/switch_before_full
export LONGLIVE_FIXTURES=$fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
export LONGLIVE_CUDA_ARCHITECTURES=${LONGLIVE_CUDA_ARCHITECTURES:-90-real}
export LONGLIVE_BUILD_TARGETS=${LONGLIVE_BUILD_TARGETS:-test_model}
export LONGLIVE_COMMIT=${LONGLIVE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
bash packaging/device/build_and_test.sh . >"$out/build.log" 2>&1 ||
  { grep -E "error|FAILED" "$out/build.log" | head -30; tail -15 "$out/build.log"; exit 1; }
grep -E "built in" "$out/build.log"
export LD_LIBRARY_PATH=/opt/longlive-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
filter=${GPU_FILTER:-'FusedKernels.*:FastPath*:CudaGraphs.*:VaceFastPath.*:KvCacheDirectWrite.*:HintReuse*:DitStreamParity.*'}
timeout ${TEST_TIMEOUT:-150} build-gpu/tests/test_model --gtest_filter="$filter" >"$out/tests.log" 2>&1
echo "tests rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|Failure|^\[ (vace|drift|graphs) " "$out/tests.log" | head -40
