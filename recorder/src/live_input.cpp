// Live control inputs (cameras and other FFmpeg input devices) for VACE and video-to-video; see
// longlive/control_input.h.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
}

#include "cover_scale.h"
#include "longlive/control_input.h"
#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {
namespace {

// The /dev/video* nodes of this machine, for the message of a camera that does not open.
std::string video_devices() {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("video", 0) == 0) found.push_back(entry.path().string());
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) return "this machine has no /dev/video* device";
  return fmt::format("devices here: {}", fmt::join(found, ", "));
}

// An opened input device and its decoder, closed together.
struct OpenInput {
  AVFormatContext* format = nullptr;
  AVCodecContext* codec = nullptr;
  int stream_index = -1;
  double time_base = 0;
  double fps = 0;  // nominal, 0 when unknown

  OpenInput() = default;
  OpenInput(const OpenInput&) = delete;
  OpenInput& operator=(const OpenInput&) = delete;
  ~OpenInput() {
    avcodec_free_context(&codec);
    avformat_close_input(&format);
  }
};

const AVInputFormat* input_format(const LiveVideoOptions& options) {
  static std::once_flag registered;
  std::call_once(registered, [] { avdevice_register_all(); });
  const AVInputFormat* input = av_find_input_format(options.format.c_str());
  if (!input)
    throw ConfigError(fmt::format(
        "live input format '{}' is unknown to this FFmpeg (input devices: v4l2, x11grab, lavfi, "
        "...; `ffmpeg -devices` lists them)",
        options.format));
  return input;
}

// Opens the device with its video decoder; `name` names it in errors, `interrupt` ends blocking
// reads. IoError when it does not open, FormatError when it has no video stream.
std::unique_ptr<OpenInput> open_input(const LiveVideoOptions& options, const std::string& name,
                                      const AVIOInterruptCB& interrupt) {
  const AVInputFormat* input = input_format(options);
  auto opened = std::make_unique<OpenInput>();
  opened->format = avformat_alloc_context();
  opened->format->interrupt_callback = interrupt;
  AVDictionary* settings = nullptr;
  // A camera's usual rate; the fps grid resamples whatever comes.
  if (options.format == "v4l2") av_dict_set(&settings, "framerate", "30", 0);
  const int rc = avformat_open_input(&opened->format, options.device.c_str(), input, &settings);
  av_dict_free(&settings);
  if (rc < 0) {
    opened->format = nullptr;  // freed by avformat_open_input on failure
    const std::string hint =
        options.format == "v4l2"
            ? fmt::format(
                  " ({}; `v4l2-ctl --list-devices` names cameras; the user needs to be "
                  "in the 'video' group)",
                  video_devices())
            : std::string();
    throw IoError(fmt::format("cannot open {}: {}{}", name, av_error_text(rc), hint));
  }
  const VideoDecoder video = open_video_decoder(opened->format, name);
  opened->codec = video.codec;
  opened->stream_index = video.stream_index;
  const AVStream* stream = opened->format->streams[opened->stream_index];
  opened->time_base = av_q2d(stream->time_base);
  const AVRational rate =
      stream->avg_frame_rate.num > 0 ? stream->avg_frame_rate : stream->r_frame_rate;
  opened->fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0.0;
  return opened;
}

// How often a lost input is tried again.
constexpr std::chrono::milliseconds kReopenEvery{250};

}  // namespace

struct LiveVideoSource::Capture {
  LiveVideoOptions options;
  std::string name;  // "camera '/dev/video0' (v4l2)" in messages
  std::unique_ptr<OpenInput> input;
  std::unique_ptr<CoverScaler> cover;

  mutable std::mutex mutex;
  std::condition_variable arrived;
  std::deque<at::Tensor> queue;  // [H, W, 3] uint8, oldest first
  at::Tensor last_given;
  Stats stats;
  bool ended = false;
  std::atomic<bool> stopping{false};
  std::thread thread;

  ~Capture() {
    stopping = true;
    if (thread.joinable()) thread.join();
  }

