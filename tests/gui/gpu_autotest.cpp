// The studio measured as a person uses it (issue #16, item 5): Start, ten typed prompt switches
// with Enter, the overlay with its Kernels tab, a recording, two preset changes and an export,
// through the real window. On a GPU with the 1.3B model's random weights (480x832) it writes the
// numbers of bench/results/<date>-<gpu>-studio.json; with --tiny the same script runs on the CPU.
#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <vector>

#include "autotest.h"
#include "driver.h"
#include "export_dialog.h"
#include "longlive/log.h"
#include "longlive/recorder.h"
#include "main_window.h"

namespace longlive::ui {

using namespace autotest;

namespace {

// Nearest-rank percentile of `values` (0 when empty).
double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

// When each frame reached the screen, on the UI thread's clock. Only frames shown while
// `measuring` count: starts, preset changes and the test's own screenshots are left out.
struct FrameClock {
  QElapsedTimer clock;
  bool measuring = false;
  std::vector<double> intervals_ms;
  double last_ms = -1;
  int64_t frames = 0;
  double measured_ms = 0;  // time spent measuring, for the displayed rate

  int64_t last_index = -1;

  void shown(int64_t index) {
    if (index == last_index) return;  // a repaint of the same frame
    last_index = index;
    const double now = static_cast<double>(clock.nsecsElapsed()) / 1e6;
    if (measuring && last_ms >= 0) {
      intervals_ms.push_back(now - last_ms);
      measured_ms += now - last_ms;
      ++frames;
    }
    last_ms = now;
  }
  void set_measuring(bool on) {
    measuring = on;
    last_ms = -1;  // the first frame after a pause opens a new interval
  }
  double fps() const {
    return measured_ms > 0 ? 1000.0 * static_cast<double>(frames) / measured_ms : 0;
  }
};

const char* const kPrompts[] = {
    "a red fox running through fresh snow",     "a blue whale gliding in the deep ocean",
    "a paper boat drifting down a rain gutter", "neon signs reflected in a wet street at night",
    "a hot air balloon over green hills",       "waves breaking on black volcanic sand",
    "a cat asleep on a sunny windowsill",       "fireworks over a harbour, slow motion",
    "autumn leaves falling in a quiet park",    "a train crossing a snowy mountain bridge"};

}  // namespace

// The view's pacing events of one phase as JSON rows [ms, kind, frame, value, skip] (see
// PacingTrace), for replaying the run's timing through FramePacer on the CPU.
void write_pacing_trace(const PacingTrace& trace, const QString& path) {
  QJsonArray rows;
  for (const PacingTrace::Event& e : trace.events)
    rows.append(QJsonArray{std::round(e.ms * 1000) / 1000,
                           QString(QChar(static_cast<char>(e.kind))), static_cast<double>(e.index),
                           std::round(e.value * 1000) / 1000, e.skip});
  QFile file(path);
  if (file.open(QIODevice::WriteOnly))
    file.write(QJsonDocument(QJsonObject{{"events", rows}}).toJson(QJsonDocument::Compact));
}

void run_gpu_session_autotest(MainWindow* w, const QString& out_dir,
                              const GpuSessionOptions& options) {
  QDir().mkpath(out_dir);
  QJsonObject report, result;
  bool ok = true;
  auto check = [&](const QString& name, bool passed) {
    report[name] = passed;
    ok = ok && passed;
  };
  const bool gpu_model = !w->tiny_box()->isChecked();
  use_scenario_model(w, options.model_folder);
  const int balanced = w->preset_box()->findText("balanced");
  if (balanced >= 0) w->preset_box()->setCurrentIndex(balanced);

  // Connections to the window outlive this function's frames: they hold shared state and are
  // dropped before it returns.
  auto clock = std::make_shared<FrameClock>();
  FrameClock& frames = *clock;
  frames.clock.start();
  std::vector<QMetaObject::Connection> connections;
  connections.push_back(QObject::connect(w->view(), &VideoView::frame_shown, w,
                                         [clock](int64_t index) { clock->shown(index); }));
  // Sampled every 20 ms while the script waits: the largest device->host bytes per frame seen
  // while not recording, the graph replays, the time spent loading.
  double d2h_idle = 0, d2h_recording = 0;
  double deliver_ms_max = 0;
  int64_t graph_replays = 0;
  QElapsedTimer loading;
  double loading_ms = 0;
  // The block in flight when Record is pressed or released keeps the copies it was submitted
  // with: the two blocks after a change of the recording state are not counted either way.
  bool was_recording = false;
  int64_t recording_changed_block = 0;
  auto sample = [&] {
    const EngineStats s = w->engine_stats();
    const bool recording = w->recording()->recording();
    if (recording != was_recording) {
      was_recording = recording;
      recording_changed_block = s.blocks;
    }
    if (s.state == "running" && s.blocks > 1 && s.blocks > recording_changed_block + 2)
      (recording ? d2h_recording : d2h_idle) =
          std::max(recording ? d2h_recording : d2h_idle, s.d2h_bytes_per_frame);
    graph_replays = std::max(graph_replays, s.graph_replays);
    if (s.state == "running") deliver_ms_max = std::max(deliver_ms_max, s.deliver_ms);
    if (s.state == "loading" && !loading.isValid()) loading.start();
    if (s.state != "loading" && loading.isValid() && loading_ms == 0)
      loading_ms = static_cast<double>(loading.elapsed());
  };
  auto wait = [&](const std::function<bool()>& done, int timeout_ms) {
    return run_events_until(done, timeout_ms, sample);
  };
  // Frames in a written video, counted on another thread while the window keeps running: read on
  // this (the UI) thread, the view fell behind and dropped hundreds of frames (H100, bab6036).
  auto frames_in_video = [&](const QString& path) {
    auto counted = std::async(
        std::launch::async, [file = path.toStdString()] { return read_video(file, false).frames; });
    wait([&] { return counted.wait_for(std::chrono::seconds(0)) == std::future_status::ready; },
         300000);
    return counted.get();  // rethrows the reader's error
  };
  auto shown_prompt = [&](const QString& p) {
    return wait([&] { return w->view()->current().prompt == p; }, 60000);
  };
  w->activateWindow();
  report["window_active"] = QTest::qWaitForWindowActive(w, 2000);

  // What the run measured so far, written after each phase: a run cut short by its time limit
  // still leaves its numbers (studio.json) and checks (report.json).
  EngineStats::ThreadTime phase_start = w->engine_stats().thread_time;
  QElapsedTimer phase_clock;
  phase_clock.start();
  QJsonObject phases;
  auto save = [&](const char* phase) {
    const EngineStats stats = w->engine_stats();
    result["phase_done"] = phase;
    {
      // The engine thread's time per block in this phase: where a slower phase loses its time.
      const EngineStats::ThreadTime& t = stats.thread_time;
      const double blocks = static_cast<double>(t.blocks - phase_start.blocks);
      auto per_block = [&](double now, double before) {
        return blocks > 0 ? (now - before) / blocks : 0.0;
      };
      phases[phase] =
          QJsonObject{{"seconds", static_cast<double>(phase_clock.elapsed()) / 1000.0},
                      {"blocks", blocks},
                      {"block_ms", per_block(t.block_ms, phase_start.block_ms)},
                      {"deliver_ms", per_block(t.deliver_ms, phase_start.deliver_ms)},
                      {"decode_wait_ms", per_block(t.decode_wait_ms, phase_start.decode_wait_ms)},
                      {"dit_wait_ms", per_block(t.dit_wait_ms, phase_start.dit_wait_ms)}};
      result["phases"] = phases;
      phase_start = t;
      phase_clock.restart();
    }
    result["gpu"] = QString::fromStdString(stats.capability);
    result["device"] = QString::fromStdString(stats.device);
    result["commit"] = qEnvironmentVariable("LONGLIVE_COMMIT", "unknown");
    result["model"] = !gpu_model ? QString("tiny random")
                      : options.model_folder.isEmpty()
                          ? QString("random full-size 1.3B (text-seeded prompt embeddings)")
                          : "model folder " + options.model_folder;
    result["resolution"] = w->resolution_box()->currentText();
    result["preset"] = "balanced";
    result["displayed_fps"] = frames.fps();
    result["generated_fps"] = stats.fps;
    result["frame_interval_ms"] = QJsonObject{{"p50", percentile(frames.intervals_ms, 50)},
                                              {"p95", percentile(frames.intervals_ms, 95)},
                                              {"p99", percentile(frames.intervals_ms, 99)},
                                              {"frames", static_cast<double>(frames.frames)}};
    result["d2h_bytes_per_frame"] = d2h_idle;
    result["d2h_bytes_per_frame_recording"] = d2h_recording;
    result["cuda_graphs"] = stats.cuda_graphs;
    result["cuda_graph_replays"] = static_cast<double>(graph_replays);
    result["upload_path"] = w->view()->upload_status();
    result["display_dropped_frames"] = static_cast<double>(w->view()->frames_dropped());
    result["pace_interval_ms"] = w->view()->pace_interval_ms();
    result["deliver_ms_max"] = deliver_ms_max;
    {
      const std::vector<double> paint = w->view()->paint_ms();
      result["paint_ms"] = QJsonObject{{"p50", percentile(paint, 50)},
                                       {"p95", percentile(paint, 95)},
                                       {"max", percentile(paint, 100)}};
    }
    {
      // The engine's block times (the last 200 blocks, preset changes and switches included).
      std::vector<double> block_ms;
      for (const BlockSample& b : stats.history.blocks()) block_ms.push_back(b.ms);
      result["block_ms"] = QJsonObject{{"p50", percentile(block_ms, 50)},
                                       {"p95", percentile(block_ms, 95)},
                                       {"blocks", static_cast<double>(block_ms.size())}};
    }
    QJsonArray fallbacks;
    for (const auto& f : stats.fallbacks) fallbacks.append(QString::fromStdString(f));
    result["fallbacks"] = fallbacks;

    QFile file(out_dir + "/studio.json");
    file.open(QIODevice::WriteOnly);
    file.write(QJsonDocument(result).toJson());
    report["result"] = result;
    write_report(out_dir, report, ok);
    log::info("gpu_session after {}: {}", phase,
              QJsonDocument(result).toJson(QJsonDocument::Compact).toStdString());
  };

  // Start, cold: the model loads, then the first frame.
  w->prompt_edit()->setFocus();
  type_text(w->prompt_edit(), kPrompts[0], 15);
  QElapsedTimer start_clock;
  start_clock.start();
  press_key(w->prompt_edit(), Qt::Key_Return);
  check("first_frame", wait([&] { return w->view()->frames_painted() > 0; }, 300000));
  const double cold_ms = static_cast<double>(start_clock.elapsed());
  result["cold_start_to_first_frame_ms"] = cold_ms;
  result["model_load_s"] = loading_ms / 1000.0;

  // Start again with the model loaded: Stop, then Enter on the prompt.
  wait([&] { return w->engine_stats().blocks >= 3; }, 60000);
  click(w->stop_button());
  check("stopped", wait([&] { return w->engine_stats().state == "idle"; }, 60000));
  run_events_for(500);
  const int64_t painted_before = w->view()->frames_painted();
  w->prompt_edit()->setFocus();
  start_clock.restart();
  press_key(w->prompt_edit(), Qt::Key_Return);
  check("restarted", wait([&] { return w->view()->frames_painted() > painted_before; }, 120000));
  result["start_to_first_frame_ms"] = static_cast<double>(start_clock.elapsed());
  wait([&] { return w->engine_stats().blocks >= 4; }, 60000);  // past the first blocks' warm-up
  save("start");

  // Not recording: the window asks for no host copies where the view takes frames from the GPU.
  const bool interop = w->view()->wants_device_frames();
  check("host_frames_off_unless_needed", w->host_frames_requested() == !interop);
  result["interop_wanted"] = interop;
  const int64_t copied_before_switches = w->engine_stats().host_copied_frames;
  const int64_t dropped_before_switches = w->view()->frames_dropped();

  // Ten typed prompt switches with Enter, a few seconds of watching after each; the view's
  // pacing events of the phase go to pacing.json.
  frames.set_measuring(true);
  w->view()->pacing_trace() = PacingTrace{.on = true, .events = {}};
  std::vector<double> enter_ms, engine_switch_ms;
  int switches = 0;
  for (const char* text : kPrompts) {
    const QString prompt = text == kPrompts[0] ? QString(text) + ", seen from above" : text;
    w->prompt_edit()->clear();
    type_text(w->prompt_edit(), prompt, 15);
    QElapsedTimer enter;
    enter.start();
    QTest::keyPress(w->prompt_edit(), Qt::Key_Return);  // Enter acts on the press
    const bool reached = shown_prompt(prompt);
    const double ms = static_cast<double>(enter.elapsed());
    QTest::keyRelease(w->prompt_edit(), Qt::Key_Return);
    if (reached) {
      enter_ms.push_back(ms);
      ++switches;
    }
    run_events_until([] { return false; }, options.watch_ms, sample);
    // The engine's part (its stats follow the frames): the command to the frame ready (decoded).
    if (reached) engine_switch_ms.push_back(w->engine_stats().last_switch_ms);
  }
  check("ten_switches_shown", switches == 10);
  w->view()->pacing_trace().on = false;
  write_pacing_trace(w->view()->pacing_trace(), out_dir + "/pacing.json");
  // Where the paints' time went during the switches: the frame uploads inside them, and the
  // window's swap after them.
  for (const auto& [kind, name] : {std::pair{PacingTrace::Kind::upload, "upload_ms"},
                                   std::pair{PacingTrace::Kind::interop_map, "interop_map_ms"},
                                   std::pair{PacingTrace::Kind::interop_unmap, "interop_unmap_ms"},
                                   std::pair{PacingTrace::Kind::swapped, "paint_to_swap_ms"}}) {
    std::vector<double> values;
    for (const PacingTrace::Event& e : w->view()->pacing_trace().events)
      if (e.kind == kind) values.push_back(e.value);
    result[name] = QJsonObject{{"count", static_cast<double>(values.size())},
                               {"p50", percentile(values, 50)},
                               {"p95", percentile(values, 95)},
                               {"max", percentile(values, 100)}};
  }
  QJsonArray enter_list;
  for (double ms : enter_ms) enter_list.append(ms);
  result["enter_to_frame_ms"] = QJsonObject{
      {"p50", percentile(enter_ms, 50)}, {"p95", percentile(enter_ms, 95)}, {"all", enter_list}};
  QJsonArray engine_switch_list;
  for (double ms : engine_switch_ms) engine_switch_list.append(ms);
  result["engine_switch_ms"] = QJsonObject{{"p50", percentile(engine_switch_ms, 50)},
                                           {"p95", percentile(engine_switch_ms, 95)},
                                           {"all", engine_switch_list}};
  // Frames copied to the host while not recording: none on a GPU with interop (a CPU engine
  // copies none: its frames are made on the host).
  const int64_t copied_switching = w->engine_stats().host_copied_frames - copied_before_switches;
  result["host_copied_frames_not_recording"] = static_cast<double>(copied_switching);
  // Frames the view dropped while switching (old frames skipped for a new prompt, or behind).
  result["display_dropped_switching"] =
      static_cast<double>(w->view()->frames_dropped() - dropped_before_switches);
  check("no_host_copies_not_recording", !interop || copied_switching == 0);
  save("switches");

  // Five seconds with the view unpaced: how fast frames reach the screen when shown as they
  // arrive (the studio paces them to the video's 16 fps). The first second lets the view's
  // backlog drain, which would otherwise count as shown frames.
  frames.set_measuring(false);
  w->view()->set_paced(false);
  run_events_until([] { return false; }, 1000, sample);
  const int64_t shown_before = frames.last_index;
  QElapsedTimer unpaced;
  unpaced.start();
  run_events_until([] { return false; }, 5000, sample);
  result["displayed_fps_unpaced"] = 1000.0 * static_cast<double>(frames.last_index - shown_before) /
                                    static_cast<double>(unpaced.elapsed());
  w->view()->set_paced(true);

  // F1: the overlay, its Kernels tab once a block was sampled; the screenshot shows both.
  frames.set_measuring(false);
  press_key(w, Qt::Key_F1);
  check("overlay_visible", w->view()->overlay_visible());
  // The Kernels tab turns sampling on: CUPTI attaches (mid-stream, after the graphs were
  // captured: their kernels are still listed) and samples the next block; a CPU engine samples
  // none. Closing the overlay stops the samples; CUPTI stays attached.
  const bool on_gpu = w->engine_stats().device.rfind("cuda", 0) == 0;
  check("cupti_detached_before_kernels_tab", !KernelProfiler::attached());
  w->view()->show_kernels_tab();
  const bool sampled = on_gpu && wait([&] { return !w->engine_stats().kernels.empty(); }, 20000);
  run_events_for(400);  // a few overlay frames with the tab in front
  const OverlayReport overlay = w->view()->overlay_report();
  result["kernels_listed"] = overlay.kernel_rows;
  result["kernels_sampled"] = static_cast<double>(w->engine_stats().kernels.size());
  int64_t graph_kernels = 0;
  for (const KernelRow& row : w->engine_stats().kernels) graph_kernels += row.graph_count;
  // Whether a CUPTI attached after the capture still sees the graphs' kernels.
  result["kernels_in_graphs"] = static_cast<double>(graph_kernels);
  check("kernels_view", overlay.kernels_view && (overlay.kernel_rows > 0 || !sampled));
  w->grab().toImage().save(out_dir + "/studio-gpu.png");
  check("screenshot_written", QFile::exists(out_dir + "/studio-gpu.png"));
  press_key(w, Qt::Key_F1);
  save("overlay");
  frames.set_measuring(true);

  // The recording (Ctrl+R), then the Record button; on the GPU a second, shorter one with the
  // encoder on 2 threads (what the encoder's CPU use costs the generation beside it).
  RecordingControls* rc = w->recording();
  const EncoderSettings user_settings = rc->settings();
  struct Finished {
    bool done = false;
    QString path, error;
  };
  auto record = [&](int seconds, int threads, const QString& name) {
    EncoderSettings settings = user_settings;
    settings.folder = out_dir;
    settings.threads = threads;
    rc->set_settings(settings);
    auto recorded = std::make_shared<Finished>();
    const QMetaObject::Connection finished =
        QObject::connect(rc, &RecordingControls::recording_finished, w,
                         [recorded](const QString& path, qint64, const QString& error) {
                           *recorded = {true, path, error};
                         });
    press_key(w, Qt::Key_R, Qt::ControlModifier);
    check(name + "_started", wait([&] { return rc->recording() && !rc->live().opening(); }, 30000));
    check("host_frames_while_recording", w->host_frames_requested());
    run_events_until([] { return false; }, seconds * 1000, sample);
    // Whether the encoder kept up: its time per frame and how long the engine thread waited for
    // room in its queue.
    const RecorderProgress encoder = rc->live().progress();
    result[name == "recording" ? "recorder" : name + "_encoder"] =
        QJsonObject{{"encode_ms_mean", encoder.encode_ms_mean},
                    {"encode_ms_max", encoder.encode_ms_max},
                    {"push_wait_ms_total", encoder.push_wait_ms_total},
                    {"push_wait_ms_max", encoder.push_wait_ms_max},
                    {"threads", threads > 0 ? threads : live_encoder_threads()}};
    click(rc->record_button());
    check(name + "_finished",
          wait([&] { return recorded->done; }, 120000) && recorded->error.isEmpty());
    QObject::disconnect(finished);
    if (!recorded->error.isEmpty()) report[name + "_error"] = recorded->error;
    const int64_t pushed = rc->live().frames_pushed();
    int64_t decoded = 0;
    try {
      decoded = recorded->path.isEmpty() ? 0 : frames_in_video(recorded->path);
    } catch (const std::exception& e) {
      report[name + "_read_error"] = e.what();
    }
    const QString prefix = name == "recording" ? QString("recorded") : name;
    result[prefix + "_frames"] = static_cast<double>(decoded);
    result[prefix + "_frames_lost"] = static_cast<double>(pushed - decoded);
    check(name + "_has_frames", decoded > 0);
    check("host_frames_off_after_recording", w->host_frames_requested() == !interop);
  };
  record(options.record_seconds, 0, "recording");
  frames.set_measuring(false);
  save("recording");
  if (gpu_model) {
    record(std::max(1, options.record_seconds / 2), 2, "recording_2_threads");
    save("recording_2_threads");
  }
  rc->set_settings(user_settings);

  // Two preset changes (balanced -> speed -> balanced): change to the first frame under it.
  std::vector<double> preset_ms;
  QJsonArray preset_parts;
  for (const char* name : {"speed", "balanced"}) {
    const int index = w->preset_box()->findText(name);
    if (index < 0) continue;
    const int64_t painted = w->view()->frames_painted();
    QElapsedTimer change;
    change.start();
    w->preset_box()->setCurrentIndex(index);
    int64_t painted_at_preset = -1;
    const bool reached = wait(
        [&] {
          if (painted_at_preset < 0 && w->engine_stats().preset == name)
            painted_at_preset = std::max(painted, w->view()->frames_painted());
          return painted_at_preset >= 0 && w->view()->frames_painted() > painted_at_preset;
        },
        120000);
    if (reached) preset_ms.push_back(static_cast<double>(change.elapsed()));
    wait([&] { return false; }, options.watch_ms);
    // Where the change's time went: the engine's change itself and its first block.
    const EngineStats s = w->engine_stats();
    double first_block_ms = 0;
    for (const BlockSample& b : s.history.blocks())
      if (b.preset_change == name) first_block_ms = b.ms;
    preset_parts.append(QJsonObject{{"preset", name},
                                    {"engine_change_ms", s.last_preset_change_ms},
                                    {"first_block_ms", first_block_ms}});
  }
  result["preset_switch_parts"] = preset_parts;
  check("two_preset_changes", preset_ms.size() == 2);
  result["preset_switch_ms"] = QJsonObject{
      {"max", preset_ms.empty() ? 0.0 : *std::max_element(preset_ms.begin(), preset_ms.end())},
      {"all", QJsonArray{preset_ms.empty() ? 0.0 : preset_ms.front(),
                         preset_ms.size() > 1 ? preset_ms[1] : 0.0}}};

  save("presets");

  // Stop, then the export dialog: the session's frames to an MP4.
  click(w->stop_button());
  wait([&] { return w->engine_stats().state == "idle"; }, 60000);
  run_events_for(300);
  const int64_t session_frames = rc->session().size();
  rc->open_export_dialog();
  ExportDialog* dialog = rc->export_dialog();
  auto exported = std::make_shared<Finished>();
  connections.push_back(
      QObject::connect(dialog, &ExportDialog::export_finished, w,
                       [exported](const QString& path, qint64, const QString& error, bool) {
                         *exported = {true, path, error};
                       }));
  dialog->path_edit()->setText(out_dir + "/export.mp4");
  QElapsedTimer export_clock;
  export_clock.start();
  click(dialog->export_button());
  check("export_finished",
        wait([&] { return exported->done; }, 300000) && exported->error.isEmpty());
  if (!exported->error.isEmpty()) report["export_error"] = exported->error;
  result["export_s"] = static_cast<double>(export_clock.elapsed()) / 1000.0;
  try {
    const int64_t exported = frames_in_video(out_dir + "/export.mp4");
    result["export_frames"] = static_cast<double>(exported);
    check("export_every_frame", exported == session_frames && exported > 0);
  } catch (const std::exception& e) {
    report["export_read_error"] = e.what();
    check("export_every_frame", false);
  }
  dialog->close();
  for (const auto& c : connections) QObject::disconnect(c);
  check("no_error_banner", !w->error_visible());
  if (w->error_visible()) report["error_banner"] = w->error_text();

  save("export");
  QApplication::exit(ok ? 0 : 1);
}

}  // namespace longlive::ui
