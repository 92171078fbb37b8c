// longlive serve : a headless live session driven over OSC (docs/control.md). No window: it
// generates while started, sends the frames to --stream-url / --virtual-camera when given, and
// writes the timeline of each stopped video to --timeline-out, for `longlive render` to turn
// into a final cut.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <mutex>
#include <thread>

#include "command.h"
#include "longlive/control.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "video_out_args.h"
#ifdef LONGLIVE_WITH_OSC
#include "longlive/osc_server.h"
#endif
#include "longlive/timeline.h"

#ifdef LONGLIVE_WITH_OSC
namespace longlive::cli {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted = true; }

struct ServeArgs {
  int port = kDefaultOscPort;
  std::string model;
  bool tiny = false;
  std::string preset = "balanced";
  std::string presets_dir = default_presets_dir();
  std::string device = "auto";
  std::string timeline_out;
  int height = 0, width = 0;
  bool once = false;
  VideoOutArgs video_out;
};

int run(const ServeArgs& a) {
  ModelSpec model;
  if (a.tiny) {
    model.tiny_random = true;
  } else {
    if (a.model.empty()) throw ConfigError("give --model DIR (or --tiny)");
    model.folder = a.model;
  }
  model.device = pick_device(a.device);
  const PresetLookup presets = [dir = a.presets_dir](const std::string& name) {
    return find_preset(dir, name);
  };
  std::atomic<int> timelines{0};
  Engine::Callbacks cb;
  cb.on_error = [](const std::string& e) { log::error("{}", e); };
  cb.on_timeline = [&](const Timeline& t) {
    if (!a.timeline_out.empty()) {
      save_timeline(a.timeline_out, t);
      fmt::print("timeline: {} blocks, {} events -> {}\n", t.blocks, t.events.size(),
                 a.timeline_out);
      std::fflush(stdout);
    }
    ++timelines;
  };
  // Video out: switched on by the flags and by OSC (/longlive/out/stream, /longlive/out/camera);
  // each output opens at the first frame's size on LiveOutputs' helper thread.
  VideoOutputs outputs(a.video_out);
  cb.on_frame = [&](EngineFrame f) { outputs.push(f.rgba); };
  Engine engine(model, presets(a.preset), cb, a.height, a.width);
  FrontEndControls front_end;
  front_end.video_out = [&](const ControlCommand& c) { outputs.apply(c); };
  EngineControl control(engine, presets, front_end);
  OscServer server(a.port, [&](const ControlCommand& c) { control.apply(c); });
  fmt::print("listening for OSC on UDP port {} (Ctrl+C ends)\n", server.port());
  std::fflush(stdout);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (!g_interrupted && !(a.once && timelines > 0))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  engine.stop();  // a running video's timeline is written before the engine goes
  outputs.close();
  const auto stats = server.stats();
  fmt::print("OSC messages: {} accepted, {} rejected\n", stats.accepted, stats.rejected);
  return 0;
}

const Registrar kServe("serve", [](CLI::App& root) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = root.add_subcommand("serve", "Live session controlled over OSC (no window)");
  cmd->add_option("--osc-port", a->port, "UDP port (0: any free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--model", a->model, "Model folder");
  cmd->add_flag("--tiny", a->tiny, "Use the tiny random test model");
  cmd->add_option("--preset", a->preset, "Preset at the start");
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--device", a->device, "auto, cpu or cuda");
  cmd->add_option("--height", a->height, "Video height (0: the preset's)");
  cmd->add_option("--width", a->width, "Video width (0: the preset's)");
  cmd->add_option("--timeline-out", a->timeline_out, "Write each stopped video's timeline here");
  cmd->add_flag("--once", a->once, "Exit after the first video stops");
  add_video_out_options(cmd, a->video_out);
  return [a] { return run(*a); };
});

}  // namespace
}  // namespace longlive::cli
#endif  // LONGLIVE_WITH_OSC
