#include "bench_input_latency.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine_wait.h"
#include "flat_dir.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace longlive::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Unpaced, a camera that always has frames, handed out at once as a capture ring's latest are:
// random ones at the session's size, made once per bench and cycled (a camera converts its frames
// on its own thread; the engine thread only takes them). The pool is shared by every pick: making
// it (16 frames of at::rand on the host, ~100 ms) is not what opening a camera costs.
//
// Paced (fps > 0): frame i is filmed at the opening + i / fps; next_frames waits for its frames,
// first_frames takes those filmed (at least the first) and holds the latest, has_frames says
// whether they are filmed, as LiveVideoSource does. Each read's last frame's filming time is
// kept (the reads condition the input's blocks in order).
class SyntheticCamera final : public VaceFrameSource {
 public:
  static constexpr int64_t kPool = 16;
  static at::Tensor make_pool(int height, int width) {
    return at::rand({kPool, 3, height, width}, at::detail::createCPUGenerator(17)) * 2 - 1;
  }
  SyntheticCamera(at::Tensor pool, double fps, bool filmed = true)
      : pool_(std::move(pool)), fps_(fps), filmed_(filmed) {}
  at::Tensor next_frames(int64_t count) override {
    if (fps_ > 0) std::this_thread::sleep_until(filmed_at(next_ + count - 1));
    at::Tensor frames = take(count, count);
    note_read();
    return frames;
  }
  // Each part once it is filmed; the read's last frame noted once, for the block.
  void next_frames_in_parts(int64_t count, int64_t part,
                            const std::function<void(const at::Tensor&)>& part_read) override {
    for (int64_t begin = 0; begin < count; begin += part) {
      const int64_t n = std::min(part, count - begin);
      if (fps_ > 0) std::this_thread::sleep_until(filmed_at(next_ + n - 1));
      part_read(take(n, n));
    }
    note_read();
  }
  at::Tensor first_frames(int64_t count) override {
    if (fps_ <= 0) return take(count, count);  // not paced: no filming times
    const auto seconds = std::chrono::duration<double>(Clock::now() - opened_).count();
    const int64_t there = std::clamp<int64_t>(1 + static_cast<int64_t>(seconds * fps_), 1, count);
    std::this_thread::sleep_until(filmed_at(next_ + there - 1));
    at::Tensor frames = take(count, there);
    note_read();
    return frames;
  }
  bool has_frames(int64_t count) const override {
    return fps_ <= 0 || filmed_at(next_ + count - 1) <= Clock::now();
  }
  bool filmed() const override { return filmed_; }  // a camera's frames, unless as a file
  // When each read's last frame was filmed (paced), in read order (read on another thread).
  std::vector<Clock::time_point> read_filmed() const {
    std::lock_guard lock(mutex_);
    return read_filmed_;
  }

 private:
  Clock::time_point filmed_at(int64_t frame) const {
    return opened_ + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(static_cast<double>(frame) / fps_));
  }
  // `count` frames of which the first `fresh` are new, the rest the last one held.
  at::Tensor take(int64_t count, int64_t fresh) {
    at::Tensor picked = at::arange(next_, next_ + fresh, at::kLong).remainder(pool_.size(0));
    if (fresh < count) picked = at::cat({picked, picked[fresh - 1].expand({count - fresh})});
    next_ += fresh;
    return pool_.index_select(0, picked);
  }
  // A read (a block's frames) done: when its last frame was filmed.
  void note_read() {
    if (fps_ <= 0) return;
    std::lock_guard lock(mutex_);
    read_filmed_.push_back(filmed_at(next_ - 1));
  }

  at::Tensor pool_;
  double fps_;
  bool filmed_;
  Clock::time_point opened_ = Clock::now();
  int64_t next_ = 0;
  mutable std::mutex mutex_;
  std::vector<Clock::time_point> read_filmed_;
};

using ThreadShare = InputLatency::ThreadShare;

