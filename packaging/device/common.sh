# Sourced by the GPU-box scripts (packaging/device/*.sh), from the repository root:
#   . packaging/device/common.sh
#   device_build "test_model longlive" [build log]   # the default targets; LONGLIVE_BUILD_TARGETS wins
# Sets the environment every run needs (fixtures: LONGLIVE_FIXTURES when set, else the carried
# .fixtures/ or the committed switch_before_full folder, which keeps the carry under 64 MiB;
# presets; sm_90 unless
# LONGLIVE_CUDA_ARCHITECTURES says otherwise; the commit recorded in the results), builds with
# build_and_test.sh into build-gpu (exits with the build's errors when it fails), and leaves
# $out (results folder), $b (build dir) and LD_LIBRARY_PATH for the deps unpacked from .debs/.
set -uo pipefail
out=${OUT:-/tmp/out}
fixtures=${LONGLIVE_FIXTURES:-$PWD/.fixtures}
[ -d "$fixtures" ] || fixtures=$PWD/tests/data/fixtures/switch_before_full
export LONGLIVE_FIXTURES=$fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
export LONGLIVE_CUDA_ARCHITECTURES=${LONGLIVE_CUDA_ARCHITECTURES:-90-real}
# The snapshot's COMMIT (make_snapshot.sh) first: git here may see another copy's history.
[ -z "${LONGLIVE_COMMIT:-}" ] && [ -f COMMIT ] && LONGLIVE_COMMIT=$(cat COMMIT)
export LONGLIVE_COMMIT=${LONGLIVE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
# LONGLIVE_GPU_BUILD: a build folder outside the carried tree (e.g. /tmp/longlive-build) stays on
# a warm machine between calls, where the carried tree is copied anew.
b=${LONGLIVE_GPU_BUILD:-build-gpu}

device_build() {
  export LONGLIVE_BUILD_TARGETS=${LONGLIVE_BUILD_TARGETS:-$1}
  local log=${2:-$out/build.log}
  bash packaging/device/build_and_test.sh . >"$log" 2>&1 ||
    { grep -E "error|FAILED" "$log" | head -30; tail -15 "$log"; exit 1; }
  grep -E "FlashAttention|built in" "$log"
  export LD_LIBRARY_PATH=/opt/longlive-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
}
