#!/usr/bin/env bash
# On the GPU box after build_and_test.sh: the benchmark matrix, JSON results under $OUT.
#   packaging/device/bench.sh [BUILD_DIR]
set -uo pipefail
build=${1:-$PWD/build-gpu}
out=${OUT:-$PWD/bench-out}
mkdir -p "$out"
cli=$build/app/longlive
export LONGLIVE_PRESETS=${LONGLIVE_PRESETS:-$PWD/presets}
run() {  # name, args...
  local name=$1; shift
  echo "== $name: $*"
  "$cli" bench "$@" --json "$out/$name.json" 2>&1 | grep -v "^\[" || echo "FAILED: $name"
}
run balanced --preset balanced --random full --blocks 20 --warmup 3 --decoder taehv --text-encoder
run balanced_switch --preset balanced --random full --blocks 20 --warmup 3 --switch-every 4
run quality --preset quality --random full --blocks 10 --warmup 2
run turbo --preset turbo --random full --blocks 10 --warmup 2
python3 - "$out" <<'PY'
import json, glob, os, sys
rows = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*.json"))}
json.dump(rows, open(os.path.join(sys.argv[1], "all.json"), "w"), indent=2)
PY
