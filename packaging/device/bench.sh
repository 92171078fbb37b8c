#!/usr/bin/env bash
# On the GPU box after build_and_test.sh: the benchmark matrix, JSON results under $OUT.
#   packaging/device/bench.sh [BUILD_DIR]
set -uo pipefail
build=${1:-$PWD/build-gpu}
out=${OUT:-$PWD/bench-out}
# One JSON per run goes to $runs; $out/all.json gathers them after every run, so a call that
# runs out of time still returns what finished (the device tool returns only a few files).
runs=${BENCH_RUNS:-$out/runs}
mkdir -p "$out" "$runs"
cli=$build/app/longlive
export LONGLIVE_PRESETS=${LONGLIVE_PRESETS:-$PWD/presets}
gather() {
  python3 - "$runs" "$out/all.json" <<'PY'
import json, glob, os, sys
rows = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*.json"))}
json.dump(rows, open(sys.argv[2], "w"), indent=2)
PY
}
selected() {  # BENCH_ONLY="a b*" runs only the runs these names or patterns match
  [ -z "${BENCH_ONLY:-}" ] && return 0
  local -a patterns
  read -ra patterns <<<"$BENCH_ONLY"
  local p
  for p in "${patterns[@]}"; do
    # shellcheck disable=SC2053  # a pattern on purpose
    [[ $1 == $p ]] && return 0
  done
  return 1
}
run() {  # name, args...
  local name=$1; shift
  selected "$name" || return 0
  echo "== $name: $*"
  "$cli" bench "$@" --json "$runs/$name.json" 2>&1 | grep -v "^\[" || echo "FAILED: $name"
  gather
}
full="--random full --blocks 20 --warmup 3"
run balanced --preset balanced $full --decoder taehv --text-encoder --drift-blocks 4
run balanced_switch --preset balanced $full --switch-every 4 --profile-blocks 0
run balanced_eager --preset balanced $full --cuda-graphs off --profile-blocks 0
run balanced_plain --preset balanced $full --fused off --profile-blocks 2
run balanced_flash --preset balanced $full --attention flash --profile-blocks 0
run quality --preset quality --random full --blocks 10 --warmup 2 --profile-blocks 2
run turbo --preset turbo --random full --blocks 10 --warmup 2 --profile-blocks 0
run turbo_fp8 --preset turbo_fp8 $full --drift-blocks 4
run turbo_fp8_switch --preset turbo_fp8 $full --switch-every 4 --profile-blocks 0
run ultra --preset ultra --random full --blocks 10 --warmup 2 --profile-blocks 0 --drift-blocks 4
run ultra_eager --preset ultra --random full --blocks 10 --warmup 2 --profile-blocks 0 --cuda-graphs off
run low_memory --preset low_memory --random full --blocks 10 --warmup 2 --profile-blocks 0
# Decoders alone (latents from a tiny DiT), each activation layout with and without cuDNN's
# algorithm search; one process each, as cuDNN caches its plan choice per shape.
dec="--preset balanced --decoder-only --blocks 1 --warmup 0 --profile-blocks 0"
# TAEHV also with conv + bias + ReLU (+ residual) fused into one cuDNN call.
# (Defaults: TAEHV channels-last + fused, no search; Wan VAE channels-last + search.)
for v in taehv taehv_fused wan_vae; do
  d=taehv; extra="--decoder-fused-conv off"
  [ $v = wan_vae ] && d=wan
  [ $v = taehv_fused ] && extra="--decoder-fused-conv on"
  for layout in contiguous channels_last; do
    run ${v}_$layout $dec --decoder $d --decoder-layout $layout --cudnn-search off $extra
    run ${v}_${layout}_cudnn_search $dec --decoder $d --decoder-layout $layout --cudnn-search on $extra
  done
done
