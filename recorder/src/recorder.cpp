#include "longlive/recorder.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {
namespace {

std::string av_error(int code) {
  char buffer[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buffer, sizeof buffer);
  return buffer;
}

}  // namespace

struct Recorder::Impl {
  RecorderOptions options;
  AVFormatContext* format = nullptr;
  AVCodecContext* codec = nullptr;
  AVStream* stream = nullptr;
  SwsContext* sws = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  std::string codec_name;

  std::mutex mutex;
  std::condition_variable changed;
  std::deque<at::Tensor> queue;
  bool closing = false;
  bool finished = false;
  std::optional<std::string> error;
  int64_t frames_written = 0;
  std::thread worker;

  ~Impl() {
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&codec);
    if (format) {
      if (format->pb) avio_closep(&format->pb);
      avformat_free_context(format);
    }
  }

  [[noreturn]] void fail(const std::string& what, int code) const {
    throw IoError(
        fmt::format("recording to '{}': {}: {}", options.path.string(), what, av_error(code)));
  }

  void open() {
    if (options.width <= 0 || options.height <= 0 || options.width % 2 || options.height % 2) {
      throw ConfigError(
          fmt::format("recording to '{}': frame size {}x{} must be positive and even (H.264 4:2:0)",
                      options.path.string(), options.width, options.height));
    }
    const auto parent = options.path.parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent))
      throw IoError(fmt::format("recording to '{}': folder '{}' does not exist",
                                options.path.string(), parent.string()));

    const AVCodec* encoder = nullptr;
    if (options.codec == "auto" || options.codec == "h264_nvenc")
      encoder = avcodec_find_encoder_by_name("h264_nvenc");
    if (!encoder && options.codec == "h264_nvenc")
      throw ConfigError("recording: h264_nvenc is not available in this FFmpeg build");
    // NVENC needs a GPU: fall back when opening it fails.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!encoder) encoder = avcodec_find_encoder_by_name("libx264");
      if (!encoder)
        throw ConfigError(
            "recording: neither h264_nvenc nor libx264 is available in this FFmpeg build");
      codec = avcodec_alloc_context3(encoder);
      codec->width = options.width;
      codec->height = options.height;
      codec->time_base = AVRational{1, options.fps};
      codec->framerate = AVRational{options.fps, 1};
      codec->pix_fmt = AV_PIX_FMT_YUV420P;
      codec->gop_size = options.gop_frames;
      codec->max_b_frames = 0;  // frames leave the encoder in order: fragments close promptly
      codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
      AVDictionary* opts = nullptr;
      if (std::string(encoder->name) == "libx264") {
        av_dict_set(&opts, "crf", std::to_string(options.crf).c_str(), 0);
        av_dict_set(&opts, "preset", "veryfast", 0);
        // No lookahead or frame-thread delay: each frame becomes a packet at once, so fragments
        // (and a crash-safe file) keep up with the live stream.
        av_dict_set(&opts, "tune", "zerolatency", 0);
      } else {
        av_dict_set(&opts, "cq", std::to_string(options.crf).c_str(), 0);
      }
      const int rc = avcodec_open2(codec, encoder, &opts);
      av_dict_free(&opts);
      if (rc >= 0) break;
      avcodec_free_context(&codec);
      if (std::string(encoder->name) == "libx264" || options.codec != "auto")
        fail("cannot open the encoder", rc);
      log::info("h264_nvenc unavailable ({}); recording with libx264", av_error(rc));
      encoder = nullptr;
    }
    codec_name = encoder->name;
    av_log_set_level(AV_LOG_WARNING);  // keep encoder statistics out of the user's terminal

    int rc = avformat_alloc_output_context2(&format, nullptr, "mp4", options.path.c_str());
    if (rc < 0) fail("cannot create the MP4 muxer", rc);
    stream = avformat_new_stream(format, nullptr);
    stream->time_base = codec->time_base;
    avcodec_parameters_from_context(stream->codecpar, codec);
    for (const auto& [k, v] : options.metadata)
      av_dict_set(&format->metadata, k.c_str(), v.c_str(), 0);
    rc = avio_open(&format->pb, options.path.c_str(), AVIO_FLAG_WRITE);
    if (rc < 0) fail("cannot open the file for writing", rc);
    format->flags |= AVFMT_FLAG_FLUSH_PACKETS;  // fragments reach the disk as they are written
    AVDictionary* mux = nullptr;
    av_dict_set(&mux, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
    rc = avformat_write_header(format, &mux);
    av_dict_free(&mux);
    if (rc < 0) fail("cannot write the MP4 header", rc);

    frame = av_frame_alloc();
    frame->format = codec->pix_fmt;
    frame->width = codec->width;
    frame->height = codec->height;
    if ((rc = av_frame_get_buffer(frame, 0)) < 0) fail("cannot allocate a frame", rc);
    packet = av_packet_alloc();
    sws = sws_getContext(options.width, options.height, AV_PIX_FMT_RGBA, options.width,
                         options.height, AV_PIX_FMT_YUV420P,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr,
                         nullptr);
  }

  // Sends one frame (or the flush signal) and writes every packet that comes out.
  void encode(AVFrame* input) {
    int rc = avcodec_send_frame(codec, input);
    if (rc < 0) fail("encoder rejected a frame", rc);
    for (;;) {
      rc = avcodec_receive_packet(codec, packet);
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      if (rc < 0) fail("encoding failed", rc);
      av_packet_rescale_ts(packet, codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      rc = av_interleaved_write_frame(format, packet);
      if (rc < 0) fail("writing failed (disk full?)", rc);
      if (format->pb->error < 0) fail("writing failed (disk full?)", format->pb->error);
    }
  }

  void encode_rgba(const at::Tensor& rgba) {
    int rc = av_frame_make_writable(frame);
    if (rc < 0) fail("frame buffer busy", rc);
    const uint8_t* src[1] = {rgba.data_ptr<uint8_t>()};
    const int stride[1] = {static_cast<int>(rgba.stride(0))};
    sws_scale(sws, src, stride, 0, options.height, frame->data, frame->linesize);
    frame->pts = frames_written;
    encode(frame);
    ++frames_written;
  }

  void run() {
    for (;;) {
      at::Tensor next;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return closing || !queue.empty(); });
        if (queue.empty()) break;  // closing and drained
        next = queue.front();
      }
      try {
        if (!error) encode_rgba(next);
      } catch (const Error& e) {
        std::lock_guard lock(mutex);
        error = e.what();
      }
      {
        std::lock_guard lock(mutex);
        queue.pop_front();
      }
      changed.notify_all();
    }
    try {
      if (!error) {
        encode(nullptr);  // flush the encoder
        const int rc = av_write_trailer(format);
        if (rc < 0) fail("cannot finish the file", rc);
        avio_flush(format->pb);
        if (format->pb->error < 0) fail("writing failed (disk full?)", format->pb->error);
      }
    } catch (const Error& e) {
      std::lock_guard lock(mutex);
      error = e.what();
    }
  }
};