  // Blocking reads return when this says so (FFmpeg polls it).
  static int interrupt(void* self) { return static_cast<Capture*>(self)->stopping.load() ? 1 : 0; }
  AVIOInterruptCB interrupt_callback() { return {&Capture::interrupt, this}; }

  void run() {
    std::string error;
    try {
      while (!stopping) {
        const std::string lost = capture_until_lost();
        if (stopping) break;
        if (!reopen(lost, error)) break;
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard lock(mutex);
    ended = true;
    stats.error = error;
    stats.interrupted.clear();
    arrived.notify_all();
  }

  // Decodes frames into the queue until the input fails or ends; says which.
  std::string capture_until_lost() {
    const std::unique_ptr<AVPacket, void (*)(AVPacket*)> packet(
        av_packet_alloc(), [](AVPacket* p) { av_packet_free(&p); });
    const std::unique_ptr<AVFrame, void (*)(AVFrame*)> frame(av_frame_alloc(),
                                                             [](AVFrame* f) { av_frame_free(&f); });
    std::optional<double> next_tick;  // presentation time of the next grid point
    const double step = 1.0 / options.fps;
    while (!stopping) {
      const int rc = av_read_frame(input->format, packet.get());
      if (rc == AVERROR(EAGAIN)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      if (rc < 0)
        return rc == AVERROR_EOF ? name + " ended"
                                 : fmt::format("{} failed: {}", name, av_error_text(rc));
      if (packet->stream_index == input->stream_index &&
          avcodec_send_packet(input->codec, packet.get()) >= 0) {
        while (avcodec_receive_frame(input->codec, frame.get()) >= 0) {
          const double t = frame->best_effort_timestamp == AV_NOPTS_VALUE
                               ? std::chrono::duration<double>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count()
                               : frame->best_effort_timestamp * input->time_base;
          std::lock_guard lock(mutex);
          ++stats.captured;
          if (!next_tick) next_tick = t;
          if (t < *next_tick - 1e-6) continue;  // between grid points
          // Grid points a late frame skipped are not made up.
          *next_tick += step;
          if (*next_tick <= t) next_tick = t + step;
          ++stats.on_grid;
          queue.push_back((*cover)(*frame));
          while (static_cast<int64_t>(queue.size()) > options.queue_frames) {
            queue.pop_front();
            ++stats.dropped;
          }
          arrived.notify_all();
        }
      }
      av_packet_unref(packet.get());
    }
    return {};
  }

  // Tries to open the lost input again every kReopenEvery for options.reconnect_s while the
  // consumer holds the last frame. False (with `error` set) when it does not come back.
  bool reopen(const std::string& lost, std::string& error) {
    input.reset();  // a camera node is exclusive: close it before opening it again
    if (!(options.reconnect_s > 0)) {
      error = lost;
      return false;
    }
    {
      std::lock_guard lock(mutex);
      stats.interrupted = fmt::format("{}; reopening it", lost);
    }
    log::warn("{}: reopening it for up to {} s, holding its last frame", lost, options.reconnect_s);
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options.reconnect_s));
    std::string why;
    while (!stopping && Clock::now() < deadline) {
      for (const auto wake = Clock::now() + kReopenEvery; !stopping && Clock::now() < wake;)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (stopping) break;
      try {
        input = open_input(options, name, interrupt_callback());
        break;
      } catch (const std::exception& e) {
        why = e.what();
      }
    }
    if (!input) {
      if (!stopping)
        error = fmt::format("{}; it did not come back in {} s ({})", lost, options.reconnect_s,
                            why.empty() ? "not tried" : why);
      return false;
    }
    std::lock_guard lock(mutex);
    ++stats.reconnects;
    stats.input_fps = input->fps;
    stats.interrupted.clear();
    log::info("{} is back (reconnect {})", name, stats.reconnects);
    return true;
  }
};

LiveVideoSource::LiveVideoSource(LiveVideoOptions options, int height, int width)
    : capture_(std::make_unique<Capture>()) {
  if (height <= 0 || width <= 0)
    throw ConfigError(
        fmt::format("live input '{}': size {}x{} must be positive", options.device, width, height));
  if (!(options.fps > 0) || options.queue_frames < 1 || !(options.stall_s > 0))
    throw ConfigError(
        fmt::format("live input '{}': fps {}, queue {} frames and stall {} s must be positive",
                    options.device, options.fps, options.queue_frames, options.stall_s));
  if (!(options.reconnect_s >= 0) || !std::isfinite(options.reconnect_s))
    throw ConfigError(fmt::format("live input '{}': reconnect time {} s must be 0 or more",
                                  options.device, options.reconnect_s));
  Capture& c = *capture_;
  c.options = options;
  c.name = fmt::format("live input '{}' ({})", options.device, options.format);
  c.input = open_input(options, c.name, c.interrupt_callback());
  c.stats.input_fps = c.input->fps;
  c.cover = std::make_unique<CoverScaler>(c.name, height, width);
  c.thread = std::thread([&c] { c.run(); });
}

LiveVideoSource::~LiveVideoSource() = default;

at::Tensor LiveVideoSource::next_frames(int64_t count) { return take(count, false); }

at::Tensor LiveVideoSource::first_frames(int64_t count) { return take(count, true); }

void LiveVideoSource::next_frames_in_parts(
    int64_t count, int64_t part, const std::function<void(const at::Tensor&)>& part_read) {
  check_parts(count, part);
  take(count, false, part, part_read);
}

at::Tensor LiveVideoSource::take(int64_t count, bool hold) {
  at::Tensor frames;
  take(count, hold, count, [&](const at::Tensor& all) { frames = all; });
  return frames;
}

void LiveVideoSource::take(int64_t count, bool hold, int64_t part,
                           const std::function<void(const at::Tensor&)>& part_read) {
  Capture& c = *capture_;
  using Seconds = std::chrono::duration<double>;
  std::vector<at::Tensor> picked;
  picked.reserve(static_cast<size_t>(std::min(count, part)));
  std::unique_lock lock(c.mutex);
  // Latest frames win: frames queued beyond what this read takes are older than a block, from a
  // generator behind the camera; they are dropped (counted) rather than conditioning late.
  while (static_cast<int64_t>(c.queue.size()) > count) {
    c.queue.pop_front();
    ++c.stats.dropped;
  }
  for (int64_t i = 0; i < count; ++i) {
    const double wait = c.last_given.defined() ? c.options.stall_s : c.options.first_frame_s;
    if (i == 0 || !hold)
      c.arrived.wait_for(lock, Seconds(wait), [&] { return !c.queue.empty() || c.ended; });
    if (!c.queue.empty()) {
      c.last_given = c.queue.front();
      c.queue.pop_front();
    } else if (!c.last_given.defined()) {
      throw IoError(c.ended && !c.stats.error.empty()
                        ? c.stats.error
                        : fmt::format("{} gave no frame in {} s", c.name, wait));
    } else {
      // Stalled or ended (or, holding, not filmed yet): the picture held rather than the stream
      // stopped.
      ++c.stats.repeated;
    }
    picked.push_back(c.last_given);
    ++c.stats.handed_out;
    if (static_cast<int64_t>(picked.size()) == part || i + 1 == count) {
      // Handed out without the lock: the capture goes on while the part is used (encoded).
      lock.unlock();
      part_read(rgb_to_signed(at::stack(picked)));
      picked.clear();
      lock.lock();
    }
  }
}

bool LiveVideoSource::has_frames(int64_t count) const {
  std::lock_guard lock(capture_->mutex);
  return static_cast<int64_t>(capture_->queue.size()) >= count;
}

LiveVideoSource::Stats LiveVideoSource::stats() const {
  std::lock_guard lock(capture_->mutex);
  return capture_->stats;
}

VaceFrameSource::Counts LiveVideoSource::counts() const {
  const Capture& c = *capture_;
  std::lock_guard lock(c.mutex);  // the capture thread updates both under it
  const Stats& s = c.stats;
  return {s.dropped, s.repeated, s.error, s.interrupted, c.cover->framing()};
}

}  // namespace longlive
