#!/usr/bin/env bash
# On the GPU box (#18, with #21/#17's figures): the 10-minute GPU soak spread over two calls so
# that its ~11 minutes cost no extra device time. The soak runs in a process session of its own
# (setsid), which the device tool lets run on between two calls on a warm machine.
#   call 1, `start` (carry the snapshot and .debs, from the snapshot): builds longlive and the test
#     binaries into $LONGLIVE_GPU_BUILD (default /tmp/longlive-build), starts the soak from a copy
#     of this tree in /tmp (the carried tree is replaced by the next call), runs the GPU tests
#     (WAVE7_STEPS=tests) during the soak's warm-up, which no figure is judged by, then waits
#     until SOAK_CALL_SECONDS (default 570) and returns the soak's lines so far.
#   call 2, `finish` (at once, from the snapshot or the repository root): waits for the soak,
#     returns $OUT/soak.jsonl and soak.log, then runs the wave7 benchmarks named in
#     WAVE7_STEPS (e.g. "balanced turbo_fp8 vace_turbo_fp8") from the same build.
# The benchmarks never run beside the soak; the tests do, inside its warm-up only.
set -uo pipefail
mode=${1:?usage: soak_beside.sh start|finish}
export LONGLIVE_GPU_BUILD=${LONGLIVE_GPU_BUILD:-/tmp/longlive-build}
out=${OUT:-/tmp/out}
soak_dir=/tmp/soak
src=/tmp/soak-src
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }

if [ "$mode" = start ]; then
  WAVE7_STEPS=build bash packaging/device/wave7_run.sh || exit 1
  echo "built ($(elapsed))"
  rm -rf "$src" "$soak_dir" && cp -r "$PWD" "$src" && mkdir -p "$soak_dir"
  (cd "$src" && OUT=$soak_dir SOAK_PREBUILT=$LONGLIVE_GPU_BUILD setsid nohup \
    bash packaging/device/soak.sh >"$soak_dir/run.log" 2>&1 </dev/null &)
  echo "soak started ($(elapsed)): ${SOAK_MINUTES:-10} min"
  # SOAK_BESIDE_STUDIO=<.studio carry>: the studio's build too, beside the tests (CPU work in
  # the soak's warm-up), into /tmp/studio-build for a `STUDIO_SKIP_BUILD=1
  # LONGLIVE_GPU_BUILD=/tmp/studio-build` studio_run.sh call next.
  studio=
  if [ -n "${SOAK_BESIDE_STUDIO:-}" ]; then
    (OUT=/tmp/studio-out LONGLIVE_GPU_BUILD=/tmp/studio-build STUDIO_CARRY=$SOAK_BESIDE_STUDIO \
      STUDIO_SESSION=0 STUDIO_ENCODE_BENCH=0 bash packaging/device/studio_run.sh \
      >/tmp/studio-build.log 2>&1) &
    studio=$!
  fi
  WAVE7_STEPS=tests timeout 240 bash packaging/device/wave7_run.sh
  echo "tests done ($(elapsed))"
  if [ -n "$studio" ]; then
    wait "$studio"
    echo "studio built ($(elapsed)):"
    tail -5 /tmp/studio-build.log
    ls -la /tmp/studio-build/tests/gui/longlive-studio-autotest
  fi
  while [ "$(($(date +%s) - t0))" -lt "${SOAK_CALL_SECONDS:-570}" ] &&
    pgrep -f "longlive soak" >/dev/null; do sleep 5; done
  cp "$soak_dir"/soak.jsonl "$out/soak-partial.jsonl" 2>/dev/null
  tail -3 "$soak_dir/soak.jsonl" 2>/dev/null
  exit 0
fi

[ "$mode" = finish ] || { echo "unknown mode $mode"; exit 2; }
for _ in $(seq 150); do pgrep -f "longlive soak" >/dev/null || break; sleep 2; done
echo "soak finished ($(elapsed))"
cat "$soak_dir/run.log"
cp "$soak_dir"/soak.jsonl "$soak_dir"/soak.log "$out/" 2>/dev/null
[ -n "${WAVE7_STEPS:-}" ] && cd "$src" && bash packaging/device/wave7_run.sh
exit 0
