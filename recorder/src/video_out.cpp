// VideoOutput: a drop-oldest frame queue in front of one output thread, writing either through
// the recorder's encoder/muxer (VideoWriter) to a URL or raw I420 frames to a V4L2 loopback
// device.
#include "longlive/video_out.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/videodev2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

extern "C" {
#include <libswscale/swscale.h>
}

#include "longlive/error.h"
#include "longlive/log.h"
#include "video_writer.h"

namespace longlive {

struct VideoOutput::Sink {
  virtual ~Sink() = default;
  virtual void write(const uint8_t* rgba, int stride, int64_t pts) = 0;
  virtual void finish() = 0;   // throws IoError
  virtual void abandon() = 0;  // never throws
  virtual int64_t bytes() const = 0;
  virtual std::string codec() const = 0;
};

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

class StreamSink final : public VideoOutput::Sink {
 public:
  explicit StreamSink(detail::EncoderConfig config) : writer_(std::move(config)) {}
  void write(const uint8_t* rgba, int stride, int64_t pts) override {
    writer_.write_rgba(rgba, stride, pts);
  }
  void finish() override { writer_.finish(); }
  void abandon() override { writer_.abandon(); }
  int64_t bytes() const override { return writer_.bytes_written(); }
  std::string codec() const override { return writer_.codec_name(); }

 private:
  detail::VideoWriter writer_;
};

std::string load_module_hint(const std::string& device) {
  std::string number = device;
  const auto digits = device.find_last_not_of("0123456789");
  number = digits == std::string::npos ? "" : device.substr(digits + 1);
  return fmt::format(
      "load the v4l2loopback module first (Debian: sudo apt install v4l2loopback-dkms; then sudo "
      "modprobe v4l2loopback devices=1 video_nr={} card_label=\"LongLive Studio\" "
      "exclusive_caps=1)",
      number.empty() ? "10" : number);
}

// Raw I420 frames written to a V4L2 output device (v4l2loopback): every app that lists cameras
// sees the device's card label. A FIFO is accepted too (no format to set), for tests.
class V4l2Sink final : public VideoOutput::Sink {
 public:
  V4l2Sink(const VirtualCameraOptions& o) : device_(o.device), width_(o.width), height_(o.height) {
    struct stat st {};
    if (::stat(device_.c_str(), &st) != 0) {
      const int err = errno;
      if (err == ENOENT)
        throw IoError(fmt::format("virtual camera '{}': no such device; {}", device_,
                                  load_module_hint(device_)));
      throw IoError(fmt::format("virtual camera '{}': {}", device_, std::strerror(err)));
    }
    const bool fifo = S_ISFIFO(st.st_mode);
    if (!fifo && !S_ISCHR(st.st_mode))
      throw ConfigError(fmt::format(
          "virtual camera '{}': not a device (give a v4l2loopback device such as /dev/video10)",
          device_));
    // O_RDWR: also opens a FIFO without waiting for its reader.
    fd_ = ::open(device_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) {
      const int err = errno;
      throw IoError(fmt::format(
          "virtual camera '{}': cannot open: {}{}", device_, std::strerror(err),
          err == EACCES ? " (add yourself to the 'video' group, then log in again)" : ""));
    }
    if (!fifo) {
      try {
        set_format();
      } catch (...) {
        ::close(fd_);
        throw;
      }
    }
    i420_.resize(static_cast<size_t>(width_) * height_ * 3 / 2);
    sws_ = sws_getContext(width_, height_, AV_PIX_FMT_RGBA, width_, height_, AV_PIX_FMT_YUV420P,
                          SWS_BILINEAR, nullptr, nullptr, nullptr);
    const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
    sws_setColorspaceDetails(sws_, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16);
  }
  ~V4l2Sink() override { abandon(); }

