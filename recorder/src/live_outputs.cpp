// LiveOutputs: switchable video outputs. The frame path (push) only hands frames to open outputs
// and notices when one must be (re)opened; every open and close runs on one helper thread, in
// the order asked, so a device is closed before it is opened again.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "longlive/log.h"
#include "longlive/video_out.h"

namespace longlive {

std::string to_string(LiveOutputs::Kind kind) {
  return kind == LiveOutputs::Kind::stream ? "stream" : "virtual camera";
}

namespace {

struct Slot {
  bool enabled = false;
  // Bumped by every enable/disable: an open that finishes for an older request is closed again.
  uint64_t generation = 0;
  StreamOutputOptions stream;
  VirtualCameraOptions camera;
  std::string target;
  std::shared_ptr<VideoOutput> output;  // open and sending
  int width = 0, height = 0;            // the size it is open (or opening) at
  bool opening = false;
  bool failed = false;  // stays off until enabled again
  int64_t dropped_while_opening = 0;
  VideoOutputStats closed_stats;  // of the last output, once it is closed
  std::string codec;
  std::optional<std::string> error;
};

}  // namespace

struct LiveOutputs::Impl {
  StreamOpener open_stream;
  CameraOpener open_camera;
  mutable std::mutex mutex;
  std::condition_variable changed;
  Slot slots[2];
  std::deque<std::function<void()>> jobs;
  bool job_running = false;
  bool stopping = false;
  std::thread helper;

  Slot& slot(Kind kind) { return slots[kind == Kind::stream ? 0 : 1]; }
  const Slot& slot(Kind kind) const { return slots[kind == Kind::stream ? 0 : 1]; }

  void run_jobs() {
    std::unique_lock lock(mutex);
    for (;;) {
      changed.wait(lock, [&] { return stopping || !jobs.empty(); });
      if (jobs.empty()) return;  // stopping, and everything asked for is done
      auto job = std::move(jobs.front());
      jobs.pop_front();
      job_running = true;
      lock.unlock();
      job();
      lock.lock();
      job_running = false;
      changed.notify_all();
    }
  }

  // Caller holds the lock.
  void schedule(std::function<void()> job) {
    jobs.push_back(std::move(job));
    changed.notify_all();
  }

  // Caller holds the lock: takes the slot's output away and closes it on the helper.
  void close_later(Kind kind) {
    Slot& s = slot(kind);
    std::shared_ptr<VideoOutput> output = std::move(s.output);
    s.output.reset();
    if (!output) return;
    const uint64_t generation = s.generation;
    schedule([this, kind, output, generation] { close(kind, output, generation); });
  }

  void close(Kind kind, const std::shared_ptr<VideoOutput>& output, uint64_t generation) {
    std::optional<std::string> error;
    try {
      output->close();
    } catch (const std::exception& e) {
      error = e.what();
      log::error("video out {}: {}", output->target(), e.what());
    }
    std::lock_guard lock(mutex);
    Slot& s = slot(kind);
    s.closed_stats = output->stats();
    if (error && s.generation == generation) s.error = error;
  }