// The engine thread's time between two reads of its sums.
ThreadShare between(const EngineStats::ThreadTime& from, const EngineStats::ThreadTime& to) {
  return {to.inputs_ms - from.inputs_ms, to.dit_wait_ms - from.dit_wait_ms,
          to.decode_wait_ms - from.decode_wait_ms, to.deliver_ms - from.deliver_ms,
          to.block_ms - from.block_ms};
}

// The same per block (the blocks made in between; at least one).
ThreadShare per_block(const EngineStats::ThreadTime& from, const EngineStats::ThreadTime& to) {
  const double blocks = std::max<int64_t>(1, to.blocks - from.blocks);
  const ThreadShare sum = between(from, to);
  return {sum.inputs_ms / blocks, sum.dit_wait_ms / blocks, sum.decode_wait_ms / blocks,
          sum.deliver_ms / blocks, sum.block_ms / blocks};
}

// The mean of several phases' shares.
ThreadShare mean_of(const std::vector<ThreadShare>& shares) {
  ThreadShare m;
  for (const ThreadShare& s : shares) {
    m.inputs_ms += s.inputs_ms / shares.size();
    m.dit_wait_ms += s.dit_wait_ms / shares.size();
    m.decode_wait_ms += s.decode_wait_ms / shares.size();
    m.deliver_ms += s.deliver_ms / shares.size();
    m.block_ms += s.block_ms / shares.size();
  }
  return m;
}

nlohmann::json share_json(const ThreadShare& s) {
  return {{"inputs_ms", s.inputs_ms},
          {"dit_wait_ms", s.dit_wait_ms},
          {"decode_wait_ms", s.decode_wait_ms},
          {"deliver_ms", s.deliver_ms},
          {"block_ms", s.block_ms}};
}

}  // namespace

