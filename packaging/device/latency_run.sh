#!/usr/bin/env bash
# On the GPU box (#17): a camera picked mid-stream -> its first conditioned frame
# (`bench --vace --vace-input-latency`, the studio's Engine, random full-size weights), each
# run of LATENCY_RUNS (default "turbo_fp8 turbo_fp8_beside") a preset with an optional suffix:
# _beside: LONGLIVE_FIRST_BLOCK_ALONE=0 (the next block's encode beside the input's first block's
# DiT; by default that block runs alone);
# _paced: the synthetic camera films at 16 fps (--vace-camera-fps 16: filmed -> on screen per
# block); _pacedahead: that with LONGLIVE_LIVE_READ_AHEAD=1 (its blocks read a block ahead, as
# before 8b8d495); _pacedwhole: paced with LONGLIVE_ENCODE_AS_FILMED=0 (each block read whole once
# filmed, then encoded, instead of encoded in parts as it is filmed).
# _unordered / _pacedunordered: LONGLIVE_FIRST_ENCODE_UNORDERED=1 (the first block's encode not
# ordered after the engine's stream: beside the step of the block the pick gave up; the default
# since 1de1fed's run), frames at once / the camera at 16 fps; _ordered: =0 (the way before).
# _stepahead: LONGLIVE_STEP_QUEUED_AHEAD=1 (the host keeps the next denoising step queued, as
# before 2026-12-07: the pick also waits for that step); _afterctx:
# LONGLIVE_DECODE_AFTER_CONTEXT_PASS=1 (the decode waits for the block's clean context pass);
# _parts: LONGLIVE_DECODE_PARTS=1 (a block decoded a latent frame at a time, each part's frames
# out once decoded); _old: _stepahead and _afterctx together (the way before 2026-12-07).
# _groups1 / _groups2 / _groups3: LONGLIVE_ENCODE_GROUPS_PER_PASS=1 / 2 / 3 (the encoder takes that
# many groups of 4 frames per pass where a call does not say; by default on a GPU all of a call's
# groups, one pass; a camera's frames, the bench's synthetic camera's included, always take one
# group per pass, VaceFrameSource::filmed, so this moves only the black inactive blocks).
# _file: the synthetic input passes for a file (--vace-input-as-file: a call's frames in one
# encoder pass, as a video file's, instead of a camera's group of 4 frames per pass).
# _atrandom: each pick at a random moment of a block (--vace-pick-at-random-moments), not as one
# begins; it ends the name (turbo_fp8_old_atrandom); not for SWITCH_RUNS (switches always are).
# _halves: LONGLIVE_STEP_PARTS=2 (each denoising step in two parts, two graphs per plan: a pick or
# a switch waits for half a step at most rather than a whole one).
# _taehv: the inputs through TAEHV's encoder (--input-encoder taehv, a preset's input_encoder:
# taehv) instead of the Wan VAE's; before _atrandom (turbo_fp8_paced_taehv_atrandom).
# LONGLIVE_INPUT_TRACE=1 times the opening and the first block stage by stage (docs/vace.md).
# ENCODER_RUNS (default none): the VACE encoder's block (`bench --vace --kernels`, turbo_fp8,
# encode ms per block and its kernel table): fold = as built, nofold = LONGLIVE_VAE_FOLD_BIAS=0,
# groups1 / groups2 / groups3 = LONGLIVE_ENCODE_GROUPS_PER_PASS=1 / 2 / 3 (fold: a call's groups in
# one pass, the default since the H100 run at 5e707c8).
# LATENCY_PICKS (default 5): picks per run.
# SWITCH_RUNS (default none; the same suffixes): prompt switches at random moments of a block on
# the studio's Engine (`bench --switch-latency SWITCH_COUNT`, default 10), switched -> the new
# prompt's first frame.
# Needs the build of wave7_run.sh in $LONGLIVE_GPU_BUILD (its `build` step). Results under $OUT.
#   LATENCY_RUNS="turbo_fp8 turbo_fp8_beside balanced" bash packaging/device/latency_run.sh
set -u
b=${LONGLIVE_GPU_BUILD:-/tmp/b}
out=${OUT:-/tmp/out}
export LD_LIBRARY_PATH=/opt/longlive-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# A run name -> its preset, environment and extra bench arguments (the suffixes above).
parse_run() {
  local run=$1 at_random= taehv=
  [ "${run%_atrandom}" != "$run" ] && { at_random=1; run=${run%_atrandom}; }
  [ "${run%_taehv}" != "$run" ] && { taehv=1; run=${run%_taehv}; }
  preset=${run%_beside}
  preset=${preset%_paced}
  preset=${preset%_pacedahead}
  preset=${preset%_pacedwhole}
  preset=${preset%_pacedunordered}
  preset=${preset%_unordered}
  preset=${preset%_ordered}
  preset=${preset%_stepahead}
  preset=${preset%_afterctx}
  preset=${preset%_parts}
  preset=${preset%_old}
  preset=${preset%_groups1}
  preset=${preset%_groups2}
  preset=${preset%_groups3}
  preset=${preset%_file}
  preset=${preset%_halves}
  env=(LONGLIVE_INPUT_TRACE=1)
  extra=()
  [ "${run%_beside}" != "$run" ] && env+=(LONGLIVE_FIRST_BLOCK_ALONE=0)
  [ "${run%_paced}" != "$run" ] && extra=(--vace-camera-fps 16)
  [ "${run%_pacedahead}" != "$run" ] && { extra=(--vace-camera-fps 16); env+=(LONGLIVE_LIVE_READ_AHEAD=1); }
  [ "${run%_pacedwhole}" != "$run" ] && { extra=(--vace-camera-fps 16); env+=(LONGLIVE_ENCODE_AS_FILMED=0); }
  [ "${run%_pacedunordered}" != "$run" ] && { extra=(--vace-camera-fps 16); env+=(LONGLIVE_FIRST_ENCODE_UNORDERED=1); }
  [ "${run%_unordered}" != "$run" ] && env+=(LONGLIVE_FIRST_ENCODE_UNORDERED=1)
  [ "${run%_ordered}" != "$run" ] && [ "${run%_unordered}" = "$run" ] && env+=(LONGLIVE_FIRST_ENCODE_UNORDERED=0)
  [ "${run%_stepahead}" != "$run" ] && env+=(LONGLIVE_STEP_QUEUED_AHEAD=1)
  [ "${run%_afterctx}" != "$run" ] && env+=(LONGLIVE_DECODE_AFTER_CONTEXT_PASS=1)
  [ "${run%_parts}" != "$run" ] && env+=(LONGLIVE_DECODE_PARTS=1)
  [ "${run%_old}" != "$run" ] && env+=(LONGLIVE_STEP_QUEUED_AHEAD=1 LONGLIVE_DECODE_AFTER_CONTEXT_PASS=1)
  [ "${run%_groups1}" != "$run" ] && env+=(LONGLIVE_ENCODE_GROUPS_PER_PASS=1)
  [ "${run%_groups2}" != "$run" ] && env+=(LONGLIVE_ENCODE_GROUPS_PER_PASS=2)
  [ "${run%_groups3}" != "$run" ] && env+=(LONGLIVE_ENCODE_GROUPS_PER_PASS=3)
  [ "${run%_file}" != "$run" ] && extra+=(--vace-input-as-file)
  [ "${run%_halves}" != "$run" ] && env+=(LONGLIVE_STEP_PARTS=2)
  [ -n "$at_random" ] && extra+=(--vace-pick-at-random-moments)
  [ -n "$taehv" ] && extra+=(--input-encoder taehv)
}
for run in ${LATENCY_RUNS:-turbo_fp8 turbo_fp8_beside}; do
  parse_run "$run"
  start=$(date +%s)
  env "${env[@]}" timeout 150 "$b/app/longlive" bench --preset "$preset" --random full \
    --blocks 3 --warmup 1 --profile-blocks 0 --vace --vace-drift-blocks 0 --no-vace-encoder \
    --vace-input-latency "${LATENCY_PICKS:-5}" "${extra[@]}" --json "$out/latency_$run.json" \
    >"$out/latency_$run.log" 2>&1
  echo "== latency $run rc=$? ($(($(date +%s) - start)) s)"
  grep -E "pick [0-9]|input trace|vace input" "$out/latency_$run.log" | tail -30
