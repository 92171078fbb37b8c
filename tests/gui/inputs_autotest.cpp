// Control inputs through the real window: a video file picked in the input panel (what its file
// dialog hands back) reaches the engine as a VACE input, the panel shows the engine's state
// (description, frame counts, a thumbnail of the control signal), the scale slider moves the
// engine's scale, a rectangle drawn over the video becomes the inpainting mask, the stopped
// session's timeline names the file and the mask, and a new engine (another resolution) opens
// the same input again.
#include <ATen/ATen.h>

#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QJsonObject>
#include <QTest>

#include "autotest.h"
#include "driver.h"
#include "input_panel.h"
#include "longlive/recorder.h"
#include "main_window.h"
#include "video_view.h"

namespace longlive::ui {

using namespace autotest;

void run_inputs_autotest(MainWindow* w, const QString& out_dir) {
  QDir().mkpath(out_dir);
  Checklist check;
  QJsonObject& report = check.report;
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
  // The 64x48 video on a session of another aspect ratio: the panel says what the crop cost.
  report["counts_line"] = panel->counts_label()->text();
  const QSize session = w->view()->current().size;
  if (session.width() * 48 != session.height() * 64)
    check("panel_shows_the_crop", panel->counts_label()->text().contains("64x48 cropped to"));
  check("preview_thumbnail_shown", !panel->preview_label()->pixmap().isNull());
  check("vace_available_on_the_tiny_model", !panel->vace_unavailable_shown());
  // A camera being reopened (LiveVideoSource's reconnect) is said in the panel, and cleared.
  {
    InputStatus lost = inputs();
    lost.interrupted = "live input '/dev/video0' (v4l2) failed: No such device; reopening it";
    panel->sync(lost);
    const bool shown = !panel->interrupted_label()->isHidden() &&
                       panel->interrupted_label()->text().contains("/dev/video0");
    lost.interrupted.clear();
    panel->sync(lost);
    check("lost_input_shown_then_cleared", shown && panel->interrupted_label()->isHidden());
  }

  panel->scale_slider()->setValue(InputPanel::kScaleSteps / 4);  // 0.5
  check("scale_moved_live", wait_until([&] { return inputs().vace_scale == 0.5; }, 90000));
  const int64_t at = blocks();
  check("video_goes_on", wait_until([&] { return blocks() >= at + 1; }, 90000));

  // Inpainting with a rectangle drawn over the video ("Draw mask"): the middle half of the frame.
  click(panel->draw_mask_button());
  VideoView* view = w->view();
  check("draw_mode_on", view->mask_drawing());
  const QSize frame = view->current().size;
  const QRect shown = view->frame_rect();
  auto point = [&](double fx, double fy) {
    return (QPointF(shown.topLeft()) + QPointF(fx * shown.width(), fy * shown.height())).toPoint();
  };
  QTest::mousePress(view, Qt::LeftButton, {}, point(0.25, 0.25));
  QTest::mouseMove(view, point(0.5, 0.6));
  QTest::mouseMove(view, point(0.75, 0.75));
  QTest::mouseRelease(view, Qt::LeftButton, {}, point(0.75, 0.75));
  check("draw_mode_off_after_the_rectangle",
        !view->mask_drawing() && !panel->draw_mask_button()->isChecked());
  const QString mask_path = panel->mask();
  report["drawn_mask"] = mask_path;
  const QImage mask(mask_path);
  check("mask_has_the_frame_size", !mask.isNull() && mask.size() == frame);
  if (!mask.isNull()) {
    const QImage gray = mask.convertToFormat(QImage::Format_Grayscale8);
    int64_t white = 0;
    for (int y = 0; y < gray.height(); ++y)
      for (int x = 0; x < gray.width(); ++x) white += gray.pixelColor(x, y).value() > 127;
    // The rectangle is the frame's middle half each way (within the mouse's whole pixels).
    const double expected = 0.25 * frame.width() * frame.height();
    report["mask_white_fraction_of_expected"] = static_cast<double>(white) / expected;
    check("mask_is_the_drawn_rectangle",
          gray.pixelColor(frame.width() / 2, frame.height() / 2).value() == 255 &&
              gray.pixelColor(1, 1).value() == 0 &&
              gray.pixelColor(frame.width() - 2, frame.height() - 2).value() == 0 &&
              std::abs(static_cast<double>(white) - expected) < 0.15 * expected);
  }
  check("engine_inpaints_with_the_drawn_mask",
        wait_until([&] { return inputs().vace.rfind("inpaint", 0) == 0; }, 90000));
  report["engine_input_after_mask"] = QString::fromStdString(inputs().vace);
  const int64_t masked_from = blocks();
  check("video_goes_on_inpainting", wait_until([&] { return blocks() >= masked_from + 1; }, 90000));

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
  bool names_mask = false;
  for (const auto& e : w->last_timeline().events)
    names_mask = names_mask || (e.kind == EventKind::vace && e.vace.mode == "inpaint" &&
                                e.vace.mask == mask_path.toStdString());
  check("timeline_names_the_drawn_mask", names_mask);
  check("timeline_has_the_scale_move", has_scale);

  // Another resolution makes a new engine: it opens the same input again (the video, the drawn
  // mask, the scale), at the new size, without the user choosing it again.
  QComboBox* resolution = w->resolution_box();
  const QString other = resolution->currentText() == "128x128" ? "64x64" : "128x128";
  resolution->setCurrentText(other);
  box->setFocus();
  box->setPlainText("a red fox running through snow");
  press_key(box, Qt::Key_Return);
  check("input_follows_the_new_engine", wait_until(
                                            [&] {
                                              const InputStatus s = inputs();
                                              return s.vace.rfind("inpaint", 0) == 0 &&
                                                     s.vace.find("control.mp4") !=
                                                         std::string::npos &&
                                                     s.vace_scale == 0.5 && s.frames_used > 0;
                                            },
                                            90000));
  report["engine_input_after_resolution_change"] = QString::fromStdString(inputs().vace);
  auto shown_size = [w] {
    const QSize size = w->view()->current().size;
    return QString("%1x%2").arg(size.height()).arg(size.width());
  };
  check("new_engine_at_the_new_size", wait_until([&] { return shown_size() == other; }, 90000));
  report["size_after_resolution_change"] = shown_size();
  click(w->stop_button());
  check("stopped_again", wait_until([&] { return w->engine_stats().state == "idle"; }, 30000));

  check("no_error_banner", !w->error_visible());
  if (w->error_visible()) report["error_banner"] = w->error_text();
  write_report(out_dir, report, check.ok);
  QApplication::exit(check.ok ? 0 : 1);
}

}  // namespace longlive::ui
