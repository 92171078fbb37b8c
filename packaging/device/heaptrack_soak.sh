#!/usr/bin/env bash
# On the GPU box (#18): where the host heap grows with CUPTI's kernel samples (~1.4 MiB per
# sample, docs/reliability.md). Builds the CLI (sm_90), unpacks heaptrack from .heaptrack/ (Debian
# 12 debs: heaptrack libheaptrack libunwind8 libboost-{filesystem,iostreams,program-options}1.74.0)
# into /opt/longlive-deps, runs `longlive soak` under it with a kernel sample every
# HEAPTRACK_SAMPLE_EVERY blocks (default 5: more samples, a clearer signal), then prints what was
# never freed by call site: the engine is destroyed at exit, so what the report keeps is what
# nobody owns any more, or what lives in process-wide state (the CUPTI tracer, CUPTI itself).
# $OUT: leaks.txt (heaptrack_print's leak report), soak.jsonl, heaptrack.log.
#   run: carry [".snap/NAME", ".debs", ".heaptrack"], then
#   cd .snap/NAME && LONGLIVE_DEBS=$OLDPWD/.debs HEAPTRACK_DEBS=$OLDPWD/.heaptrack \
#     bash packaging/device/heaptrack_soak.sh
# Here (no GPU) the same runs on the CPU's tiny model: SOAK_DEVICE=cpu SOAK_MODEL=tiny
# HEAPTRACK_BUILD=build (an existing build folder; nothing is built).
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
if [ -n "${HEAPTRACK_BUILD:-}" ]; then
  b=$HEAPTRACK_BUILD
else
  . packaging/device/common.sh
  device_build "longlive"
fi
deps=${HEAPTRACK_DEPS_DIR:-/opt/longlive-deps}
mkdir -p "$deps"
for f in "${HEAPTRACK_DEBS:-$PWD/.heaptrack}"/*.deb; do dpkg -x "$f" "$deps" || exit 1; done
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
trace=/tmp/longlive-soak-heaptrack
rm -f "$trace".*
# shellcheck disable=SC2086
"$deps/usr/bin/heaptrack" -o "$trace" "$b/app/longlive" soak --device "${SOAK_DEVICE:-cuda}" \
  --random "${SOAK_MODEL:-full}" --presets balanced --minutes "${SOAK_MINUTES:-2}" \
  --warmup-minutes "${SOAK_WARMUP_MINUTES:-1}" --kept-latents-mib 64 \
  --kernel-sample-every "${HEAPTRACK_SAMPLE_EVERY:-5}" ${SOAK_ARGS:-} \
  >"$out/soak.jsonl" 2>"$out/heaptrack.log"
echo "soak under heaptrack rc=$?"
tail -2 "$out/soak.jsonl"
file=$(ls "$trace".* 2>/dev/null | head -1)
[ -n "$file" ] || { echo "no heaptrack trace"; tail -20 "$out/heaptrack.log"; exit 1; }
ls -la "$file"
# The leaks, largest call sites first, with their backtraces (long; the head is what matters).
"$deps/usr/bin/heaptrack_print" -f "$file" --print-leaks 1 --print-peaks 0 --print-allocators 0 \
  --print-temporary 0 --print-histogram '' --print-massif '' --print-flamegraph '' \
  --peak-limit 40 --sub-peak-limit 8 >"$out/leaks_full.txt" 2>&1
echo "heaptrack_print rc=$?"
head -c 400000 "$out/leaks_full.txt" >"$out/leaks.txt" && rm -f "$out/leaks_full.txt"
grep -E "^(total|leaked|[0-9.]+[KMG]?B leaked)" "$out/leaks.txt" | head -20
grep -n -m 5 "leaked" "$out/leaks.txt"
