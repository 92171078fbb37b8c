#pragma once
// Drives a running studio window like a user would (real key/mouse events through QTest), for
// the GUI test under Xvfb: start with a prompt, let frames arrive, switch the prompt, change the
// preset, toggle the overlay, stop. Writes report.json and screenshot.png into `out_dir` and
// exits the application with 0 when every check passed.
#include <QString>

namespace longlive::ui {

class MainWindow;
void run_autotest(MainWindow* window, const QString& out_dir);

}  // namespace longlive::ui
