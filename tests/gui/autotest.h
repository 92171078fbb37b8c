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
// panel shows it (counts, thumbnail), the scale slider moves it live, the timeline names it.
void run_inputs_autotest(MainWindow* window, const QString& out_dir);

}  // namespace longlive::ui