Recorder::Recorder(RecorderOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->open();
  impl_->worker = std::thread([impl = impl_.get()] { impl->run(); });
}

Recorder::~Recorder() {
  try {
    finish();
  } catch (const std::exception& e) {
    log::error("{}", e.what());
  }
}

void Recorder::push(const at::Tensor& rgba) {
  const auto& o = impl_->options;
  if (rgba.dim() != 3 || rgba.size(0) != o.height || rgba.size(1) != o.width || rgba.size(2) != 4 ||
      rgba.scalar_type() != at::kByte) {
    throw ConfigError(fmt::format("recording to '{}': frame must be [{}, {}, 4] uint8, got [{}] {}",
                                  o.path.string(), o.height, o.width, fmt::join(rgba.sizes(), ", "),
                                  c10::toString(rgba.scalar_type())));
  }
  at::Tensor frame = rgba.to(at::kCPU).contiguous();
  if (frame.data_ptr() == rgba.data_ptr())
    frame = frame.clone();  // the caller may reuse its buffer
  std::unique_lock lock(impl_->mutex);
  if (impl_->error) throw IoError(*impl_->error);
  if (impl_->closing)
    throw Error(fmt::format("recording to '{}' already finished", o.path.string()));
  impl_->changed.wait(
      lock, [&] { return impl_->error || static_cast<int>(impl_->queue.size()) < o.queue_frames; });
  if (impl_->error) throw IoError(*impl_->error);
  impl_->queue.push_back(std::move(frame));
  impl_->changed.notify_all();
}

void Recorder::finish() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->finished) {
      if (impl_->error) throw IoError(*impl_->error);
      return;
    }
    impl_->closing = true;
    impl_->finished = true;
  }
  impl_->changed.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
  if (impl_->format && impl_->format->pb) avio_closep(&impl_->format->pb);
  if (impl_->error) throw IoError(*impl_->error);
}

int64_t Recorder::frames_written() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->frames_written;
}

int64_t Recorder::bytes_written() const {
  std::error_code ec;
  const auto size = std::filesystem::file_size(impl_->options.path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

std::string Recorder::codec_name() const { return impl_->codec_name; }

std::optional<std::string> Recorder::error() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->error;
}

}  // namespace longlive
