// Control inputs through the real window: a video file picked in the input panel (what its file
// dialog hands back) reaches the engine as a VACE input, the panel shows the engine's state
// (description, frame counts, a thumbnail of the control signal), the scale slider moves the
// engine's scale, and the stopped session's timeline names the file.
#include <ATen/ATen.h>

#include <QApplication>
#include <QDir>
#include <QJsonObject>
#include <QTest>

#include "autotest.h"
#include "driver.h"
#include "input_panel.h"
#include "longlive/recorder.h"
#include "main_window.h"

namespace longlive::ui {

using namespace autotest;

void run_inputs_autotest(MainWindow* w, const QString& out_dir) {
  QDir().mkpath(out_dir);
  QJsonObject report;
  bool ok = true;
  auto check = [&](const char* name, bool passed) {
    report[name] = passed;
    ok = ok && passed;
  };
  // A small control video: a bright bar sweeping right, 20 frames at 16 fps.
  const QString video = out_dir + "/control.mp4";
  {
    at::Tensor frames = at::zeros({20, 3, 48, 64});
    for (int64_t i = 0; i < 20; ++i) frames[i].narrow(2, (i * 3) % 56, 8).fill_(1.0);
    RecorderOptions o;
    o.path = video.toStdString();
    o.codec = "libx264";
    o.write_sidecar = false;
    check("control_video_written", record_frames_to_mp4(frames, o));
  }
  w->activateWindow();
  PromptEdit* box = w->prompt_edit();
  box->setFocus();
  QTest::keyClicks(box, "a red fox running through snow");
  press_key(box, Qt::Key_Return);
  auto blocks = [w] { return w->engine_stats().blocks; };
  check("started", wait_until([&] { return blocks() >= 1; }, 90000));

  InputPanel* panel = w->input_panel();
  panel->target_box()->setCurrentIndex(0);      // VACE
  panel->preprocess_box()->setCurrentIndex(2);  // edges
  panel->choose(InputKind::video, video);       // the "Video file…" dialog's answer
  auto inputs = [w] { return w->engine_stats().inputs; };
  check("engine_received_the_video", wait_until(
                                         [&] {
                                           const InputStatus s = inputs();
                                           return s.vace.find("control.mp4") != std::string::npos &&
                                                  s.frames_used > 0;
                                         },
                                         90000));
  report["engine_input"] = QString::fromStdString(inputs().vace);
  run_events_for(200);
  check("panel_shows_the_input", panel->state_label()->text().contains("control.mp4") &&
                                     panel->counts_label()->text().contains("frames"));
  check("preview_thumbnail_shown", !panel->preview_label()->pixmap().isNull());
  check("vace_available_on_the_tiny_model", !panel->vace_unavailable_shown());

  panel->scale_slider()->setValue(InputPanel::kScaleSteps / 4);  // 0.5
  check("scale_moved_live", wait_until([&] { return inputs().vace_scale == 0.5; }, 90000));
  const int64_t at = blocks();
  check("video_goes_on", wait_until([&] { return blocks() >= at + 1; }, 90000));

  click(w->stop_button());
  check("stopped", wait_until([&] { return w->engine_stats().state == "idle"; }, 30000));
  check("timeline_written", wait_until([&] { return !w->last_timeline_path().isEmpty(); }, 10000));
  bool names_file = false, has_scale = false;
  for (const auto& e : w->last_timeline().events) {
    names_file =
        names_file || (e.kind == EventKind::vace && e.vace.source.path == video.toStdString() &&
                       e.vace.source.preprocess == "edges");
    has_scale = has_scale || (e.kind == EventKind::vace_scale && e.strength == 0.5);
  }
  check("timeline_names_the_file", names_file);
  check("timeline_has_the_scale_move", has_scale);
  check("no_error_banner", !w->error_visible());
  if (w->error_visible()) report["error_banner"] = w->error_text();
  write_report(out_dir, report, ok);
  QApplication::exit(ok ? 0 : 1);
}

}  // namespace longlive::ui
