// Recorder: a bounded frame queue in front of one encoder thread, plus the session facts
// (prompts, seed, preset, model) written as tags, chapters and a sidecar JSON.
#include "longlive/recorder.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "video_writer.h"

namespace longlive {
namespace {

struct QueuedFrame {
  std::vector<uint8_t> pixels;  // RGBA rows (width * 4 bytes each) or packed I420
  bool i420 = false;
  int64_t index = 0;
};

std::string session_comment(const RecorderOptions& o) {
  std::string text = "LongLive Studio";
  if (!o.model.empty()) text += fmt::format(", model {}", o.model);
  if (!o.preset.empty()) text += fmt::format(", preset {}", o.preset);
  if (o.seed) text += fmt::format(", seed {}", *o.seed);
  return text;
}

}  // namespace

struct Recorder::Impl {
  RecorderOptions options_;
  std::unique_ptr<detail::VideoWriter> writer_;
  std::string codec_name_;

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::deque<QueuedFrame> queue_;
  std::vector<std::vector<uint8_t>> free_buffers_;  // reused frame buffers
  std::vector<PromptMark> prompts_;                 // frame = caller's frame index
  std::optional<int64_t> first_index_;
  std::optional<int64_t> last_index_;
  bool closing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  bool complete_ = false;  // the file was closed cleanly
  std::optional<std::string> error_;
  int64_t frames_written_ = 0;
  double encode_ms_total_ = 0, encode_ms_max_ = 0;  // guarded by mutex_, like the counts
  double push_wait_ms_total_ = 0, push_wait_ms_max_ = 0;
  std::thread worker_;

  size_t frame_bytes() const { return static_cast<size_t>(options_.width) * options_.height * 4; }

  void set_error(const std::string& message) {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = message;
    changed_.notify_all();
  }

  std::filesystem::path sidecar_path() const {
    return std::filesystem::path(options_.path.string() + ".json");
  }

  // Caller holds mutex_.
  nlohmann::json sidecar_json() const {
    const int64_t base = first_index_.value_or(prompts_.empty() ? 0 : prompts_.front().frame);
    nlohmann::json prompts = nlohmann::json::array();
    for (const auto& p : prompts_) {
      const int64_t frame = p.frame - base;
      prompts.push_back({{"frame", frame},
                         {"start_s", static_cast<double>(frame) / options_.fps},
                         {"text", p.text}});
    }
    nlohmann::json j = {{"file", options_.path.filename().string()},
                        {"fps", options_.fps},
                        {"width", options_.width},
                        {"height", options_.height},
                        {"codec", codec_name_},
                        {"model", options_.model},
                        {"preset", options_.preset},
                        {"seed", options_.seed ? nlohmann::json(*options_.seed) : nlohmann::json()},
                        {"prompts", prompts},
                        {"frames", frames_written_},
                        {"complete", complete_}};
    return j;
  }

  // Rewrites the sidecar atomically (temp file + rename), so a crash leaves the last version.
  // Caller holds mutex_.
  void write_sidecar() {
    if (!options_.write_sidecar) return;
    const auto path = sidecar_path();
    const auto temp = std::filesystem::path(path.string() + ".tmp");
    {
      std::ofstream out(temp, std::ios::trunc);
      out << sidecar_json().dump(2) << '\n';
      out.flush();
      if (!out) {
        std::error_code ec;
        std::filesystem::remove(temp, ec);
        throw IoError(
            fmt::format("recording metadata '{}': cannot write (disk full?)", path.string()));
      }
    }
    std::error_code ec;
    std::filesystem::rename(temp, path, ec);
    if (ec) throw IoError(fmt::format("recording metadata '{}': {}", path.string(), ec.message()));
  }

  std::vector<detail::ChapterSpan> chapters(int64_t end) const {
    std::vector<detail::ChapterSpan> spans;
    const int64_t base = first_index_.value_or(0);
    for (size_t i = 0; i < prompts_.size(); ++i) {
      const int64_t start = std::clamp<int64_t>(prompts_[i].frame - base, 0, end);
      const int64_t stop =
          i + 1 < prompts_.size() ? std::clamp<int64_t>(prompts_[i + 1].frame - base, 0, end) : end;
      if (stop > start) spans.push_back({start, stop, prompts_[i].text});
    }
    return spans;
  }