  void write(const uint8_t* rgba, int stride, int64_t) override {
    uint8_t* planes[3] = {i420_.data(), i420_.data() + static_cast<size_t>(width_) * height_,
                          i420_.data() + static_cast<size_t>(width_) * height_ * 5 / 4};
    const int strides[3] = {width_, width_ / 2, width_ / 2};
    const uint8_t* src[1] = {rgba};
    const int src_stride[1] = {stride};
    sws_scale(sws_, src, src_stride, 0, height_, planes, strides);
    size_t done = 0;
    while (done < i420_.size()) {
      const ssize_t n = ::write(fd_, i420_.data() + done, i420_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw IoError(
            fmt::format("virtual camera '{}': write failed: {}", device_, std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
    bytes_ += static_cast<int64_t>(done);
  }
  void finish() override { abandon(); }
  void abandon() override {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    sws_freeContext(sws_);
    sws_ = nullptr;
  }
  int64_t bytes() const override { return bytes_; }
  std::string codec() const override { return "rawvideo (I420)"; }

 private:
  void set_format() {
    v4l2_capability cap{};
    if (::ioctl(fd_, VIDIOC_QUERYCAP, &cap) != 0)
      throw ConfigError(fmt::format("virtual camera '{}': not a V4L2 device ({}); {}", device_,
                                    std::strerror(errno), load_module_hint(device_)));
    const uint32_t caps =
        cap.capabilities & V4L2_CAP_DEVICE_CAPS ? cap.device_caps : cap.capabilities;
    if (!(caps & V4L2_CAP_VIDEO_OUTPUT))
      throw ConfigError(
          fmt::format("virtual camera '{}' ({}) is a capture device, not a v4l2loopback output; {}",
                      device_, reinterpret_cast<const char*>(cap.card), load_module_hint(device_)));
    v4l2_format format{};
    format.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
    format.fmt.pix.width = static_cast<uint32_t>(width_);
    format.fmt.pix.height = static_cast<uint32_t>(height_);
    format.fmt.pix.pixelformat = V4L2_PIX_FMT_YUV420;
    format.fmt.pix.field = V4L2_FIELD_NONE;
    format.fmt.pix.bytesperline = static_cast<uint32_t>(width_);
    format.fmt.pix.sizeimage = static_cast<uint32_t>(width_ * height_ * 3 / 2);
    format.fmt.pix.colorspace = V4L2_COLORSPACE_REC709;
    if (::ioctl(fd_, VIDIOC_S_FMT, &format) != 0)
      throw IoError(fmt::format(
          "virtual camera '{}': cannot set {}x{} I420 ({}); is another program writing to it?",
          device_, width_, height_, std::strerror(errno)));
  }

  std::string device_;
  int width_, height_;
  int fd_ = -1;
  SwsContext* sws_ = nullptr;
  std::vector<uint8_t> i420_;
  int64_t bytes_ = 0;
};

void check_size(const std::string& target, int width, int height) {
  if (width <= 0 || height <= 0 || width % 2 || height % 2)
    throw ConfigError(fmt::format("video out '{}': frame size {}x{} must be positive and even",
                                  target, width, height));
}

}  // namespace

std::string stream_container_for(const std::string& url) {
  return starts_with(url, "rtmp") ? "flv" : "mpegts";
}

struct VideoOutput::Impl {
  std::unique_ptr<Sink> sink_;
  std::string target_;
  int width_ = 0, height_ = 0;
  size_t queue_limit_ = 1;
  std::string codec_;

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::deque<std::pair<std::vector<uint8_t>, int64_t>> queue_;  // RGBA rows, pts
  std::vector<std::vector<uint8_t>> free_buffers_;
  VideoOutputStats stats_;
  std::optional<std::string> error_;
  bool closing_ = false;
  bool closed_ = false;
  std::thread worker_;

  void run() {
    for (;;) {
      std::pair<std::vector<uint8_t>, int64_t> frame;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return closing_ || !queue_.empty(); });
        if (queue_.empty()) break;  // closing and drained
        frame = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        sink_->write(frame.first.data(), width_ * 4, frame.second);
      } catch (const std::exception& e) {
        log::error("video out: {}", e.what());
        std::lock_guard lock(mutex_);
        error_ = e.what();
        stats_.frames_dropped += static_cast<int64_t>(queue_.size()) + 1;
        queue_.clear();
        sink_->abandon();
        return;
      }
      std::lock_guard lock(mutex_);
      ++stats_.frames_sent;
      stats_.bytes_sent = sink_->bytes();
      free_buffers_.push_back(std::move(frame.first));
    }
    try {
      sink_->finish();
      std::lock_guard lock(mutex_);
      stats_.bytes_sent = std::max(stats_.bytes_sent, sink_->bytes());
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex_);
      error_ = e.what();
      sink_->abandon();
    }
  }
};

VideoOutput::VideoOutput(std::unique_ptr<Sink> sink, std::string target, int width, int height,
                         int queue_frames)
    : impl_(std::make_unique<Impl>()) {
  impl_->codec_ = sink->codec();
  impl_->sink_ = std::move(sink);
  impl_->target_ = std::move(target);
  impl_->width_ = width;
  impl_->height_ = height;
  impl_->queue_limit_ = static_cast<size_t>(std::max(queue_frames, 1));
  impl_->worker_ = std::thread([impl = impl_.get()] { impl->run(); });
}

