#pragma once
// Scripted GUI tests: each drives a running studio window like a user would (real key/mouse
// events through QTest) under Xvfb, writes report.json (and what else it checks) into `out_dir`
// and exits the application with 0 when every check passed. Built into longlive-studio-autotest
// (tests/gui), never into the studio.
#include <QString>

namespace longlive::ui {

class MainWindow;

// The whole session: start with a prompt, let frames arrive, record, switch the prompt, the
// overlay, change the preset, perform (transition, cut, blend, prompt set), stop, timeline,
// export (live frames and Wan VAE), out-of-memory offer, resolution change, missing model files.
void run_autotest(MainWindow* window, const QString& out_dir);

// Prefetch while typing: a prompt typed (before the start, and while the video runs) and left
// idle for longer than MainWindow::kPrefetchIdleMs is encoded ahead, so Enter on it is a
// prompt-cache hit with no new miss; typing itself sends nothing.
void run_prefetch_autotest(MainWindow* window, const QString& out_dir);

// Control inputs: a video file picked in the input panel reaches the engine as a VACE input, the
// panel shows it (counts, thumbnail), the scale slider moves it live, a rectangle drawn over the
// video ("Draw mask") becomes the inpainting mask, the timeline names the file and the mask.
void run_inputs_autotest(MainWindow* window, const QString& out_dir);

// As gpu_session does, on a window not set to the tiny model: the model folder (or, when empty,
// the 1.3B model's random weights) at 480x832. Returns the model as a report names it.
QString use_scenario_model(MainWindow* window, const QString& model_folder);

// A recording disk that fills mid-recording (the file-size limit lowered): the banner names the
// file, the recording stops and keeps a playable file, the video goes on, and the same window
// records again once there is room.
void run_disk_full_autotest(MainWindow* window, const QString& out_dir,
                            const QString& model_folder);

// GPU faults in one studio process (issue #18): an out-of-memory error mid-stream while
// recording (on a CUDA device a real one under a capped allocator, on the CPU an injected one):
// the banner offers low_memory, the recording keeps the frames made before it, the offer restarts
// the video; then a decode that fails (injected): the banner names the block, Start again streams.
// Without the tiny model: `model_folder`, else the 1.3B model's random weights, at 480x832.
void run_faults_autotest(MainWindow* window, const QString& out_dir, const QString& model_folder);

struct GpuSessionOptions {
  int record_seconds = 20;  // length of the recording
  int watch_ms = 2500;      // watching after each prompt switch and preset change
  // A model folder to load (e.g. `longlive random-model --full`'s): model_load_s is then a load
  // from files; empty: the 1.3B model with random weights built on the host.
  QString model_folder;
};
// The studio measured as a person uses it (tests/gui/gpu_autotest.cpp): Start (cold, then again
// with the model loaded), ten typed prompt switches with Enter, F1 with the Kernels tab (screenshot
// studio-gpu.png), a recording, two preset changes, an export; out_dir/studio.json holds the
// numbers. Without the tiny model it runs the 1.3B model with random weights at 480x832.
void run_gpu_session_autotest(MainWindow* window, const QString& out_dir,
                              const GpuSessionOptions& options);

}  // namespace longlive::ui
