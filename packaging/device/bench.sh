#!/usr/bin/env bash
# On the GPU box after build_and_test.sh: the benchmark matrix, JSON results under $OUT.
#   packaging/device/bench.sh [BUILD_DIR]
set -uo pipefail
build=${1:-$PWD/build-gpu}
out=${OUT:-$PWD/bench-out}
mkdir -p "$out"
cli=$build/app/longlive
export LONGLIVE_PRESETS=${LONGLIVE_PRESETS:-$PWD/presets}
run() {  # name, args...  (BENCH_ONLY="a b" runs only those names)
  local name=$1; shift
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $name "* ]]; then return; fi
  echo "== $name: $*"
  "$cli" bench "$@" --json "$out/$name.json" 2>&1 | grep -v "^\[" || echo "FAILED: $name"
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
run wan_vae --preset quality --random full --blocks 3 --warmup 1 --decoder wan --profile-blocks 0
run low_memory --preset low_memory --random full --blocks 10 --warmup 2 --profile-blocks 0
python3 - "$out" <<'PY'
import json, glob, os, sys
rows = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*.json"))}
json.dump(rows, open(os.path.join(sys.argv[1], "all.json"), "w"), indent=2)
PY
