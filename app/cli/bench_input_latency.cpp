#include "bench_input_latency.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "flat_dir.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace longlive::cli {
namespace {

// A camera that always has frames: random ones at the session's size, handed out at once.
class SyntheticCamera final : public VaceFrameSource {
 public:
  SyntheticCamera(int height, int width) : height_(height), width_(width) {}
  at::Tensor next_frames(int64_t count) override {
    return at::rand({count, 3, height_, width_}, generator_) * 2 - 1;
  }

 private:
  int height_, width_;
  at::Generator generator_ = at::detail::createCPUGenerator(17);
};

// The Engine's stats, polled until `done` holds (ConfigError after `limit`: a stuck engine or
// one that stopped on an error is named, not waited for).
EngineStats wait_until(const Engine& engine, const std::function<bool(const EngineStats&)>& done,
                       const std::vector<std::string>& errors, std::mutex& errors_mutex,
                       const char* what, std::chrono::seconds limit = std::chrono::seconds(600)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const EngineStats s = engine.stats();
    if (done(s)) return s;
    {
      std::lock_guard lock(errors_mutex);
      if (!errors.empty() || s.state == "error")
        throw Error(fmt::format("bench --vace-input-latency: the engine stopped while {}: {}", what,
                                errors.empty() ? s.state : errors.front()));
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(
          fmt::format("bench --vace-input-latency: gave up waiting while {} (state {}, "
                      "{} blocks)",
                      what, s.state, s.blocks));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

nlohmann::json summary_json(const Summary& s) {
  return {{"median_ms", s.median}, {"p99_ms", s.p99}, {"max_ms", s.max}, {"count", s.count}};
}

}  // namespace

InputLatency measure_input_latency(const ModelSpec& model, const Preset& preset, int height,
                                   int width, int picks) {
  namespace fs = std::filesystem;
  InputLatency out;
  const fs::path captures =
      fs::temp_directory_path() / fmt::format("longlive-bench-captures-{}", ::getpid());
  std::mutex errors_mutex;
  std::vector<std::string> errors;
  Engine::Callbacks callbacks;
  callbacks.on_error = [&](const std::string& e) {
    std::lock_guard lock(errors_mutex);
    errors.push_back(e);
  };
  EngineOptions options;
  options.inputs.frames = [](const InputSource& source, int h, int w) {
    if (source.kind != InputKind::camera)
      throw ConfigError("bench --vace-input-latency: only its synthetic camera opens here");
    return std::make_shared<SyntheticCamera>(h, w);
  };
  options.capture_dir = captures;
  // Every block replays its graphs: no region-profiled (eager) or CUPTI-sampled blocks.
  options.profile_every = 1 << 30;
  options.kernel_sampling = false;
  options.max_kept_latent_bytes = 0;
  std::vector<double> later, plain, camera;
  {
    Engine engine(model, preset, callbacks, height, width, options);
    auto wait = [&](const char* what, const std::function<bool(const EngineStats&)>& done) {
      return wait_until(engine, done, errors, errors_mutex, what);
    };
    // Block times of `count` blocks from the next one on, skipping `skip` first.
    auto block_times = [&](const char* what, int skip, int count, std::vector<double>& into) {
      int64_t seen = engine.stats().blocks;
      for (int i = 0; i < skip + count; ++i) {
        const EngineStats s = wait(what, [&](const EngineStats& st) { return st.blocks > seen; });
        seen = s.blocks;
        if (i >= skip) into.push_back(s.last_block_ms);
      }
    };
    engine.start("a synthetic camera", 1);
    block_times("warming up", 6, 3, plain);
    VaceRequest camera_request;
    camera_request.source.kind = InputKind::camera;
    camera_request.source.path = "synthetic";
    for (int pick = 0; pick < picks; ++pick) {
      const double before = engine.stats().last_input_ms;
      engine.set_vace(camera_request);
      const EngineStats s = wait("waiting for the first conditioned frame",
                                 [&](const EngineStats& st) { return st.last_input_ms != before; });
      if (pick == 0)
        out.first_ms = s.last_input_ms;
      else
        later.push_back(s.last_input_ms);
      log::info("bench --vace-input-latency: pick {}: {:.1f} ms to the first conditioned frame",
                pick + 1, s.last_input_ms);
      block_times("the camera conditions", 2, 3, camera);
      engine.clear_vace();
      block_times("the camera is off", 1, 2, plain);
    }
    engine.stop();
  }
  remove_flat_dir(captures);  // the capture files (not fs::remove_all: see there)
  out.picks = picks;
  out.later = summarize(later);
  out.plain_block = summarize(plain);
  out.camera_block = summarize(camera);
  return out;
}

nlohmann::json to_json(const InputLatency& l) {
  return {{"picks", l.picks},
          {"first_pick_ms", l.first_ms},
          {"later_picks", summary_json(l.later)},
          {"engine_block_without_camera", summary_json(l.plain_block)},
          {"engine_block_with_camera", summary_json(l.camera_block)}};
}

std::string describe(const InputLatency& l) {
  return fmt::format(
      "vace input     picked -> first conditioned frame ready: first pick {:.1f} ms, later "
      "picks median {:.1f} ms (p99 {:.1f}, {} picks); engine block without the camera {:.1f} ms, "
      "with it {:.1f} ms\n",
      l.first_ms, l.later.median, l.later.p99, l.later.count, l.plain_block.median,
      l.camera_block.median);
}

}  // namespace longlive::cli