InputLatency measure_input_latency(const ModelSpec& model, const Preset& preset, int height,
                                   int width, int picks, double camera_fps, bool at_random_moments,
                                   bool as_file) {
  namespace fs = std::filesystem;
  InputLatency out;
  out.camera_fps = camera_fps;
  out.at_random_moments = at_random_moments;
  out.as_file = as_file;
  // Frames handed out (time, then whether a block's first: frames of a block come out together,
  // a paced camera's blocks far apart) and the camera of the pick in progress.
  std::mutex frames_mutex;
  std::vector<Clock::time_point> block_out;  // first frame of each burst of frames
  Clock::time_point last_frame{};
  std::shared_ptr<SyntheticCamera> camera;
  // The capture files, removed however the measurement ends.
  const OwnedDir captures{
      fs::temp_directory_path() / fmt::format("longlive-bench-captures-{}", ::getpid()), true};
  EngineErrors errors;
  Engine::Callbacks callbacks;
  callbacks.on_frame = [&](const EngineFrame&) {
    const auto now = Clock::now();
    std::lock_guard lock(frames_mutex);
    // A block's frames come out within a few ms; a paced camera's blocks are ~0.75 s apart.
    if (block_out.empty() || now - last_frame > std::chrono::milliseconds(40))
      block_out.push_back(now);
    last_frame = now;
  };
  errors.collect_from(callbacks);
  EngineOptions options = timing_engine_options();
  const at::Tensor pool = SyntheticCamera::make_pool(height, width);
  options.inputs.frames = [&, pool](const InputSource& source, int h, int w) {
    if (source.kind != InputKind::camera)
      throw ConfigError("bench --vace-input-latency: only its synthetic camera opens here");
    if (h != pool.size(2) || w != pool.size(3))
      throw ConfigError(
          fmt::format("bench --vace-input-latency: the camera was opened at {}x{}, "
                      "its frames are {}x{}",
                      h, w, pool.size(2), pool.size(3)));
    auto opened = std::make_shared<SyntheticCamera>(pool, camera_fps, !as_file);
    std::lock_guard lock(frames_mutex);
    camera = opened;
    return opened;
  };
  options.capture_dir = captures.path;
  std::vector<double> later, later_open, plain, camera_blocks, to_screen;
  std::vector<ThreadShare> plain_shares, camera_shares;
  {
    Engine engine(model, preset, callbacks, height, width, options);
    auto wait = [&](const char* what, const std::function<bool(const EngineStats&)>& done) {
      return wait_until(engine, done, errors, "bench --vace-input-latency", what);
    };
    // Block times of `count` blocks from the next one on, skipping `skip` first, and the engine
    // thread's shares over the counted ones.
    auto block_times = [&](const char* what, int skip, int count, std::vector<double>& into,
                           std::vector<ThreadShare>& shares) {
      EngineStats s = engine.stats();
      int64_t seen = s.blocks;
      EngineStats::ThreadTime counted_from = s.thread_time;
      for (int i = 0; i < skip + count; ++i) {
        s = wait(what, [&](const EngineStats& st) { return st.blocks > seen; });
        seen = s.blocks;
        if (i >= skip) into.push_back(s.last_block_ms);
        if (i + 1 == skip) counted_from = s.thread_time;
      }
      shares.push_back(per_block(counted_from, s.thread_time));
    };
    engine.start("a synthetic camera", 1);
    block_times("warming up", 6, 3, plain, plain_shares);
    VaceRequest camera_request;
    camera_request.source.kind = InputKind::camera;
    camera_request.source.path = "synthetic";
    RandomMoments moments;
    const double plain_median = summarize(plain).median;
    for (int pick = 0; pick < picks; ++pick) {
      // Each pick follows a block's end: as the next begins, or at a random moment of it.
      if (at_random_moments) moments.wait_within(plain_median);
      const EngineStats at_pick = engine.stats();
      const double before = at_pick.last_input_ms;
      const auto issued_at = Clock::now();
      engine.set_vace(camera_request);
      const EngineStats s = wait("waiting for the first conditioned frame",
                                 [&](const EngineStats& st) { return st.last_input_ms != before; });
      if (pick == 0) {
        out.first_ms = s.last_input_ms;
      } else {
        later.push_back(s.last_input_ms);
        later_open.push_back(s.last_input_open_ms);
      }
      InputLatency::Pick p{s.last_input_ms, s.last_input_open_ms,
                           s.thread_time.blocks - at_pick.thread_time.blocks,
                           between(at_pick.thread_time, s.thread_time)};
      p.graph_captures = s.graph_captures - at_pick.graph_captures;
      p.graph_eager_forwards = s.graph_eager_forwards - at_pick.graph_eager_forwards;
      out.each.push_back(p);
      log::info(
          "bench --vace-input-latency: pick {}: {:.1f} ms to the first conditioned frame ({:.1f} "
          "ms opening the input; engine thread over {} blocks: inputs {:.1f}, DiT wait {:.1f}, "
          "decoder wait {:.1f}, frames out {:.1f} of {:.1f} ms; DiT forwards: {} captured, {} "
          "eager)",
          pick + 1, p.latency_ms, p.open_ms, p.blocks, p.thread.inputs_ms, p.thread.dit_wait_ms,
          p.thread.decode_wait_ms, p.thread.deliver_ms, p.thread.block_ms, p.graph_captures,
          p.graph_eager_forwards);
      block_times("the camera conditions", 2, 3, camera_blocks, camera_shares);
      if (camera_fps > 0) {
        // The conditioned blocks' first frames: the burst that held the first conditioned frame
        // (handed out last_input_ms after the pick) and the ones after it, against the reads
        // that conditioned them (read r -> the input's block r). The first block is left out
        // (its frames were there at once, first_frames).
        std::lock_guard lock(frames_mutex);
        const auto first_out =
            issued_at + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double, std::milli>(s.last_input_ms - 1.0));
        size_t b = 0;
        while (b < block_out.size() && block_out[b] < first_out) ++b;
        const std::vector<Clock::time_point> reads = camera->read_filmed();
        for (size_t r = 1; r < reads.size() && b + r < block_out.size(); ++r)
          to_screen.push_back(
              std::chrono::duration<double, std::milli>(block_out[b + r] - reads[r]).count());
      }
      engine.clear_vace();
      block_times("the camera is off", 1, 2, plain, plain_shares);
    }
    engine.stop();
  }
  out.picks = picks;
  out.later = summarize(later);
  out.later_open = summarize(later_open);
  out.plain_block = summarize(plain);
  out.camera_block = summarize(camera_blocks);
  out.camera_to_screen = summarize(to_screen);
  out.plain_thread = mean_of(plain_shares);
  out.camera_thread = mean_of(camera_shares);
  return out;
}

