#!/usr/bin/env bash
# On the GPU box (#16's "model load <= 20 s from page cache"): writes a model folder of random
# weights at the real sizes in the public files' names and formats (`longlive random-model
# --full`: the 1.3B DiT in float32 5.7 GB, umT5-XXL in bf16 11.4 GB, TAEHV, a tokenizer), then
# opens it three times with `longlive generate` (balanced, one block, latents out, so no live
# decoder: TAEHV's 19 MB and its warm-up are not in the figure): each run logs "model loaded and
# session opened in X s" with the files in page cache (just written, then read). Results:
# $out/model_load.log.
#   run: carry [".snap/NAME", ".debs", ".whl"], then
#   cd .snap/NAME && LONGLIVE_DEBS=$OLDPWD/.debs bash packaging/device/model_load.sh
# With MODEL_LOAD_BUILD=0 the build of an earlier call in the same tree is used.
[ -d .whl ] || { [ -d "${OLDPWD:-}/.whl" ] && ln -s "$OLDPWD/.whl" .whl; }
. packaging/device/common.sh
if [ "${MODEL_LOAD_BUILD:-1}" = 1 ]; then
  device_build "longlive" "$out/build.log"
else
  export LD_LIBRARY_PATH=/opt/longlive-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
model=${MODEL_LOAD_DIR:-/tmp/longlive-random-model}
log=$out/model_load.log
{
  echo "== commit $LONGLIVE_COMMIT, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  [ -d "$model" ] || timeout 600 $b/app/longlive random-model "$model" --full
  free -g | head -2
  for run in 1 2 3; do
    echo "== open $run"
    timeout 180 $b/app/longlive generate --weights "$model" --prompt "a red fox runs through snow" \
      --preset balanced --blocks 1 --latents-out /tmp/model_load_latents.safetensors 2>&1 |
      grep -E "opened in|DiT weights|error|Error"
  done
} >"$log" 2>&1
cat "$log"