done
for run in ${SWITCH_RUNS:-}; do
  parse_run "$run"
  start=$(date +%s)
  env "${env[@]}" timeout 150 "$b/app/longlive" bench --preset "$preset" --random full \
    --blocks 3 --warmup 1 --profile-blocks 0 --switch-latency "${SWITCH_COUNT:-10}" \
    --json "$out/switch_$run.json" >"$out/switch_$run.log" 2>&1
  echo "== switch $run rc=$? ($(($(date +%s) - start)) s)"
  grep -E "switch [0-9]+:|switch latency" "$out/switch_$run.log" | tail -12
done
for run in ${ENCODER_RUNS:-}; do
  env=()
  [ "$run" = nofold ] && env=(LONGLIVE_VAE_FOLD_BIAS=0)
  [ "$run" = groups1 ] && env=(LONGLIVE_ENCODE_GROUPS_PER_PASS=1)
  [ "$run" = groups2 ] && env=(LONGLIVE_ENCODE_GROUPS_PER_PASS=2)
  [ "$run" = groups3 ] && env=(LONGLIVE_ENCODE_GROUPS_PER_PASS=3)
  start=$(date +%s)
  env "${env[@]}" timeout 200 "$b/app/longlive" bench --preset turbo_fp8 --random full \
    --blocks 3 --warmup 1 --profile-blocks 0 --vace --vace-drift-blocks 0 --kernels \
    --json "$out/encoder_$run.json" >"$out/encoder_$run.log" 2>&1
  echo "== encoder $run rc=$? ($(($(date +%s) - start)) s)"
  grep -E "vace encode|encode_kernels|rms_silu|bias_residual|elementwise" "$out/encoder_$run.log" | head -20
done
