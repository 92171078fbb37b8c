#include "autotest.h"

#include <sys/resource.h>
#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QJsonArray>
#include <QJsonObject>
#include <QTest>
#include <QTime>
#include <QTimer>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <thread>

// After Qt's headers: its `slots` macro would break ATen's (ivalue's slots()).
#pragma push_macro("slots")
#undef slots
#include <ATen/ATen.h>
#pragma pop_macro("slots")

#include "driver.h"
#include "export_dialog.h"
#include "longlive/log.h"
#include "longlive/recorder.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"
#include "main_window.h"

namespace longlive::ui {

using namespace autotest;

namespace {

// Like wait_until, and returns the most CPU time the UI thread spent between two polls (20 ms
// apart): work that blocks the UI thread shows up here even on a loaded machine.
double max_ui_busy_ms_while_waiting(const std::function<bool()>& done, int timeout_ms) {
  auto cpu_ms = [] {
    rusage u{};
    getrusage(RUSAGE_THREAD, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
  };
  double worst = 0, last = cpu_ms();
  run_events_until(done, timeout_ms, [&] {
    const double now = cpu_ms();
    worst = std::max(worst, now - last);
    last = now;
  });
  return worst;
}

// Time a thread has spent runnable but waiting for a CPU, in ms (the second field of its
// schedstat, in ns); 0 where the kernel does not keep it.
double run_queue_wait_ms(const QString& schedstat = "/proc/thread-self/schedstat") {
  QFile file(schedstat);
  if (!file.open(QIODevice::ReadOnly)) return 0;
  const QList<QByteArray> fields = file.readAll().simplified().split(' ');
  return fields.size() >= 2 ? fields[1].toDouble() / 1e6 : 0;
}

// The most run-queue wait any of the software rasteriser's threads (Mesa's "llvmpipe-N", in our
// process) had since the last call: the UI thread waits for them when it paints, so their wait
// for a CPU is a stall of ours that our own schedstat does not show.
class RasteriserQueue {
 public:
  double max_new_wait_ms() {
    double most = 0;
    for (const QString& tid :
         QDir("/proc/self/task").entryList(QDir::Dirs | QDir::NoDotAndDotDot)) {
      QFile comm("/proc/self/task/" + tid + "/comm");
      if (!comm.open(QIODevice::ReadOnly) || !comm.readAll().startsWith("llvmpipe")) continue;
      const double now = run_queue_wait_ms("/proc/self/task/" + tid + "/schedstat");
      const auto [it, fresh] = last_.try_emplace(tid, now);
      if (!fresh) most = std::max(most, now - it->second);
      it->second = now;
    }
    return most;
  }

 private:
  std::map<QString, double> last_;
};

double image_variance(const QImage& image) {
  if (image.isNull()) return 0;
  double sum = 0, sum2 = 0;
  int n = 0;
  for (int y = 0; y < image.height(); y += 2)
    for (int x = 0; x < image.width(); x += 2) {
      const double v = qGray(image.pixel(x, y));
      sum += v;
      sum2 += v * v;
      ++n;
    }
  return n ? sum2 / n - (sum / n) * (sum / n) : 0;
}

// Mean absolute difference (0-255) between a frame and the view's picture of it, sampled at the
// centres of the frame's pixels in the letterboxed rectangle (where linear filtering gives back
// the texel). `flipped` compares against the frame upside down: a wrong orientation shows.
double shown_frame_error(const QImage& screen, const QImage& frame, bool flipped) {
  if (screen.isNull() || frame.isNull()) return 255;
  const QSize scaled = frame.size().scaled(screen.size(), Qt::KeepAspectRatio);
  const double x0 = (screen.width() - scaled.width()) / 2,
               y0 = (screen.height() - scaled.height()) / 2;
  const double sx = static_cast<double>(scaled.width()) / frame.width();
  const double sy = static_cast<double>(scaled.height()) / frame.height();
  double sum = 0;
  for (int y = 0; y < frame.height(); ++y)
    for (int x = 0; x < frame.width(); ++x) {
      const QRgb a = screen.pixel(static_cast<int>(x0 + (x + 0.5) * sx),
                                  static_cast<int>(y0 + (y + 0.5) * sy));
      const QRgb b = frame.pixel(x, flipped ? frame.height() - 1 - y : y);
      sum += (std::abs(qRed(a) - qRed(b)) + std::abs(qGreen(a) - qGreen(b)) +
              std::abs(qBlue(a) - qBlue(b))) /
             3.0;
    }
  return sum / (frame.width() * frame.height());
}

// Frames at exactly i/16 s, as the recorder promises.
bool exact_timestamps(const DecodedVideo& video) {
  for (size_t i = 0; i < video.timestamps_s.size(); ++i)
    if (std::abs(video.timestamps_s[i] - static_cast<double>(i) / 16.0) > 1e-6) return false;
  return !video.timestamps_s.empty();
}

// A rank-2 PEFT LoRA on the first block's self-attention q of the tiny random model (sizes from
// its configuration).
void write_tiny_style_lora(const std::filesystem::path& path) {
  const WanConfig config = WanConfig::tiny();
  auto gen = at::detail::createCPUGenerator(3);
  const std::string key = "base_model.model.blocks.0.self_attn.q.";
  save_safetensors(path, {{key + "lora_A.weight", at::randn({2, config.dim}, gen) * 0.1},
                          {key + "lora_B.weight", at::randn({config.dim, 2}, gen) * 0.1}});
}

}  // namespace

QString use_scenario_model(MainWindow* w, const QString& model_folder) {
  if (w->tiny_box()->isChecked()) return "tiny random";
  if (model_folder.isEmpty())
    w->use_random_full_model(true);
  else
    w->set_model_folder(model_folder);
  w->resolution_box()->setCurrentText("480x832");
  return model_folder.isEmpty() ? QString("1.3B random weights") : model_folder;
}

void run_autotest(MainWindow* w, const QString& out_dir) {
  QDir().mkpath(out_dir);
  // Event-loop stall meter: a 10 ms timer whose gaps reveal how long the UI thread was blocked.
  auto stall = std::make_shared<double>(0);
  auto phase = std::make_shared<QString>();        // what the script was doing
  auto stall_phase = std::make_shared<QString>();  // ... when the longest stall happened
  auto clock = std::make_shared<QElapsedTimer>();
  auto* meter = new QTimer(w);
  meter->setInterval(10);
  clock->start();
  // Per gap, the UI thread's CPU time and context switches tell our own work (CPU busy),
  // waiting on a lock (voluntary switches) and a starved machine (involuntary ones) apart.
  auto last_usage = std::make_shared<rusage>();
  getrusage(RUSAGE_THREAD, last_usage.get());
  auto stall_detail = std::make_shared<QJsonObject>();
  auto phase_stalls = std::make_shared<QJsonObject>();  // longest stall per phase
  auto max_busy = std::make_shared<double>(0);          // most UI-thread CPU time within one gap
  auto busy_phase = std::make_shared<QString>();
  auto long_gaps = std::make_shared<QJsonArray>();  // gaps over 25 ms
  // The same gaps less the time the UI thread sat runnable in the run queue: on a machine with
  // more runnable threads than cores (the engine, llvmpipe, other builds) that wait is the
  // scheduler's, not ours. What is left is our work plus our blocking waits (locks, the X server,
  // the GL driver), which is what the responsiveness check holds to 50 ms.
  auto unstarved = std::make_shared<double>(0);
  auto unstarved_phase = std::make_shared<QString>();
  auto last_queue_ms = std::make_shared<double>(run_queue_wait_ms());
  auto rasteriser = std::make_shared<RasteriserQueue>();
  rasteriser->max_new_wait_ms();
  QObject::connect(meter, &QTimer::timeout, [=] {
    const double gap = static_cast<double>(clock->restart()) - 10.0;
    const double queue_ms = run_queue_wait_ms();
    const double own_queue = std::max(0.0, queue_ms - *last_queue_ms);
    *last_queue_ms = queue_ms;
    const double gl_queue = rasteriser->max_new_wait_ms();
    // Never more than the gap (the first tick's deltas start before the meter does).
    const double queued = std::min(gap, own_queue + gl_queue);
    if (gap - queued > *unstarved) {
      *unstarved = gap - queued;
      *unstarved_phase = *phase;
    }
    rusage now{};
    getrusage(RUSAGE_THREAD, &now);
    auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
    const double busy =
        ms(now.ru_utime) + ms(now.ru_stime) - ms(last_usage->ru_utime) - ms(last_usage->ru_stime);
    if (busy > *max_busy) {
      *max_busy = busy;
      *busy_phase = *phase;
    }
    if (gap > *stall) {
      *stall = gap;
      *stall_phase = *phase;
      (*stall_detail)["ui_thread_cpu_ms"] = busy;
      (*stall_detail)["voluntary_switches"] =
          static_cast<double>(now.ru_nvcsw - last_usage->ru_nvcsw);
      (*stall_detail)["involuntary_switches"] =
          static_cast<double>(now.ru_nivcsw - last_usage->ru_nivcsw);
    }
    if (gap > (*phase_stalls)[*phase].toDouble()) (*phase_stalls)[*phase] = gap;
    // Every long gap with its wall-clock time, to line it up with the log.
    if (gap > 25 && long_gaps->size() < 64)
      long_gaps->append(QJsonObject{
          {"at", QTime::currentTime().toString("HH:mm:ss.zzz")},
          {"gap_ms", gap},
          {"phase", *phase},
          {"ui_thread_cpu_ms", busy},
          {"run_queue_wait_ms", own_queue},
          {"rasteriser_run_queue_wait_ms", gl_queue},
          {"voluntary_switches", static_cast<double>(now.ru_nvcsw - last_usage->ru_nvcsw)}});
    *last_usage = now;
  });

  Checklist check;
  QJsonObject& report = check.report;
  RecordingControls* rc = w->recording();
  const auto recorded = watch_recordings(rc);
  w->activateWindow();
  report["window_active"] = QTest::qWaitForWindowActive(w, 2000);  // Ctrl+R needs it

  // Bad input first: an empty prompt shows a message, nothing crashes.
  w->prompt_edit()->setFocus();
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("empty_prompt_rejected", w->error_visible() && w->error_text().contains("empty"));

  QTest::keyClicks(w->prompt_edit(), "a red fox running through snow");
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("frames_painted", wait_until([&] { return w->view()->frames_painted() >= 24; }, 90000));
  const QImage first = w->view()->grabFramebuffer();
  check("pixels_vary", image_variance(first) > 1.0);
  // The frame on screen is the frame, the right way up (texture upload + shaders).
  const double shown_error = shown_frame_error(first, w->view()->current().image, false);
  const double flipped_error = shown_frame_error(first, w->view()->current().image, true);
  report["shown_frame_error"] = shown_error;
  report["shown_frame_error_if_flipped"] = flipped_error;
  check("frame_shown_as_generated", shown_error < 4 && flipped_error > 2 * shown_error);
  // How frames reached the texture: on the CPU only the host upload exists; on a GPU it is
  // interop, or host after a logged fallback (e.g. a software GL under Xvfb).
  const QString upload = w->view()->upload_status();
  report["upload_path"] = upload;
  log::info("autotest: {} (engine on {})", upload.toStdString(), w->engine_stats().device);
  check("upload_path_reported", w->engine_stats().device == "cpu" ? upload == "upload: host"
                                                                  : upload.startsWith("upload: "));

  // Recording into a folder that cannot exist (a path below a file): a clear error naming it.
  EncoderSettings settings = rc->settings();
  const QString not_a_dir = out_dir + "/report.txt";
  QFile blocker(not_a_dir);
  blocker.open(QIODevice::WriteOnly);
  blocker.close();
  settings.folder = not_a_dir + "/videos";
  rc->set_settings(settings);
  QTest::keyClick(w, Qt::Key_R, Qt::ControlModifier);
  check("unwritable_record_path_reported",
        wait_until([&] { return w->error_visible(); }, 30000) && !rc->recording() &&
            !rc->record_button()->isChecked() && w->error_text().contains(settings.folder));
  report["unwritable_record_message"] = w->error_text();
  w->banner()->hide();

  // The overlay once before the measuring starts, as in its measured phase below (F1, a block
  // with it shown, the mouse over it): a software GL compiles the drawing states it meets first
  // (Mesa's llvmpipe, 50-90 ms of the UI thread once per machine while its shader cache is cold,
  // none once cached; a warm-up drawing the overlay in the view did not reach the same states).
  // That is the driver's one-time work, not ours: the measured F1 below holds ours to 50 ms.
  {
    const int64_t blocks_before = w->engine_stats().blocks;
    press_key(w, Qt::Key_F1);
    wait_until([&] { return w->engine_stats().blocks > blocks_before; }, 90000);
    QTest::mouseMove(w->view(), QPoint(120, 160));
    run_events_for(300);
    press_key(w, Qt::Key_F1);
  }

  // Measure responsiveness while recording, streaming, switching and changing preset (not
  // while the test itself grabs screenshots or reads files back).
  clock->restart();
  getrusage(RUSAGE_THREAD, last_usage.get());  // CPU time counts from here
  meter->start();
  *phase = "start recording";
  settings.folder = out_dir;
  rc->set_settings(settings);
  const std::string recorded_preset = w->preset_box()->currentText().toStdString();
  press_key(w, Qt::Key_R, Qt::ControlModifier);  // the Record shortcut
  check("recording_started",
        wait_until([&] { return rc->recording() && !rc->live().opening(); }, 30000) &&
            rc->record_button()->isChecked());
  // Video out while recording, switched on as OSC's /longlive/out/stream would: a file URL
  // stands in for a stream receiver (the same encoder and muxer as RTMP/SRT).
  *phase = "stream out";
  const QString stream_file = out_dir + "/stream-out.ts";
  ControlCommand stream_on;
  stream_on.kind = ControlCommand::Kind::stream_out;
  stream_on.on = true;
  stream_on.file = "file:" + stream_file.toStdString();
  w->apply_control(stream_on);
  check("stream_out_switched_on", w->video_out()->stream_action()->isChecked());
  *phase = "recording";
  wait_until([&] { return rc->live().frames_pushed() >= 12; }, 90000);
  *phase = "prompt switch";

  w->prompt_edit()->clear();
  QTest::keyClicks(w->prompt_edit(), "a blue whale in the deep ocean");
  press_key(w->prompt_edit(), Qt::Key_Return);
  check("switch_reached_engine",
        wait_until([&] { return w->view()->current().prompt == "a blue whale in the deep ocean"; },
                   90000));
  check("switch_latency_reported", w->view()->switch_latency_ms() > 0);
  report["switch_latency_ms"] = w->view()->switch_latency_ms();

  // Stop recording (Record button) a block after the switch; the file is finalised off the UI
  // thread and read back with the recorder's reader.
  *phase = "recording after the switch";
  const int64_t pushed_at_switch = rc->live().frames_pushed();
  wait_until([&] { return rc->live().frames_pushed() >= pushed_at_switch + 12; }, 90000);

  // The overlay (F1), still recording: ImGui draws the region table of the last block (with the
  // re-cache of the switch) and the latency plot with the switch marked; input reaches it.
  *phase = "overlay";
  const int64_t blocks_at_overlay = w->engine_stats().blocks;
  press_key(w, Qt::Key_F1);
  check("overlay_visible", w->view()->overlay_visible());
  wait_until([&] { return w->engine_stats().blocks > blocks_at_overlay; }, 90000);
  QTest::mouseMove(w->view(), QPoint(120, 160));
  run_events_for(300);
  const OverlayReport overlay = w->view()->overlay_report();
  report["overlay_vertices"] = w->view()->overlay_vertices();
  report["overlay_regions"] = overlay.regions;
  report["overlay_plotted_blocks"] = overlay.plotted_blocks;
  report["overlay_switch_latency_ms"] = overlay.switch_latency_ms;
  report["overlay_switch_markers"] = overlay.switch_markers;
  check("overlay_drawn",
        w->view()->overlay_vertices() > 100 && overlay.regions >= 3 && overlay.plotted_blocks > 1);
  check("overlay_marks_the_switch", overlay.switch_markers >= 1);
  check("overlay_reports_switch_latency", overlay.switch_latency_ms > 0);
  meter->stop();  // the screenshot is the test's own work
  const QImage shot = w->grab().toImage();
  shot.save(out_dir + "/screenshot.png");
  check("screenshot_written", QFile::exists(out_dir + "/screenshot.png"));
  clock->restart();
  getrusage(RUSAGE_THREAD, last_usage.get());
  meter->start();
  press_key(w, Qt::Key_F1);
  check("overlay_hidden", !w->view()->overlay_visible());

  *phase = "stream out off";
  const auto stream_status = [&] {
    return w->video_out()->outputs().status(LiveOutputs::Kind::stream);
  };
  check("stream_out_sending", stream_status().open && stream_status().stats.frames_pushed > 0);
  w->video_out()->stream_action()->trigger();  // the Output menu's switch, now off
  // Closing (the encoder's flush) runs on the outputs' helper: the last stats appear when done.
  check("stream_out_closed",
        wait_until([&] { return stream_status().stats.frames_sent > 0; }, 30000));
  meter->stop();  // reading the file back is the test's own work
  {
    const LiveOutputs::Status s = stream_status();
    report["stream_out_frames_sent"] = static_cast<double>(s.stats.frames_sent);
    report["stream_out_frames_dropped"] = static_cast<double>(s.stats.frames_dropped);
    try {
      const DecodedVideo video = read_video(stream_file.toStdString(), false);
      report["stream_out_frames_decoded"] = static_cast<double>(video.frames);
      check("stream_out_every_sent_frame", !s.enabled && !s.error && s.stats.frames_sent > 0 &&
                                               video.frames == s.stats.frames_sent);
    } catch (const std::exception& e) {
      report["stream_out_read_error"] = e.what();
      check("stream_out_every_sent_frame", false);
    }
  }
  clock->restart();
  getrusage(RUSAGE_THREAD, last_usage.get());
  meter->start();

  *phase = "stop recording";
  click(rc->record_button());
  check("recording_stopped", !rc->recording());
  *phase = "finishing the recording";
  check("recording_finished", wait_until([&] { return recorded->done; }, 60000));
  const int64_t pushed = rc->live().frames_pushed();
  check("recording_no_error", recorded->error.isEmpty());
  report["recording_error"] = recorded->error;

  *phase = "preset change";
  const int turbo = w->preset_box()->findText("turbo");
  if (turbo >= 0) w->preset_box()->setCurrentIndex(turbo);
  // Blocks in the latency history from the preset change's marked block on (0: none marked).
  // Whether the change restarts the video or continues it, the blocks before it stay.
  auto blocks_since_preset_change = [](const LatencyHistory& h) {
    const auto& b = h.blocks();
    for (size_t i = b.size(); i-- > 0;)
      if (!b[i].preset_change.empty()) return static_cast<int64_t>(b.size() - i);
    return int64_t{0};
  };
  // The new preset's session streams: two blocks generated under it.
  check("frames_after_preset_change", wait_until(
                                          [&] {
                                            const EngineStats s = w->engine_stats();
                                            return s.preset == "turbo" && s.state == "running" &&
                                                   blocks_since_preset_change(s.history) >= 2;
                                          },
                                          90000));
  // The latency history survives the preset change: the blocks before it (with the prompt
  // switch) are still there and plotted, and the change is marked with the new preset's name.
  {
    const EngineStats s = w->engine_stats();
    const int64_t under_new_preset = blocks_since_preset_change(s.history);
    report["history_blocks_after_preset_change"] = static_cast<int>(s.history.size());
    report["history_blocks_under_the_new_preset"] = static_cast<double>(under_new_preset);
    report["history_preset_changes"] = s.history.preset_changes();
    check("latency_history_survives_preset_change",
          turbo < 0 ||
              (s.history.preset_changes() == 1 && s.history.prompt_switches() >= 1 &&
               static_cast<int64_t>(s.history.size()) > under_new_preset && s.last_switch_ms > 0));
    press_key(w, Qt::Key_F1);
    run_events_for(300);  // a few frames painted with the overlay
    const OverlayReport o = w->view()->overlay_report();
    report["overlay_preset_markers"] = o.preset_markers;
    report["overlay_plotted_blocks_after_preset_change"] = o.plotted_blocks;
    check("overlay_marks_the_preset_change",
          turbo < 0 || (o.preset_markers == 1 && o.switch_markers >= 1 &&
                        o.plotted_blocks > static_cast<int>(under_new_preset)));
    press_key(w, Qt::Key_F1);
  }
  *phase = "performing";
  // Performing (still measured): Enter starts a 3-block transition from the prompt box, Ctrl+Enter
  // cuts, the blend rows mix two prompts, a prompt set round-trips through a file.
  auto shown = [&](const QString& prompt) {
    return wait_until([&] { return w->view()->current().prompt == prompt; }, 90000);
  };
  w->transition_controls()->enter_box()->setCurrentIndex(0);
  w->transition_controls()->unit_box()->setCurrentIndex(0);
  w->transition_controls()->length_box()->setValue(3);
  w->prompt_edit()->clear();
  QTest::keyClicks(w->prompt_edit(), "a green forest at dawn");
  press_key(w->prompt_edit(), Qt::Key_Return);
  check("transition_reached_engine",
        shown("a green forest at dawn") &&
            wait_until([&] { return w->engine_stats().history.transition_blocks() > 0; }, 90000));
  w->prompt_edit()->clear();
  QTest::keyClicks(w->prompt_edit(), "a snowy mountain");
  press_key(w->prompt_edit(), Qt::Key_Return, Qt::ControlModifier);
  check("cut_reached_engine", shown("a snowy mountain"));
  w->blend_list()->row_text(0)->setText("a red fox");
  w->blend_list()->row_weight(0)->setValue(25);
  w->blend_list()->row_text(1)->setText("a blue whale");
  w->blend_list()->row_weight(1)->setValue(75);
  click(w->blend_list()->blend_button());
  check("blend_reached_engine", shown("0.25 a red fox + 0.75 a blue whale"));
  check("prompt_set_round_trip", w->save_prompt_set_to(out_dir + "/prompt_set.json") &&
                                     w->load_prompt_set_from(out_dir + "/prompt_set.json") &&
                                     w->blend_list()->recent().contains("a blue whale"));
  // A style LoRA loaded as OSC's /longlive/lora/load would, its fader raised to 0.80, then the
  // LoRA panel's Bake button: the fader drops to 0 and says what was baked.
  const QString lora_file = out_dir + "/glow.safetensors";
  write_tiny_style_lora(lora_file.toStdString());
  ControlCommand load_lora;
  load_lora.kind = ControlCommand::Kind::lora_load;
  load_lora.file = lora_file.toStdString();
  load_lora.name = "glow";
  w->apply_control(load_lora);
  LoraFaders* faders = w->lora_faders();
  const bool fader_shown = wait_until([&] { return faders->slider("glow") != nullptr; }, 90000);
  if (fader_shown) faders->slider("glow")->setValue(LoraFaders::kSteps * 8 / 15);  // 0.80
  const bool fader_up = fader_shown && wait_until(
                                           [&] {
                                             const EngineStats s = w->engine_stats();
                                             return !s.loras.empty() && s.loras[0].strength > 0;
                                           },
                                           90000);
  if (fader_up) click(faders->bake_button());
  check("bake_button_bakes_the_fader",
        fader_up && wait_until(
                        [&] {
                          return faders->value_label("glow")->text() ==
                                     QString("0.00 · baked at 0.80") &&
                                 faders->slider("glow")->value() == 0;
                        },
                        90000));
  // The fader up again (the side path back on top of the bake), then "Unload LoRAs": the row
  // goes from the panel and the engine holds no LoRA (the bake stays in the weights).
  const bool baked = fader_up && faders->slider("glow") && faders->slider("glow")->value() == 0;
  if (baked) faders->slider("glow")->setValue(LoraFaders::kSteps * 4 / 15);  // 0.40
  const bool up_again = baked && wait_until(
                                     [&] {
                                       const EngineStats s = w->engine_stats();
                                       return !s.loras.empty() && s.loras[0].strength > 0;
                                     },
                                     90000);
  if (up_again) click(faders->unload_button());
  check(
      "unload_button_unloads_the_loras",
      up_again &&
          wait_until(
              [&] { return faders->slider("glow") == nullptr && w->engine_stats().loras.empty(); },
              90000));
  meter->stop();
  report["max_event_loop_stall_ms"] = *stall;
  report["max_event_loop_stall_phase"] = *stall_phase;
  report["max_event_loop_stall_detail"] = *stall_detail;
  report["max_event_loop_stall_by_phase"] = *phase_stalls;
  report["event_loop_gaps_over_25ms"] = *long_gaps;
  // Our own work on the UI thread (CPU time between two ticks) must stay short on any machine.
  report["max_ui_thread_busy_ms"] = *max_busy;
  report["max_ui_thread_busy_phase"] = *busy_phase;
  check("ui_busy_under_50ms", *max_busy < 50.0);
  // The wall clock also counts the time the UI thread waits for a CPU, the X server and the GL
  // rasteriser (llvmpipe under Xvfb shares the cores with the CPU engine): held to 50 ms too.
  // What keeps it there on two cores: the engine's worker at nice 19 (EngineOptions::yield_cpu),
  // the live recorder on one encoder thread at nice 5, the overlay's GL warmed when the view
  // starts. The load average is reported to read a failure by.
  double load[1] = {0};
  getloadavg(load, 1);
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  report["load_average_per_core"] = load[0] / cores;
  report["software_gl"] = qEnvironmentVariable("LIBGL_ALWAYS_SOFTWARE") == "1";
  // Held on the gaps less the UI thread's and the rasteriser's run-queue wait (see the meter):
  // the wall-clock stall above failed under other processes' load. Our own work and our waits on
  // locks still count. Without scheduler statistics (no schedstat) nothing is subtracted.
  report["max_event_loop_stall_less_run_queue_ms"] = *unstarved;
  report["max_event_loop_stall_less_run_queue_phase"] = *unstarved_phase;
  report["scheduler_statistics"] = run_queue_wait_ms() > 0;
  check("ui_responsive_under_50ms", *unstarved < 50.0);

  try {
    const DecodedVideo video = read_video(recorded->path.toStdString(), false);
    report["recorded_file"] = recorded->path;
    report["recorded_frames_pushed"] = static_cast<double>(pushed);
    report["recorded_frames_decoded"] = static_cast<double>(video.frames);
    check("recording_every_frame",
          video.frames == pushed && pushed >= 24 && recorded->frames == pushed);
    check("recording_exact_timestamps", exact_timestamps(video));
    check(
        "recording_prompt_chapters",
        video.chapters.size() == 2 && video.chapters[1].title == "a blue whale in the deep ocean");
    const std::string comment = video.metadata.count("comment") ? video.metadata.at("comment") : "";
    report["recording_comment"] = QString::fromStdString(comment);
    check("recording_metadata", comment.find("seed") != std::string::npos &&
                                    comment.find("preset " + recorded_preset) != std::string::npos);
  } catch (const std::exception& e) {
    report["recording_read_error"] = e.what();
    check("recording_every_frame", false);
  }

  QTest::mouseClick(w->stop_button(), Qt::LeftButton);
  check("stopped", wait_until([&] { return w->engine_stats().state == "idle"; }, 30000));
  check("no_error_banner", !w->error_visible());
  report["frames_painted_total"] = static_cast<double>(w->view()->frames_painted());
  if (w->error_visible()) report["error_banner"] = w->error_text();

  // The session's timeline is written on stop and must load with the strict schema reader.
  check("timeline_written", wait_until([&] { return !w->last_timeline_path().isEmpty(); }, 30000));
  bool timeline_ok = false;
  try {
    const Timeline t = load_timeline(w->last_timeline_path().toStdString());
    QFile::remove(out_dir + "/timeline.json");  // an earlier run's: QFile::copy keeps it
    QFile::copy(w->last_timeline_path(), out_dir + "/timeline.json");
    auto has = [&](EventKind kind, const std::function<bool(const TimelineEvent&)>& also) {
      return std::any_of(t.events.begin(), t.events.end(),
                         [&](const TimelineEvent& e) { return e.kind == kind && also(e); });
    };
    timeline_ok =
        t.events.front().kind == EventKind::start && t.events.back().kind == EventKind::stop &&
        has(EventKind::transition,
            [](const TimelineEvent& e) {
              return e.transition.blocks == 3 && e.mix.prompts[0].text == "a green forest at dawn";
            }) &&
        has(EventKind::cut,
            [](const TimelineEvent& e) { return e.mix.prompts[0].text == "a snowy mountain"; }) &&
        has(EventKind::transition,
            [](const TimelineEvent& e) { return e.mix.prompts.size() == 2; }) &&
        (turbo < 0 ||
         has(EventKind::preset, [](const TimelineEvent& e) { return e.preset == "turbo"; })) &&
        // The LoRA panel's fader, Bake and Unload, in that order.
        has(EventKind::lora, [](const TimelineEvent& e) { return e.lora == "glow"; }) &&
        std::find_if(
            std::find_if(t.events.begin(), t.events.end(),
                         [](const TimelineEvent& e) { return e.kind == EventKind::lora_bake; }),
            t.events.end(), [](const TimelineEvent& e) {
              return e.kind == EventKind::lora_unload;
            }) != t.events.end();
    report["timeline_events"] = static_cast<int>(t.events.size());
  } catch (const std::exception& e) {
    report["timeline_error"] = e.what();
  }
  check("timeline_valid", timeline_ok);

  // Export dialog: the session's frames to an MP4, every frame, prompts as chapters.
  run_events_for(300);  // let the last frames of the stopped block arrive
  const int64_t session_frames = rc->session().size();
  rc->open_export_dialog();
  ExportDialog* dialog = rc->export_dialog();
  auto exported = std::make_shared<Finished>();
  QObject::connect(dialog, &ExportDialog::export_finished,
                   [exported](const QString& path, qint64 frames, const QString& error, bool) {
                     *exported = {true, path, error, frames};
                   });
  dialog->path_edit()->setText(out_dir + "/export.mp4");
  dialog->quality_box()->setValue(20);
  QTest::mouseClick(dialog->export_button(), Qt::LeftButton);
  check("export_finished", wait_until([&] { return exported->done; }, 120000));
  report["export_error"] = exported->error;
  try {
    const DecodedVideo video = read_video((out_dir + "/export.mp4").toStdString(), false);
    report["export_frames_in_session"] = static_cast<double>(session_frames);
    report["export_frames_decoded"] = static_cast<double>(video.frames);
    check("export_every_frame", exported->error.isEmpty() && video.frames == session_frames &&
                                    session_frames > 0 && exact_timestamps(video));
  } catch (const std::exception& e) {
    report["export_read_error"] = e.what();
    check("export_every_frame", false);
  }

  // The same video re-decoded by the Wan VAE (with the tiny model: the tiny random VAE, as
  // `longlive export --random-vae`), on the dialog's worker: the UI thread stays free meanwhile
  // and the file holds what the VAE makes of the latents, 1 + 4 (T - 1) frames.
  rc->open_export_dialog();  // refreshes what is offered
  const SessionLatents latents = rc->session_latents();
  report["wan_latent_frames"] = static_cast<double>(latents.latent_frames());
  check("wan_vae_offered", dialog->wan_vae_offered() && !latents.empty());
  dialog->decoder_box()->setCurrentIndex(ExportDialog::kWanVae);
  dialog->path_edit()->setText(out_dir + "/export-wan.mp4");
  *exported = {};
  QTest::mouseClick(dialog->export_button(), Qt::LeftButton);
  const double wan_busy = max_ui_busy_ms_while_waiting([&] { return exported->done; }, 300000);
  report["wan_export_error"] = exported->error;
  report["wan_export_max_ui_thread_busy_ms"] = wan_busy;
  check("wan_export_finished", exported->done && exported->error.isEmpty());
  check("wan_export_ui_busy_under_50ms", wan_busy < 50.0);
  try {
    const DecodedVideo video = read_video((out_dir + "/export-wan.mp4").toStdString(), false);
    report["wan_export_frames_decoded"] = static_cast<double>(video.frames);
    check("wan_export_every_frame", video.frames == latents.video_frames() && video.frames > 0 &&
                                        exact_timestamps(video) && !video.chapters.empty() &&
                                        exported->frames == video.frames);
  } catch (const std::exception& e) {
    report["wan_export_read_error"] = e.what();
    check("wan_export_every_frame", false);
  }
  dialog->close();

  // Out of GPU memory (the engine's message, injected: a CPU cannot run out on purpose): the
  // banner offers low_memory, its button switches the preset and restarts the prompt.
  w->show_engine_error(
      "out of GPU memory: try the low_memory preset or a smaller resolution (autotest: simulated)");
  QPushButton* action = w->banner()->action_button();
  check("oom_offers_low_memory",
        w->error_visible() && action->isVisible() && action->text().contains("low_memory"));
  const int64_t painted_before_low = w->view()->frames_painted();
  QTest::mouseClick(action, Qt::LeftButton);
  check("oom_switched_to_low_memory", w->preset_box()->currentText() == "low_memory");
  check("low_memory_streams",
        wait_until([&] { return w->view()->frames_painted() > painted_before_low + 12; }, 90000) &&
            w->engine_stats().preset == "low_memory");
  // A resolution change mid-stream retires the engine on a helper thread: the window does not
  // wait for the block in flight (on a GPU up to a block's time).
  QComboBox* resolution = w->resolution_box();
  const int resolution_before = resolution->currentIndex();
  QElapsedTimer retire_clock;
  retire_clock.start();
  resolution->setCurrentIndex((resolution_before + 1) % resolution->count());
  const qint64 retire_ms = retire_clock.elapsed();
  report["resolution_change_ui_ms"] = static_cast<double>(retire_ms);
  check("resolution_change_does_not_wait_for_the_engine", retire_ms < 50);
  resolution->setCurrentIndex(resolution_before);

  // A model folder without the files: the setup panel names them and offers the tiny model.
  const QString empty_models = out_dir + "/empty-models";
  QDir().mkpath(empty_models);
  w->set_model_folder(empty_models);
  w->tiny_box()->setChecked(false);
  w->prompt_edit()->setPlainText("a red fox");
  QTest::keyClick(w->prompt_edit(), Qt::Key_Return);
  check("missing_models_listed",
        w->model_panel()->isVisible() &&
            w->model_panel()->missing_text().contains("models_t5_umt5-xxl-enc-bf16.pth") &&
            w->model_panel()->missing_text().contains("taew2_1.pth") &&
            !w->tiny_box()->isChecked());
  QTest::mouseClick(w->model_panel()->tiny_button(), Qt::LeftButton);
  check("tiny_model_offered", w->tiny_box()->isChecked() && !w->model_panel()->isVisible());

  write_report(out_dir, report, check.ok);
  QApplication::exit(check.ok ? 0 : 1);
}

}  // namespace longlive::ui
