#!/usr/bin/env bash
# On the GPU box after build_and_test.sh: the GPU-only tests with their full output (drift
# figures, skips), so a run shows more than ctest's summary.
#   packaging/device/gpu_tests.sh [BUILD_DIR]
set -uo pipefail
build=${1:-$PWD/build-gpu}
"$build/tests/test_model" --gtest_brief=0 \
  --gtest_filter="${LONGLIVE_GPU_FILTER:-*Gpu*:FusedKernels*:AttentionBackends*:Fp8Linear*:LinearGelu*:FastPath*:RegionProfiler*:CudaGraphs*}" 2>&1 |
  grep -E "^\[ +(OK|FAILED|SKIPPED|drift|graphs|PASSED) |Failure|Expected|Which is|error|actual" | head -60
for t in vae text engine interop; do
  [ -x "$build/tests/test_$t" ] || continue
  "$build/tests/test_$t" --gtest_filter='*Gpu*' 2>&1 |
    grep -E "^\[ +(OK|FAILED|SKIPPED|PASSED) |Failure|Expected|Which is|error" | head -20
done
# CUDA-GL interop in a headless EGL context (built when CMake found OpenGL + EGL; see README).
if [ -x "$build/tests/test_interop_egl" ]; then
  # The vendor JSON build_and_test.sh wrote when the driver installed none.
  [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$build/nvidia_egl.json" ] &&
    export __EGL_VENDOR_LIBRARY_FILENAMES=$build/nvidia_egl.json
  "$build/tests/test_interop_egl" 2>&1 | grep -E "^\[ +(OK|FAILED|SKIPPED|PASSED) |GL renderer|Skipped|no headless|Failure|Expected|Which is|error" -A1 | head -30
else
  echo "test_interop_egl not built: CMake found no OpenGL + EGL (add the GL .debs, see README)"
fi
