// GPU faults as the studio's user meets them (issue #18), in one studio process, through the
// window: an out-of-memory error mid-stream while recording (the banner offers low_memory, the
// recording keeps the frames made before it, the offer restarts the video under low_memory), then
// a decode that fails (the banner names the decoder and the block; Start again streams). The
// engine's test hooks (engine.cpp) make the faults: on a CUDA device a real out-of-memory error
// under a capped allocator (LONGLIVE_CAP_GPU_MEMORY), on the CPU an injected one
// (LONGLIVE_INJECT_OOM), and an injected decode failure (LONGLIVE_INJECT_DECODE_FAILURE).
#include <ATen/Context.h>

#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QElapsedTimer>
#include <QJsonObject>
#include <QPushButton>
#include <QTest>
#include <chrono>
#include <cstdio>
#include <future>

#include "autotest.h"
#include "driver.h"
#include "error_banner.h"
#include "longlive/recorder.h"
#include "main_window.h"
#include "recording_controls.h"
#include "video_view.h"

namespace longlive::ui {

using namespace autotest;

namespace {

constexpr char kPrompt[] = "a lighthouse in a storm";
// The model load (from files on the GPU box), the blocks before the fault and the restart.
constexpr int kFaultTimeoutMs = 240000;
constexpr int kFramesTimeoutMs = 120000;

// What the banner says once the engine has given up the video (its error and then its state
// arrive in this order; the state clears the window's "running", which Start looks at).
bool wait_for_failure(MainWindow* w, int timeout_ms) {
  return wait_until(
      [&] {
        const std::string& state = w->engine_stats().state;
        return w->error_visible() && (state == "error" || state == "idle");
      },
      timeout_ms);
}

}  // namespace

void run_faults_autotest(MainWindow* w, const QString& out_dir, const QString& model_folder) {
  QDir().mkpath(out_dir);
  Checklist check;
  QJsonObject& report = check.report;
  // A failed step names itself on stderr (ctest's output) besides report.json.
  auto fail_unless = [&](const char* name, bool passed) {
    check(name, passed);
    if (!passed) std::fprintf(stderr, "faults: check '%s' failed\n", name);
    return passed;
  };
  auto finish = [&] {
    click(w->stop_button());
    wait_until([&] { return w->engine_stats().state == "idle"; }, 30000);
    write_report(out_dir, report, check.ok);
    std::fprintf(stderr, "faults: %s (%s/report.json)\n", check.ok ? "passed" : "FAILED",
                 qPrintable(out_dir));
    QApplication::exit(check.ok ? 0 : 1);
  };
  report["model"] = use_scenario_model(w, model_folder);
  const int balanced = w->preset_box()->findText("balanced");
  if (balanced >= 0) w->preset_box()->setCurrentIndex(balanced);
  report["commit"] = qEnvironmentVariable("LONGLIVE_COMMIT", "unknown");
  report["process_id"] = static_cast<double>(QCoreApplication::applicationPid());
  w->activateWindow();
  report["window_active"] = QTest::qWaitForWindowActive(w, 2000);  // Ctrl+R needs it
  RecordingControls* rc = w->recording();
  const auto finished = watch_recordings(rc);
  QElapsedTimer clock;

  // Frames in a written video, counted on another thread while the window keeps running (read on
  // the UI thread, the view falls behind; see gpu_autotest.cpp).
  auto frames_in_video = [&](const QString& path) {
    auto counted = std::async(
        std::launch::async, [file = path.toStdString()] { return read_video(file, false).frames; });
    wait_until(
        [&] { return counted.wait_for(std::chrono::seconds(0)) == std::future_status::ready; },
        300000);
    return counted.get();  // rethrows the reader's error
  };
  // New frames on the screen: more than one block's worth after `painted`, from a running video.
  auto streams_again = [&](int64_t painted) {
    return wait_until(
        [&] {
          return w->engine_stats().state == "running" && w->engine_stats().frames > 12 &&
                 w->view()->frames_painted() > painted + 12;
        },
        kFramesTimeoutMs);
  };

  // 1. Out of memory mid-stream. The hooks are read when an engine's worker starts, once per
  // engine: set before the window makes its first engine (at the first Start).
  const bool cuda = at::hasCUDA();
  const QByteArray oom_hook = cuda ? "LONGLIVE_CAP_GPU_MEMORY" : "LONGLIVE_INJECT_OOM";
  const QByteArray oom_value = cuda ? "block:3:16" : "block:3";
  qputenv(oom_hook.constData(), oom_value);
  report["oom_hook"] = QString::fromLatin1(oom_hook + "=" + oom_value);
  report["oom_real"] = cuda;  // a capped allocator's own error, not an injected one

  EncoderSettings settings = rc->settings();
  settings.folder = out_dir + "/recordings";
  QDir().mkpath(settings.folder);
  rc->set_settings(settings);
  press_key(w, Qt::Key_R, Qt::ControlModifier);  // recording before the video starts
  fail_unless("recording_opened",
              wait_until([&] { return rc->recording() && !rc->live().opening(); }, 30000));
  w->prompt_edit()->setFocus();
  QTest::keyClicks(w->prompt_edit(), kPrompt);
  clock.start();
  click(w->start_button());
  const bool oom_reported = wait_for_failure(w, kFaultTimeoutMs);
  report["oom_banner_after_ms"] = static_cast<double>(clock.elapsed());
  report["oom_banner"] = w->error_text();
  QPushButton* offer = w->banner()->action_button();
  report["oom_offer"] = offer->isVisible() ? offer->text() : QString();
  const int64_t frames_before_oom = w->engine_stats().frames;
  report["oom_frames_before_failure"] = static_cast<double>(frames_before_oom);
  report["oom_frames_painted"] = static_cast<double>(w->view()->frames_painted());
  if (!fail_unless("oom_reported", oom_reported)) {
    std::fprintf(stderr, "faults: no out-of-memory banner within %d s of Start (%s)\n",
                 kFaultTimeoutMs / 1000, qPrintable(w->error_text()));
    return finish();
  }
  fail_unless("oom_banner_says_out_of_gpu_memory", w->error_text().contains("out of GPU memory"));
  const bool offered =
      fail_unless("oom_offers_low_memory",
                  offer->isVisible() && offer->text() == "Switch to low_memory and restart");
  fail_unless("oom_after_frames", frames_before_oom > 0);
  // A real error comes from the allocator, not from the injection.
  if (cuda) fail_unless("oom_is_the_allocators", !w->error_text().contains("injected"));

  // What was recorded before the failure is kept: the person stops the recording (still open:
  // the engine's failure does not end it) and gets a playable file of every frame made.
  fail_unless("recording_survived_the_failure", rc->recording());
  press_key(w, Qt::Key_R, Qt::ControlModifier);
  fail_unless("recording_finished", wait_until([&] { return finished->done; }, 60000));
  report["oom_recording"] = finished->path;
  report["oom_recording_error"] = finished->error;
  report["oom_recording_frames"] = static_cast<double>(finished->frames);
  fail_unless("recording_without_error", finished->error.isEmpty());
  try {
    const int64_t kept = frames_in_video(finished->path);
    report["oom_recorded_frames_kept"] = static_cast<double>(kept);
    fail_unless("recording_kept_frames", kept > 0);
    fail_unless("recording_kept_every_frame_before_the_failure", kept == frames_before_oom);
  } catch (const std::exception& e) {
    report["oom_recording_read_error"] = e.what();
    fail_unless("recording_kept_frames", false);
  }
  write_report(out_dir, report, check.ok);  // a run cut short still leaves this much

  if (!offered) {
    std::fprintf(stderr, "faults: the banner offers no low_memory restart: '%s'\n",
                 qPrintable(w->error_text()));
    return finish();
  }
  // The offer: the preset becomes low_memory and the same window's engine streams again.
  const int64_t painted = w->view()->frames_painted();
  clock.restart();
  click(offer);
  const bool restarted = streams_again(painted);
  report["oom_restart_ms"] = static_cast<double>(clock.elapsed());
  report["oom_restart_preset"] = QString::fromStdString(w->engine_stats().preset);
  fail_unless("oom_switched_to_low_memory", w->preset_box()->currentText() == "low_memory" &&
                                                w->engine_stats().preset == "low_memory");
  fail_unless("oom_restart_streams", restarted);
  fail_unless("oom_no_banner_after_restart", !w->error_visible());
  click(w->stop_button());
  wait_until([&] { return w->engine_stats().state == "idle"; }, 30000);
  write_report(out_dir, report, check.ok);

  // 2. A decode that fails. A new engine is needed for the new hook: a change of resolution
  // retires the window's engine (and back: the same size), the next Start makes one.
  qunsetenv(oom_hook.constData());
  qputenv("LONGLIVE_INJECT_DECODE_FAILURE", "block:2");
  report["decode_hook"] = "LONGLIVE_INJECT_DECODE_FAILURE=block:2";
  QComboBox* resolution = w->resolution_box();
  const int resolution_index = resolution->currentIndex();
  resolution->setCurrentIndex((resolution_index + 1) % resolution->count());
  resolution->setCurrentIndex(resolution_index);
  clock.restart();
  click(w->start_button());
  const bool decode_reported = wait_for_failure(w, kFaultTimeoutMs);
  report["decode_banner_after_ms"] = static_cast<double>(clock.elapsed());
  report["decode_banner"] = w->error_text();
  report["decode_frames_before_failure"] = static_cast<double>(w->engine_stats().frames);
  if (!fail_unless("decode_failure_reported", decode_reported)) {
    std::fprintf(stderr, "faults: no decode failure banner within %d s of Start (%s)\n",
                 kFaultTimeoutMs / 1000, qPrintable(w->error_text()));
    return finish();
  }
  fail_unless("decode_banner_names_the_block",
              w->error_text().contains("the live decoder failed on block 2"));
  fail_unless("decode_banner_offers_nothing", !w->banner()->action_button()->isVisible());
  fail_unless("decode_after_frames", w->engine_stats().frames > 0);

  // Start again, as a person does: the same engine streams.
  const int64_t painted_before_restart = w->view()->frames_painted();
  clock.restart();
  click(w->start_button());
  const bool decode_restarted = streams_again(painted_before_restart);
  report["decode_restart_ms"] = static_cast<double>(clock.elapsed());
  fail_unless("decode_restart_streams", decode_restarted);
  fail_unless("decode_no_banner_after_restart", !w->error_visible());
  qunsetenv("LONGLIVE_INJECT_DECODE_FAILURE");
  report["device"] = QString::fromStdString(w->engine_stats().device);
  finish();
}

}  // namespace longlive::ui