  void open(Kind kind, uint64_t generation, int width, int height) {
    StreamOutputOptions stream;
    VirtualCameraOptions camera;
    {
      std::lock_guard lock(mutex);
      stream = slot(kind).stream;
      camera = slot(kind).camera;
    }
    std::shared_ptr<VideoOutput> output;
    std::optional<std::string> error;
    try {
      if (kind == Kind::stream) {
        stream.width = width;
        stream.height = height;
        output = open_stream ? open_stream(stream) : VideoOutput::stream(stream);
      } else {
        camera.width = width;
        camera.height = height;
        output = open_camera ? open_camera(camera) : VideoOutput::virtual_camera(camera);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::unique_lock lock(mutex);
    Slot& s = slot(kind);
    const bool current =
        s.generation == generation && s.enabled && s.width == width && s.height == height;
    if (current) {
      s.opening = false;
      if (error) {
        s.failed = true;
        s.error = error;
        log::error("video out ({}): {}", to_string(kind), *error);
      } else {
        s.output = output;
        s.codec = output->codec_name();
        log::info("video out: {} {} open at {}x{} ({})", to_string(kind), output->target(), width,
                  height, s.codec);
      }
      return;
    }
    lock.unlock();
    if (output) close(kind, output, generation);  // asked for something else meanwhile
  }
};

LiveOutputs::LiveOutputs(StreamOpener open_stream, CameraOpener open_camera)
    : impl_(std::make_unique<Impl>()) {
  impl_->open_stream = std::move(open_stream);
  impl_->open_camera = std::move(open_camera);
  impl_->helper = std::thread([this] { impl_->run_jobs(); });
}

LiveOutputs::~LiveOutputs() {
  {
    std::lock_guard lock(impl_->mutex);
    for (const Kind kind : {Kind::stream, Kind::virtual_camera}) {
      Slot& s = impl_->slot(kind);
      ++s.generation;
      s.enabled = false;
      impl_->close_later(kind);
    }
    impl_->stopping = true;
    impl_->changed.notify_all();
  }
  impl_->helper.join();
}

namespace {

void reset_for_enable(Slot& s, std::string target) {
  ++s.generation;
  s.enabled = true;
  s.failed = false;
  s.opening = false;
  s.error.reset();
  s.target = std::move(target);
  s.codec.clear();
  s.width = s.height = 0;
  s.dropped_while_opening = 0;
  s.closed_stats = {};
}

}  // namespace

void LiveOutputs::enable_stream(StreamOutputOptions options) {
  std::lock_guard lock(impl_->mutex);
  impl_->close_later(Kind::stream);
  Slot& s = impl_->slot(Kind::stream);
  reset_for_enable(s, options.url);
  s.stream = std::move(options);
}

void LiveOutputs::enable_virtual_camera(VirtualCameraOptions options) {
  std::lock_guard lock(impl_->mutex);
  impl_->close_later(Kind::virtual_camera);
  Slot& s = impl_->slot(Kind::virtual_camera);
  reset_for_enable(s, options.device);
  s.camera = std::move(options);
}

void LiveOutputs::disable(Kind kind) {
  std::lock_guard lock(impl_->mutex);
  Slot& s = impl_->slot(kind);
  if (!s.enabled) return;
  impl_->close_later(kind);
  ++s.generation;
  s.enabled = false;
  s.opening = false;
}

void LiveOutputs::push(const at::Tensor& rgba) {
  if (!rgba.defined() || rgba.dim() != 3) return;
  const int height = static_cast<int>(rgba.size(0));
  const int width = static_cast<int>(rgba.size(1));
  std::lock_guard lock(impl_->mutex);
  for (const Kind kind : {Kind::stream, Kind::virtual_camera}) {
    Slot& s = impl_->slot(kind);
    if (!s.enabled || s.failed) continue;
    if (s.output && s.width == width && s.height == height) {
      s.output->push(rgba);
      if (auto error = s.output->error()) {  // the receiver went away: off, with the reason
        s.failed = true;
        s.error = error;
        impl_->close_later(kind);
      }
      continue;
    }
    ++s.dropped_while_opening;
    if (s.opening && s.width == width && s.height == height) continue;
    // First frame, or a new size: (re)open at this size; the old output closes first.
    impl_->close_later(kind);
    s.width = width;
    s.height = height;
    s.opening = true;
    const uint64_t generation = s.generation;
    impl_->schedule(
        [this, kind, generation, width, height] { impl_->open(kind, generation, width, height); });
  }
}

LiveOutputs::Status LiveOutputs::status(Kind kind) const {
  std::lock_guard lock(impl_->mutex);
  const Slot& s = impl_->slot(kind);
  Status st;
  st.enabled = s.enabled;
  st.open = s.output != nullptr;
  st.target = s.target;
  st.codec = s.codec;
  st.stats = s.output ? s.output->stats() : s.closed_stats;
  st.stats.frames_dropped += s.dropped_while_opening;
  st.error = s.error;
  return st;
}

void LiveOutputs::wait_idle() {
  std::unique_lock lock(impl_->mutex);
  impl_->changed.wait(lock, [&] { return impl_->jobs.empty() && !impl_->job_running; });
}

std::string LiveOutputs::summary() const {
  std::string text;
  for (const Kind kind : {Kind::stream, Kind::virtual_camera}) {
    const Status s = status(kind);
    if (!s.enabled) continue;
    if (!text.empty()) text += "; ";
    text += fmt::format("{} {}: ", kind == Kind::stream ? "stream" : "camera", s.target);
    if (s.error)
      text += "failed";
    else if (!s.open)
      text += "opening";
    else
      text += fmt::format("{} sent, {} dropped", s.stats.frames_sent, s.stats.frames_dropped);
  }
  return text;
}

}  // namespace longlive