  // Final tags of a clean recording: the session line plus the prompts as JSON.
  std::map<std::string, std::string> final_tags() const {
    std::map<std::string, std::string> tags;
    nlohmann::json j = sidecar_json();
    j.erase("file");
    tags["description"] = j.dump();
    if (!prompts_.empty() && !options_.metadata.count("title"))
      tags["title"] = prompts_.front().text;
    return tags;
  }

  void run() {
    // Below the UI and the engine in the CPU scheduler: this thread has a queue to absorb a
    // delay, the live view has a frame deadline. On an idle machine nothing changes.
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5) != 0)
      log::debug("recorder: could not lower the encoder thread's priority");
    for (;;) {
      QueuedFrame next;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return closing_ || !queue_.empty(); });
        if (queue_.empty() || cancelled_ || error_) break;
        next = std::move(queue_.front());
        queue_.pop_front();
      }
      changed_.notify_all();  // room for the producer
      const auto encode_start = std::chrono::steady_clock::now();
      try {
        const int64_t pts = next.index - *first_index_;
        if (next.i420)
          writer_->write_i420(next.pixels.data(), pts);
        else
          writer_->write_rgba(next.pixels.data(), options_.width * 4, pts);
      } catch (const Error& e) {
        set_error(e.what());
        break;
      }
      RecorderProgress progress;
      {
        std::lock_guard lock(mutex_);
        ++frames_written_;
        const double encoded = ms_since(encode_start);
        encode_ms_total_ += encoded;
        encode_ms_max_ = std::max(encode_ms_max_, encoded);
        free_buffers_.push_back(std::move(next.pixels));
        progress = {frames_written_, static_cast<int64_t>(queue_.size()), 0};
      }
      if (options_.on_progress) {
        progress.bytes_written = file_size();
        options_.on_progress(progress);
      }
    }
    close_file();
  }

  int64_t file_size() const {
    std::error_code ec;
    const auto size = std::filesystem::file_size(options_.path, ec);
    return ec ? 0 : static_cast<int64_t>(size);
  }

  // Worker thread, after the last frame: trailer, then the faststart remux and the sidecar.
  void close_file() {
    bool remux = false;
    std::map<std::string, std::string> tags;
    std::vector<detail::ChapterSpan> spans;
    {
      std::lock_guard lock(mutex_);
      queue_.clear();  // after a cancel or an error nothing more is encoded
      if (error_) {
        writer_->abandon();
        return;
      }
    }
    try {
      writer_->finish();
    } catch (const Error& e) {
      set_error(e.what());
      return;
    }
    {
      std::lock_guard lock(mutex_);
      complete_ = true;
      remux = options_.faststart && !cancelled_ && frames_written_ > 0;
      if (remux) {
        tags = final_tags();
        spans = chapters(writer_->end_pts());
      }
    }
    if (remux) finalise(tags, spans);  // unlocked: progress() stays responsive meanwhile
    std::lock_guard lock(mutex_);
    try {
      write_sidecar();
    } catch (const Error& e) {
      if (!error_) error_ = e.what();
    }
  }

  // A failed remux keeps the (complete, fragmented) recording.
  void finalise(const std::map<std::string, std::string>& tags,
                const std::vector<detail::ChapterSpan>& spans) {
    const auto temp = std::filesystem::path(options_.path.string() + ".faststart.mp4");
    try {
      detail::remux_faststart(options_.path, temp, tags, spans, options_.fps);
      std::error_code ec;
      std::filesystem::rename(temp, options_.path, ec);
      if (ec) throw IoError(fmt::format("renaming '{}': {}", temp.string(), ec.message()));
    } catch (const Error& e) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(temp, ec)) std::filesystem::remove(temp, ec);
      log::warn("{}; '{}' stays a fragmented MP4 (complete and playable)", e.what(),
                options_.path.string());
    }
  }

  // Queues one frame: RGBA rows `stride` bytes apart, or (i420) packed planes, copied.
  void enqueue(const uint8_t* pixels, int stride, int64_t index, bool i420 = false) {
    std::unique_lock lock(mutex_);
    if (error_) throw IoError(*error_);
    if (closing_)
      throw Error(fmt::format("recording to '{}' already finished", options_.path.string()));
    if (last_index_ && index <= *last_index_) {
      throw ConfigError(fmt::format("recording to '{}': frame index {} after frame {}",
                                    options_.path.string(), index, *last_index_));
    }
    const auto wait_start = std::chrono::steady_clock::now();
    changed_.wait(lock, [&] {
      return error_ || closing_ || static_cast<int>(queue_.size()) < options_.queue_frames;
    });
    const double waited = ms_since(wait_start);
    push_wait_ms_total_ += waited;
    push_wait_ms_max_ = std::max(push_wait_ms_max_, waited);
    if (error_) throw IoError(*error_);
    if (closing_)
      throw Error(fmt::format("recording to '{}' already finished", options_.path.string()));
    if (last_index_ && index != *last_index_ + 1)
      log::warn("recording to '{}': frames {}..{} missing; the previous frame is held",
                options_.path.string(), *last_index_ + 1, index - 1);
    if (!first_index_) first_index_ = index;
    last_index_ = index;
    QueuedFrame frame;
    frame.index = index;
    frame.i420 = i420;
    if (!free_buffers_.empty()) {
      frame.pixels = std::move(free_buffers_.back());
      free_buffers_.pop_back();
    }
    lock.unlock();  // copy outside the lock: the encoder keeps running
    if (i420) {
      frame.pixels.assign(pixels, pixels + frame_bytes() * 3 / 8);
    } else {
      frame.pixels.resize(frame_bytes());
      const size_t row = static_cast<size_t>(options_.width) * 4;
      for (int y = 0; y < options_.height; ++y)
        std::memcpy(frame.pixels.data() + y * row, pixels + static_cast<ptrdiff_t>(y) * stride,
                    row);
    }
    lock.lock();
    queue_.push_back(std::move(frame));
    changed_.notify_all();
  }
};

