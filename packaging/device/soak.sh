#!/usr/bin/env bash
# On the GPU box: the live soak of issue #18 on the full-size random model. Builds the CLI (sm_90),
# then `longlive soak` drives a CUDA engine at 480x832 (the balanced preset) for SOAK_MINUTES
# (default 10) the way a performer does: a cut or transition every block, a preset change every 50
# blocks, a recording every 100 (when the build has FFmpeg), a pause every 150. Each minute's JSON
# line carries RSS, fds, threads, the CUDA caching allocator's allocated/reserved memory (current
# and peak) and the block times (p50/p99); the run fails (exit 3) if the GPU memory's peaks grow
# more than 2 % over the warm-up's, or RSS, fds or threads grow. Lines in $OUT/soak.jsonl.
#   packaging/device/soak.sh        (SOAK_MINUTES, SOAK_WARMUP_MINUTES, SOAK_PRESETS override;
#                                   SOAK_ARGS adds soak options, e.g. --kernel-sample-every 30:
#                                   CUPTI kernel samples, off by default as in the studio)
# A 10-minute soak and a build do not fit one 10-minute command: build in one call into a folder
# outside the carried tree, and soak from it in the next call on the still-warm machine:
#   call 1 (carry the snapshot and .debs, from the snapshot):
#     LONGLIVE_GPU_BUILD=/tmp/longlive-build SOAK_MINUTES=0 bash packaging/device/soak.sh
#   call 2 (at once; from the repository root, nothing carried but .debs):
#     SOAK_PREBUILT=/tmp/longlive-build bash packaging/device/soak.sh
. packaging/device/common.sh
if [ -n "${SOAK_PREBUILT:-}" ]; then
  b=$SOAK_PREBUILT
  [ -x "$b/app/longlive" ] || { echo "no $b/app/longlive: build it first (SOAK_MINUTES=0)"; exit 1; }
  export LD_LIBRARY_PATH=/opt/longlive-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  echo "prebuilt: $b"
else
  device_build "longlive"
fi
[ "${SOAK_MINUTES:-10}" = 0 ] && { echo "built; soak not run (SOAK_MINUTES=0)"; exit 0; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>&1
# 64 MiB of kept latents: ~53 blocks at 480x832, reached inside the warm-up (the engine's 512 MiB
# default would still be filling after 10 minutes and show as RSS growth).
nice -n 5 "$b/app/longlive" soak --device cuda --random full \
  --presets "${SOAK_PRESETS:-balanced}" --minutes "${SOAK_MINUTES:-10}" \
  --warmup-minutes "${SOAK_WARMUP_MINUTES:-3}" --kept-latents-mib 64 ${SOAK_ARGS:-} \
  >"$out/soak.jsonl" 2>"$out/soak.log"
rc=$?
echo "soak rc=$rc"
tail -4 "$out/soak.jsonl"
grep -E "error|warn" "$out/soak.log" | head -10
nvidia-smi --query-gpu=memory.used --format=csv 2>&1
exit $rc
