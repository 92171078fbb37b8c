// A recording disk that fills while the studio records (the tiny model on the CPU, or on a GPU
// the 1.3B model at 480x832 from a model folder or random weights): the process's file-size limit
// is lowered (writes past it fail with EFBIG, as writes to a full disk fail with ENOSPC) once the
// recording runs. The banner names the file, the recording stops and keeps what it wrote (a
// playable file), the video goes on, and once there is room again the same window records again.
#include <sys/resource.h>

#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QJsonObject>
#include <QStringList>
#include <QTest>
#include <algorithm>
#include <csignal>
#include <memory>

#include "autotest.h"
#include "driver.h"
#include "longlive/recorder.h"
#include "main_window.h"
#include "recording_controls.h"

namespace longlive::ui {

using namespace autotest;

namespace {

// Room for the MP4's header and a few fragments of the tiny model's 64x64 frames; a larger
// session gets the same number of frames' worth (48 KiB per 64x64 of frame area).
constexpr rlim_t kFileLimitBytesAt64x64 = 48 * 1024;

rlim_t file_limit_for(const QString& resolution) {  // "HxW", as the resolution box shows it
  const QStringList hw = resolution.split('x');
  const qint64 area = hw.size() == 2 ? hw[0].toLongLong() * hw[1].toLongLong() : 0;
  return kFileLimitBytesAt64x64 * static_cast<rlim_t>(std::max<qint64>(1, area / (64 * 64)));
}

}  // namespace

void run_disk_full_autotest(MainWindow* w, const QString& out_dir, const QString& model_folder) {
  QDir().mkpath(out_dir);
  Checklist check;
  QJsonObject& report = check.report;
  report["model"] = use_scenario_model(w, model_folder);
  if (!w->tiny_box()->isChecked()) {  // the preset gpu_session measures
    const int balanced = w->preset_box()->findText("balanced");
    if (balanced >= 0) w->preset_box()->setCurrentIndex(balanced);
  }
  report["resolution"] = w->resolution_box()->currentText();
  report["commit"] = qEnvironmentVariable("LONGLIVE_COMMIT", "unknown");
  RecordingControls* rc = w->recording();
  const auto finished = watch_recordings(rc);
  w->activateWindow();
  report["window_active"] = QTest::qWaitForWindowActive(w, 2000);  // Ctrl+R needs it
  w->prompt_edit()->setFocus();
  QTest::keyClicks(w->prompt_edit(), "a lighthouse in a storm");
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("frames_painted", wait_until([&] { return w->view()->frames_painted() >= 8; }, 180000));

  EncoderSettings settings = rc->settings();
  settings.folder = out_dir + "/recordings";
  QDir().mkpath(settings.folder);
  rc->set_settings(settings);

  // The disk "fills": past kFileLimitBytes a write fails (SIGXFSZ ignored: EFBIG, not a kill).
  std::signal(SIGXFSZ, SIG_IGN);
  rlimit room{};
  getrlimit(RLIMIT_FSIZE, &room);
  const rlim_t limit = file_limit_for(w->resolution_box()->currentText());
  report["file_limit_bytes"] = static_cast<double>(limit);
  const rlimit full{limit, room.rlim_max};
  check("file_limit_set", setrlimit(RLIMIT_FSIZE, &full) == 0);
  press_key(w, Qt::Key_R, Qt::ControlModifier);
  check("disk_full_reported", wait_until([&] { return w->error_visible(); }, 120000));
  const QString banner = w->error_text();
  report["banner"] = banner;
  check("banner_names_the_recordings_folder", banner.contains(settings.folder));
  check("recording_stopped", wait_until([&] { return finished->done; }, 60000) &&
                                 !rc->recording() && !rc->record_button()->isChecked());
  setrlimit(RLIMIT_FSIZE, &room);  // room again (the report and the next recording need it)
  report["failed_recording"] = finished->path;
  report["failed_recording_error"] = finished->error;
  report["failed_recording_frames"] = static_cast<double>(finished->frames);
  check("failure_says_why", !finished->error.isEmpty());

  // What was written before the disk filled stays a playable file.
  try {
    const DecodedVideo kept = read_video(finished->path.toStdString(), false);
    report["kept_frames_decoded"] = static_cast<double>(kept.frames);
    check("kept_what_was_recorded", kept.frames > 0);
  } catch (const std::exception& e) {
    report["kept_read_error"] = e.what();
    check("kept_what_was_recorded", false);
  }

  const int64_t blocks = w->engine_stats().blocks;
  check("video_goes_on", wait_until([&] { return w->engine_stats().blocks >= blocks + 2; }, 90000));
  w->banner()->hide();

  // Room again: the same window records a whole file, no restart.
  *finished = {};
  press_key(w, Qt::Key_R, Qt::ControlModifier);
  check("records_again",
        wait_until([&] { return rc->recording() && !rc->live().opening(); }, 30000));
  const int64_t from = w->engine_stats().blocks;
  wait_until([&] { return w->engine_stats().blocks >= from + 2; }, 90000);
  click(rc->record_button());
  check("second_recording_finished", wait_until([&] { return finished->done; }, 60000));
  report["second_recording_error"] = finished->error;
  check("second_recording_without_error", finished->error.isEmpty());
  try {
    const DecodedVideo again = read_video(finished->path.toStdString(), false);
    report["second_recording_frames"] = static_cast<double>(again.frames);
    check("second_recording_every_frame", again.frames > 0 && again.frames == finished->frames);
  } catch (const std::exception& e) {
    report["second_read_error"] = e.what();
    check("second_recording_every_frame", false);
  }
  check("no_error_banner_after", !w->error_visible());

  click(w->stop_button());
  wait_until([&] { return w->engine_stats().state == "idle"; }, 30000);
  write_report(out_dir, report, check.ok);
  QApplication::exit(check.ok ? 0 : 1);
}

}  // namespace longlive::ui
