#!/usr/bin/env bash
# On the GPU box, after the wave-2 merges: build; the GPU tests of every test binary (capability
# fallbacks, kernel profiler, VACE, style LoRAs, host frames, fast paths); `bench --kernels`;
# the style-LoRA side path (1 and 4 LoRAs, rank 32 and 128); the preset-switch matrix.
# Results under $OUT in few files (the device returns at most 8).
set -uo pipefail
out=${OUT:-/tmp/out}
export LONGLIVE_FIXTURES=$PWD/.fixtures LONGLIVE_PRESETS=$PWD/presets LONGLIVE_CTEST=0
export LONGLIVE_COMMIT=${LONGLIVE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
bash packaging/device/build_and_test.sh . >"$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
grep -E "built in" "$out/build.log"
b=build-gpu
filter='*Gpu*:DeviceFit*:KernelProfiler*:Apis/*:DitKernels*:Vace*:StyleLora*:Engine.HostFrames*:SessionFactory*:FastPath*:CudaGraphs*:FusedKernels*'
for t in $b/tests/test_*; do
  echo "=== $(basename $t)"; timeout 300 $t --gtest_filter="$filter" 2>&1 | grep -E "^\[  (PASSED|FAILED)|FAILED  \]|Failure|rror" | head -20
done >"$out/tests.log" 2>&1
cat "$out/tests.log"
logs=$out/bench.log; : >"$logs"
$b/app/longlive bench --preset balanced --random full --blocks 10 --warmup 3 --kernels \
  --json "$out/bench_balanced_kernels.json" >>"$logs" 2>&1
grep -E "steady|kernels  |kernel sampling|dit_graph|\(no region\)" "$logs" | head -8
python3 - "$out" <<'PY' >/dev/null 2>&1 || true
PY
for n in 1 4; do for r in 32 128; do
  echo "== style loras $n rank $r" >>"$logs"
  $b/app/longlive bench --preset balanced --random full --blocks 6 --warmup 2 --profile-blocks 0 \
    --style-loras $n --style-lora-rank $r --json "$out/lora_${n}_$r.json" >>"$logs" 2>&1
  echo "loras $n rank $r: $(grep -E 'steady block|bake' "$logs" | tail -2 | tr '\n' ' ')"
done; done
timeout 240 $b/app/longlive bench-presets --random full --repeats 1 --steady-blocks 2 \
  --json "$out/preset_switch.json" >"$out/preset_switch.log" 2>&1
echo "bench-presets rc=$?"; tail -3 "$out/preset_switch.log"
# Fold the LoRA results into one file (the device returns at most 8 files).
python3 -c "
import json,glob,os,sys
o=sys.argv[1]; r={}
for f in sorted(glob.glob(o+'/lora_*.json')):
    r[os.path.basename(f)]=json.load(open(f)); os.remove(f)
json.dump(r,open(o+'/style_loras.json','w'),indent=1)" "$out"