nlohmann::json to_json(const InputLatency& l) {
  return {{"picks", l.picks},
          {"first_pick_ms", l.first_ms},
          {"later_picks", to_json(l.later)},
          {"later_picks_opening", to_json(l.later_open)},
          {"engine_block_without_camera", to_json(l.plain_block)},
          {"engine_block_with_camera", to_json(l.camera_block)},
          {"engine_thread_per_block_without_camera", share_json(l.plain_thread)},
          {"engine_thread_per_block_with_camera", share_json(l.camera_thread)},
          {"camera_fps", l.camera_fps},
          {"camera_to_screen", to_json(l.camera_to_screen)},
          {"picks_at_random_moments", l.at_random_moments},
          {"input_as_file", l.as_file},
          {"each_pick", [&] {
             nlohmann::json picks = nlohmann::json::array();
             for (const InputLatency::Pick& p : l.each)
               picks.push_back({{"latency_ms", p.latency_ms},
                                {"open_ms", p.open_ms},
                                {"blocks", p.blocks},
                                {"graph_captures", p.graph_captures},
                                {"graph_eager_forwards", p.graph_eager_forwards},
                                {"engine_thread_sums", share_json(p.thread)}});
             return picks;
           }()}};
}

std::string describe(const InputLatency& l) {
  auto share = [](const ThreadShare& s) {
    return fmt::format(
        "inputs {:.1f}, waiting for the DiT {:.1f}, for the decoder {:.1f}, handing frames out "
        "{:.1f} of {:.1f} ms",
        s.inputs_ms, s.dit_wait_ms, s.decode_wait_ms, s.deliver_ms, s.block_ms);
  };
  return fmt::format(
             "vace input     picked -> first conditioned frame ready: first pick {:.1f} ms, later "
             "picks median {:.1f} ms (p99 {:.1f}, {} picks; opening the input {:.1f} ms); engine "
             "block without the camera {:.1f} ms, with it {:.1f} ms\n"
             "vace input     engine thread per block without the camera: {}\n"
             "vace input     engine thread per block with the camera: {}\n",
             l.first_ms, l.later.median, l.later.p99, l.later.count, l.later_open.median,
             l.plain_block.median, l.camera_block.median, share(l.plain_thread),
             share(l.camera_thread)) +
         (l.camera_fps > 0
              ? fmt::format(
                    "vace input     camera at {:.0f} fps: filmed -> on screen (a block's last "
                    "control frame -> its first frame out) median {:.1f} ms (p99 {:.1f}, {} "
                    "blocks)\n",
                    l.camera_fps, l.camera_to_screen.median, l.camera_to_screen.p99,
                    l.camera_to_screen.count)
              : std::string()) +
         (l.at_random_moments
              ? std::string("vace input     each pick at a random moment of a block (not as one "
                            "begins)\n")
              : std::string()) +
         (l.as_file ? std::string("vace input     the synthetic input passed for a file: a call's "
                                  "frames in one encoder pass, not a group of 4 per pass\n")
                    : std::string());
}

}  // namespace longlive::cli