Recorder::Recorder(RecorderOptions options) : impl_(std::make_unique<Impl>()) {
  auto& o = impl_->options_;
  o = std::move(options);
  if (o.queue_frames < 1) o.queue_frames = 1;
  detail::EncoderConfig config;
  config.path = o.path;
  config.width = o.width;
  config.height = o.height;
  config.fps = o.fps;
  config.crf = o.crf;
  config.codec = o.codec;
  config.gop_frames = o.gop_frames;
  config.metadata = o.metadata;
  config.threads = o.encoder_threads;
  config.zero_latency = o.zero_latency;
  if (!config.metadata.count("comment")) config.metadata["comment"] = session_comment(o);
  impl_->writer_ = std::make_unique<detail::VideoWriter>(config);
  impl_->codec_name_ = impl_->writer_->codec_name();
  {
    std::lock_guard lock(impl_->mutex_);
    impl_->write_sidecar();
  }
  log::info("recording to '{}' ({}x{} at {} fps, {})", o.path.string(), o.width, o.height, o.fps,
            impl_->codec_name_);
  impl_->worker_ = std::thread([impl = impl_.get()] { impl->run(); });
}

Recorder::~Recorder() {
  try {
    finish();
  } catch (const std::exception& e) {
    log::error("{}", e.what());
  }
}

