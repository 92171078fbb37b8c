#!/usr/bin/env bash
# On the GPU box: the studio end to end (#16 item 5). Unpacks what packaging/device/
# prepare_studio_carry.sh made (Qt 6, a minimal FFmpeg, Xvfb with Mesa's DRI driver for its GLX,
# fonts) into /opt/longlive-deps, builds longlive-studio-autotest for sm_90, starts Xvfb and runs
# the gpu_session scenario under NVIDIA's GLX: $OUT/studio.json, studio-gpu.png, report.json,
# pacing.json (the view's pacing events during the switches, see PacingTrace), logs.
#   run: carry [".snap/NAME", ".debs", ".studio"], from the repository root:
#   cd .snap/NAME && LONGLIVE_COMMIT=<hash> LONGLIVE_DEBS=$OLDPWD/.debs \
#     STUDIO_CARRY=$OLDPWD/.studio bash packaging/device/studio_run.sh
# STUDIO_SKIP_BUILD=1 reuses build-gpu (a second call on the warm machine); STUDIO_EXTRA_TARGETS
# builds more (e.g. longlive, for a bench after the session); STUDIO_ENCODE_BENCH=0 skips the
# encoder's own timing; STUDIO_FAULTS=1 runs the faults scenario after the session
# ($OUT/faults.json); STUDIO_DISK_FULL=1 the disk_full scenario ($OUT/disk_full.json);
# STUDIO_SESSION=0 leaves gpu_session out. Logs (build, GLX, Xvfb, GPU tests, the scenarios)
# come back in logs.tar.gz. For FA3 and FP8 attention, make the snapshot with
# packaging/device/make_snapshot.sh (it packs FA3's sources and cudnn-frontend's headers).
set -uo pipefail
carry=${STUDIO_CARRY:-$PWD/.studio}
deps=/opt/longlive-deps
out=${OUT:-/tmp/out}
mkdir -p "$out" "$deps"
# Unpacked once per machine: a later call on the warm machine (STUDIO_SKIP_BUILD=1) needs no carry.
if [ ! -f "$deps/.studio-unpacked" ]; then
  echo "== unpack"
  start=$(date +%s)
  tar -xJf "$carry/studio-deps.tar.xz" -C "$deps" || exit 1
  for f in "$carry"/debs/*.deb; do dpkg -x "$f" "$deps"; done
  # FFmpeg was installed for /opt/studio-deps/ffmpeg; pkg-config sees $deps as its sysroot.
  sed -i 's#/opt/studio-deps/ffmpeg#/ffmpeg#g' "$deps"/ffmpeg/lib/pkgconfig/*.pc
  # The box's Python links its own expat and libffi (newer symbols maybe): keep the box's.
  for l in libexpat.so.1 libffi.so.8; do
    ldconfig -p | grep -q "$l " && rm -f "$deps/usr/lib/x86_64-linux-gnu/$l"*
  done
  touch "$deps/.studio-unpacked"
  echo "unpacked in $(($(date +%s) - start)) s: $(du -sh "$deps" | cut -f1)"
fi

# FlashAttention-3 (sm_90 attention) when the snapshot carries its sources as fa3.tar.xz (1 MB:
# .fa3/ itself, 28 MB, does not fit the carry beside .studio/): build_and_test.sh unpacks it.

export LONGLIVE_GUI=ON
# Debian 12 keeps some libraries (libdbus) in /lib: the build's tools (moc) and the studio need it.
export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
. packaging/device/common.sh
built=1
# STUDIO_GPU_TESTS=1: the GPU tests of code not yet run on a GPU are built too and run before the
# session (one call where a machine is scarce): CUPTI's detach, inputs encoded ahead (its worker
# and the capture gate), the FP8 cache's direct K/V write, FA3's FP8 schedules, our own streams,
# the graphs and VACE's fast path (side stream, FP8 attention in its blocks).
gpu_tests=${STUDIO_GPU_TESTS:-0}
targets="longlive-studio-autotest ${STUDIO_EXTRA_TARGETS:-}"
[ "$gpu_tests" = 1 ] && targets="$targets test_core test_engine test_model"
# STUDIO_GPU_TESTS=model: only test_model's (a shorter build where device time is short).
[ "$gpu_tests" = model ] && targets="$targets test_model"
if [ "${STUDIO_SKIP_BUILD:-0}" != 1 ]; then
  # In a subshell: a failed build still leaves the X/GLX probes below to run.
  (device_build "$targets" "$out/build.log") || built=0
fi
if [ "$gpu_tests" != 0 ] && [ "$built" = 1 ]; then
  {
    if [ "$gpu_tests" = 1 ]; then
      timeout 60 "$b/tests/test_core" --gtest_filter='*KernelProfiler*'
      timeout 90 "$b/tests/test_engine" --gtest_filter='*EncodeAhead*:CaptureGate.*'
    fi
    timeout 200 "$b/tests/test_model" \
      --gtest_filter='FusedKernels.*:FastPath*:Fa3Attention.Fp8*:DedicatedStream.*:CudaGraphs.*:VaceFastPath.*'
  } >"$out/gpu-tests.log" 2>&1
  echo "== GPU tests"
  grep -E "heap growth|^\[  (PASSED|FAILED)|FAILED  \]" "$out/gpu-tests.log" | tail -12
fi
lib=$deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$lib:$deps/lib/x86_64-linux-gnu:$deps/ffmpeg/lib:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:${LD_LIBRARY_PATH:-}

echo "== libraries not found"
for f in "$deps/usr/bin/Xvfb" "$deps/usr/bin/glxinfo" "$lib/qt6/plugins/platforms/libqxcb.so" \
  "$lib/qt6/plugins/xcbglintegrations/libqxcb-glx-integration.so" "$lib/dri/swrast_dri.so" \
  "$b/tests/gui/longlive-studio-autotest"; do
  ldd "$f" 2>&1 | grep "not found" | sed "s#^#$(basename "$f"): #"
done

# Xvfb's GLX loads Mesa's DRI driver from a path built into it, and runs xkbcomp from /usr/bin:
# links to the carried ones where the box has none (nothing of the box is replaced).
for f in /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so /usr/bin/xkbcomp; do
  [ -e "$f" ] || { mkdir -p "$(dirname "$f")" && ln -s "$deps$f" "$f"; }
done
# softpipe, no LLVM: the carried libLLVM-15 is a stand-in (llvm_stub.py); Xvfb's driver only
# lists the GLX configs, NVIDIA's client library renders.
GALLIUM_DRIVER=softpipe DRAW_USE_LLVM=0 "$deps/usr/bin/Xvfb" :99 -screen 0 1280x900x24 \
  -xkbdir "$deps/usr/share/X11/xkb" -fp built-ins -nolisten tcp +extension GLX \
  >"$out/xvfb.log" 2>&1 &
xvfb=$!
export DISPLAY=:99
for _ in $(seq 50); do [ -e /tmp/.X11-unix/X99 ] && break; sleep 0.1; done

cat >/tmp/fonts.conf <<EOF
<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>$deps/usr/share/fonts</dir><cachedir>/tmp/fontconfig</cachedir></fontconfig>
EOF
export FONTCONFIG_FILE=/tmp/fonts.conf QT_PLUGIN_PATH=$lib/qt6/plugins QT_QPA_PLATFORM=xcb \
  QT_XKB_CONFIG_ROOT=$deps/usr/share/X11/xkb

# Which GL the window gets: NVIDIA's GLX (GPU, CUDA-GL interop), else Mesa's (software).
{
  echo "== glxinfo, NVIDIA"
  __GLX_VENDOR_LIBRARY_NAME=nvidia timeout 20 "$deps/usr/bin/glxinfo" -B 2>&1 | head -30
} >"$out/glx.log" 2>&1
if grep -q "OpenGL renderer string: NVIDIA" "$out/glx.log"; then
  export __GLX_VENDOR_LIBRARY_NAME=nvidia
else
  echo "NVIDIA GLX unavailable: Mesa softpipe (host upload)" | tee -a "$out/glx.log"
  export __GLX_VENDOR_LIBRARY_NAME=mesa GALLIUM_DRIVER=softpipe DRAW_USE_LLVM=0 \
    LIBGL_DRIVERS_PATH=$lib/dri
fi
grep -E "renderer|version string" "$out/glx.log"

[ "$built" = 1 ] || { echo "build failed: no session"; kill "$xvfb"; exit 1; }
echo "== gpu_session"
home=/tmp/studio-home
mkdir -p "$home"
# STUDIO_MODEL_FOLDER=1 (with STUDIO_EXTRA_TARGETS=longlive): the studio loads a real-size model
# folder of random weights in the public files' formats (`longlive random-model --full`, written
# first, so in page cache), and model_load_s is a load from files.
folder_args=()
if [ "${STUDIO_MODEL_FOLDER:-0}" = 1 ]; then
  folder=/tmp/longlive-random-model
  [ -d "$folder" ] || timeout 600 "$b/app/longlive" random-model "$folder" --full | tail -5
  folder_args=(--model-folder "$folder")
fi
# STUDIO_SESSION=0 leaves gpu_session out (a call for the fault scenarios only).
if [ "${STUDIO_SESSION:-1}" = 1 ]; then
  HOME=$home timeout "${STUDIO_TIMEOUT:-420}" "$b/tests/gui/longlive-studio-autotest" \
    --scenario gpu_session --presets "$PWD/presets" --autotest /tmp/studio-session \
    "${folder_args[@]}" ${STUDIO_ARGS:-} >"$out/studio.log" 2>&1
  echo "exit $?"
  cp /tmp/studio-session/studio.json /tmp/studio-session/report.json \
    /tmp/studio-session/studio-gpu.png /tmp/studio-session/pacing.json "$out/" 2>/dev/null
  grep -E "gpu_session:|error|Error" "$out/studio.log" | tail -20
fi
# A fault scenario in a studio of its own, on gpu_session's model (the folder of
# STUDIO_MODEL_FOLDER=1, else random weights) at 480x832: $OUT/NAME.json is its report, NAME.log
# goes in logs.tar.gz. run_scenario NAME TIMEOUT_S LOG_PATTERN
run_scenario() {
  local name=$1 timeout_s=$2 pattern=$3
  echo "== $name"
  mkdir -p "/tmp/studio-$name-home"
  HOME=/tmp/studio-$name-home timeout "$timeout_s" "$b/tests/gui/longlive-studio-autotest" \
    --scenario "$name" --presets "$PWD/presets" --autotest "/tmp/studio-$name" \
    "${folder_args[@]}" >"$out/$name.log" 2>&1
  echo "exit $?"
  cp "/tmp/studio-$name/report.json" "$out/$name.json" 2>/dev/null
  grep -E "$pattern" "$out/$name.log" | tail -20
}
# STUDIO_FAULTS=1: the faults scenario (tests/gui/faults_autotest.cpp, issue #18): a real
# out-of-memory error while recording (LONGLIVE_CAP_GPU_MEMORY=block:3:16, set by the scenario on
# a CUDA device), the banner's low_memory offer pressed, then an injected decode failure and Start
# again.
[ "${STUDIO_FAULTS:-0}" = 1 ] &&
  run_scenario faults "${STUDIO_FAULTS_TIMEOUT:-360}" "^faults:|LONGLIVE_|engine: |error|Error"
# STUDIO_DISK_FULL=1: the disk_full scenario (tests/gui/disk_full_autotest.cpp, issue #18): the
# recording's file-size limit lowered mid-recording (EFBIG, as a full disk's ENOSPC), the banner,
# the kept file, the video going on, recording again.
[ "${STUDIO_DISK_FULL:-0}" = 1 ] &&
  run_scenario disk_full "${STUDIO_DISK_FULL_TIMEOUT:-240}" "disk_full|error|Error"
kill "$xvfb" 2>/dev/null
# What this box's CPU encodes per frame at the live recording's thread count (half the cores,
# 1-8: live_encoder_threads) and half of it: 832x480 noise, what the random model makes, in the
# default and the fastest preset, with zerolatency's slices (streams) and frame threads (files).
if [ "${STUDIO_ENCODE_BENCH:-1}" = 1 ] &&
  cmake --build "$b" --target longlive_encode_bench >/dev/null 2>&1; then
  threads=$(( $(nproc) / 2 )); [ "$threads" -gt 8 ] && threads=8; [ "$threads" -lt 1 ] && threads=1
  for t in "$threads" $(( (threads + 1) / 2 )); do
    for preset in veryfast ultrafast; do
      for zl in 1 0; do
        "$b/recorder/longlive_encode_bench" --content noise --frames 160 --threads "$t" \
          --preset "$preset" --zerolatency "$zl" --out /tmp/encode.mp4
      done
    done
  done 2>&1 | tee "$out/encode.log"
fi
# At most 8 files come back from a call: the logs go in one archive (the caller's own run.log
# makes the eighth). With faults.json, encode.log goes in too (run.log has its lines: tee above).
logs="build.log glx.log xvfb.log gpu-tests.log faults.log disk_full.log"
[ -f "$out/faults.json" ] && logs="$logs encode.log"
(cd "$out" && tar -czf logs.tar.gz --remove-files $(ls $logs 2>/dev/null))
ls "$out"