std::unique_ptr<VideoOutput> VideoOutput::stream(StreamOutputOptions o) {
  check_size(o.url, o.width, o.height);
  if (o.url.empty()) throw ConfigError("video out: give a stream URL (rtmp://, srt://, udp://)");
  detail::EncoderConfig config;
  config.url = o.url;
  config.container = o.container.empty() ? stream_container_for(o.url) : o.container;
  config.width = o.width;
  config.height = o.height;
  config.fps = o.fps;
  config.codec = o.codec;
  config.gop_frames = o.gop_frames;
  config.bitrate_kbps = std::max(o.bitrate_kbps, 1);
  config.io_timeout_ms = o.io_timeout_ms;
  config.threads = 1;  // 16 fps at 480p is a fraction of a core; the generator keeps the rest
  config.metadata["title"] = "LongLive Studio";
  auto sink = std::make_unique<StreamSink>(std::move(config));
  return std::unique_ptr<VideoOutput>(
      new VideoOutput(std::move(sink), o.url, o.width, o.height, o.queue_frames));
}

std::unique_ptr<VideoOutput> VideoOutput::virtual_camera(VirtualCameraOptions o) {
  check_size(o.device, o.width, o.height);
  auto sink = std::make_unique<V4l2Sink>(o);
  return std::unique_ptr<VideoOutput>(
      new VideoOutput(std::move(sink), o.device, o.width, o.height, o.queue_frames));
}

VideoOutput::~VideoOutput() {
  try {
    close();
  } catch (const std::exception& e) {
    log::warn("video out '{}': {}", impl_->target_, e.what());
  }
}

bool VideoOutput::push(const uint8_t* rgba, int stride) {
  Impl& s = *impl_;
  const size_t row = static_cast<size_t>(s.width_) * 4;
  std::vector<uint8_t> buffer;
  std::unique_lock lock(s.mutex_);
  const int64_t pts = s.stats_.frames_pushed++;
  if (s.error_ || s.closing_) {
    ++s.stats_.frames_dropped;
    return false;
  }
  bool dropped = false;
  if (s.queue_.size() >= s.queue_limit_) {  // the oldest goes: the output stays live
    s.free_buffers_.push_back(std::move(s.queue_.front().first));
    s.queue_.pop_front();
    ++s.stats_.frames_dropped;
    dropped = true;
  }
  if (!s.free_buffers_.empty()) {
    buffer = std::move(s.free_buffers_.back());
    s.free_buffers_.pop_back();
  }
  lock.unlock();  // copy outside the lock
  buffer.resize(row * s.height_);
  for (int y = 0; y < s.height_; ++y)
    std::memcpy(buffer.data() + row * y, rgba + static_cast<ptrdiff_t>(stride) * y, row);
  lock.lock();
  s.queue_.emplace_back(std::move(buffer), pts);
  s.changed_.notify_all();
  return !dropped;
}

bool VideoOutput::push(const at::Tensor& rgba) {
  if (rgba.dim() != 3 || rgba.size(0) != impl_->height_ || rgba.size(1) != impl_->width_ ||
      rgba.size(2) != 4 || rgba.scalar_type() != at::kByte)
    throw ConfigError(fmt::format("video out '{}': expected a [{}, {}, 4] uint8 frame, got {}",
                                  impl_->target_, impl_->height_, impl_->width_,
                                  c10::str(rgba.sizes())));
  const at::Tensor host = rgba.to(at::kCPU).contiguous();
  return push(host.data_ptr<uint8_t>(), impl_->width_ * 4);
}

void VideoOutput::close() {
  {
    std::lock_guard lock(impl_->mutex_);
    if (impl_->closed_) return;
    impl_->closed_ = true;
    impl_->closing_ = true;
    impl_->changed_.notify_all();
  }
  if (impl_->worker_.joinable()) impl_->worker_.join();
  std::lock_guard lock(impl_->mutex_);
  if (impl_->error_) throw IoError(*impl_->error_);  // names the URL or device already
}

VideoOutputStats VideoOutput::stats() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->stats_;
}

std::optional<std::string> VideoOutput::error() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->error_;
}

const std::string& VideoOutput::target() const { return impl_->target_; }
std::string VideoOutput::codec_name() const { return impl_->codec_; }

}  // namespace longlive