void Recorder::push(const at::Tensor& rgba) {
  const auto& o = impl_->options_;
  if (rgba.dim() != 3 || rgba.size(0) != o.height || rgba.size(1) != o.width || rgba.size(2) != 4 ||
      rgba.scalar_type() != at::kByte) {
    std::string sizes;
    for (int64_t d = 0; d < rgba.dim(); ++d)
      sizes += (d ? ", " : "") + std::to_string(rgba.size(d));
    throw ConfigError(fmt::format("recording to '{}': frame must be [{}, {}, 4] uint8, got [{}] {}",
                                  o.path.string(), o.height, o.width, sizes,
                                  c10::toString(rgba.scalar_type())));
  }
  // CUDA frames are converted on the GPU by default, so only the 4:2:0 planes are copied over.
  const bool on_device = o.conversion == ColorConversion::tensor ||
                         (o.conversion == ColorConversion::automatic && !rgba.is_cpu());
  const at::Tensor host =
      on_device ? rgba_to_i420(rgba).to(at::kCPU).contiguous() : rgba.to(at::kCPU).contiguous();
  int64_t index = 0;
  {
    std::lock_guard lock(impl_->mutex_);
    index = impl_->last_index_ ? *impl_->last_index_ + 1 : 0;
  }
  impl_->enqueue(host.data_ptr<uint8_t>(), o.width * 4, index, on_device);
}

void Recorder::push(const uint8_t* rgba, int stride, int64_t frame_index) {
  if (!rgba || stride < impl_->options_.width * 4)
    throw ConfigError(fmt::format("recording to '{}': frame row stride {} < width * 4 = {}",
                                  impl_->options_.path.string(), stride,
                                  impl_->options_.width * 4));
  impl_->enqueue(rgba, stride, frame_index);
}

void Recorder::mark_prompt(std::string text, int64_t frame_index) {
  std::lock_guard lock(impl_->mutex_);
  auto& prompts = impl_->prompts_;
  // Marks arrive in order; a mark at the same frame replaces the previous one.
  while (!prompts.empty() && prompts.back().frame >= frame_index) prompts.pop_back();
  prompts.push_back({frame_index, std::move(text)});
  try {
    impl_->write_sidecar();
  } catch (const Error& e) {
    if (!impl_->error_) impl_->error_ = e.what();
    throw;
  }
}

void Recorder::finish() {
  {
    std::lock_guard lock(impl_->mutex_);
    if (!impl_->finished_) {
      impl_->closing_ = true;
      impl_->finished_ = true;
    }
  }
  impl_->changed_.notify_all();
  if (impl_->worker_.joinable()) impl_->worker_.join();
  std::lock_guard lock(impl_->mutex_);
  if (impl_->error_) throw IoError(*impl_->error_);
}

void Recorder::cancel() {
  {
    std::lock_guard lock(impl_->mutex_);
    impl_->cancelled_ = true;
    impl_->closing_ = true;
    impl_->finished_ = true;
  }
  impl_->changed_.notify_all();
  if (impl_->worker_.joinable()) impl_->worker_.join();
}

RecorderProgress Recorder::progress() const {
  RecorderProgress p;
  {
    std::lock_guard lock(impl_->mutex_);
    p.frames_written = impl_->frames_written_;
    p.frames_queued = static_cast<int64_t>(impl_->queue_.size());
    if (impl_->frames_written_ > 0)
      p.encode_ms_mean = impl_->encode_ms_total_ / static_cast<double>(impl_->frames_written_);
    p.encode_ms_max = impl_->encode_ms_max_;
    p.push_wait_ms_total = impl_->push_wait_ms_total_;
    p.push_wait_ms_max = impl_->push_wait_ms_max_;
  }
  p.bytes_written = impl_->file_size();
  return p;
}

int64_t Recorder::frames_written() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->frames_written_;
}

int64_t Recorder::bytes_written() const { return impl_->file_size(); }

std::string Recorder::codec_name() const { return impl_->codec_name_; }

const std::filesystem::path& Recorder::path() const { return impl_->options_.path; }

std::filesystem::path Recorder::sidecar_path() const { return impl_->sidecar_path(); }

std::optional<std::string> Recorder::error() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->error_;
}

int live_encoder_threads(unsigned cores) { return std::clamp(static_cast<int>(cores / 2), 1, 8); }

int live_encoder_threads() { return live_encoder_threads(std::thread::hardware_concurrency()); }

}  // namespace longlive
