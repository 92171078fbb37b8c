// VACE control inputs through libavformat/libavcodec/libswscale (see longlive/control_input.h).
#include "longlive/control_input.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include "cover_scale.h"
#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {
namespace {

// What decode_frames saw: the stream's nominal frame rate (0 when unknown) and what the crop
// cost (CoverScaler::framing, of the last frame).
struct Decoded {
  double nominal_fps = 0;
  std::string framing;
};

// Decodes every frame of the best video stream, scaled to cover height x width and
// center-cropped: sink(rgb [H, W, 3] uint8, presentation time in seconds).
Decoded decode_frames(const std::filesystem::path& path, int height, int width,
                      const std::function<void(const at::Tensor&, double)>& sink) {
  if (height <= 0 || width <= 0)
    throw ConfigError(fmt::format("control input '{}': size {}x{} must be positive", path.string(),
                                  width, height));
  struct Resources {
    AVFormatContext* format = nullptr;
    AVCodecContext* codec = nullptr;
    AVFrame* frame = av_frame_alloc();
    AVPacket* packet = av_packet_alloc();
    ~Resources() {
      av_frame_free(&frame);
      av_packet_free(&packet);
      avcodec_free_context(&codec);
      avformat_close_input(&format);
    }
  } r;
  if (const int rc = avformat_open_input(&r.format, path.c_str(), nullptr, nullptr); rc < 0)
    throw IoError(
        fmt::format("cannot open control input '{}': {}", path.string(), av_error_text(rc)));
  const std::string source = "'" + path.string() + "'";
  const VideoDecoder video = open_video_decoder(r.format, source);
  r.codec = video.codec;
  const int index = video.stream_index;
  AVStream* stream = r.format->streams[index];
  const double nominal = stream->avg_frame_rate.num > 0 ? av_q2d(stream->avg_frame_rate) : 0.0;

  int64_t decoded = 0;
  CoverScaler cover(source, height, width);
  auto drain = [&] {
    while (avcodec_receive_frame(r.codec, r.frame) >= 0) {
      const AVFrame* f = r.frame;
      const at::Tensor crop = cover(*f);
      const int64_t pts = f->best_effort_timestamp;
      const double t = pts == AV_NOPTS_VALUE
                           ? (nominal > 0 ? static_cast<double>(decoded) / nominal : 0.0)
                           : pts * av_q2d(stream->time_base);
      sink(crop, t);
      ++decoded;
    }
  };
  while (av_read_frame(r.format, r.packet) >= 0) {
    if (r.packet->stream_index == index) {
      avcodec_send_packet(r.codec, r.packet);
      drain();
    }
    av_packet_unref(r.packet);
  }
  avcodec_send_packet(r.codec, nullptr);
  drain();
  if (decoded == 0) throw FormatError(fmt::format("'{}': no decodable frame", path.string()));
  return {nominal, cover.framing()};
}

}  // namespace

VideoFileSource::VideoFileSource(const std::filesystem::path& path, int height, int width,
                                 double fps) {
  if (!(fps > 0)) throw ConfigError(fmt::format("control video fps {} must be positive", fps));
  std::vector<at::Tensor> kept;
  std::vector<double> times;
  // Resample by presentation time: output frame i shows the last source frame at or before
  // first + i / fps. Decoded frames are kept only while they can still be shown.
  at::Tensor previous;
  double previous_t = 0, first_t = 0;
  int64_t out = 0;
  // Frames are kept in memory (uint8 at the session's size), and a timestamp jump would repeat
  // one frame across the whole gap: a clip past kMaxControlVideoSeconds is refused, not loaded.
  const auto max_frames = static_cast<int64_t>(std::ceil(kMaxControlVideoSeconds * fps));
  auto emit_until = [&](double t) {
    while (previous.defined() && first_t + static_cast<double>(out) / fps < t - 1e-6) {
      if (out >= max_frames)
        throw FormatError(fmt::format(
            "'{}': the control video runs past {} s (a frame at {:.1f} s after the first); "
            "trim it to {} s or less",
            path.string(), kMaxControlVideoSeconds, t - first_t, kMaxControlVideoSeconds));
      kept.push_back(previous);
      ++out;
    }
  };
  const Decoded decoded = decode_frames(path, height, width, [&](const at::Tensor& rgb, double t) {
    if (!previous.defined()) first_t = t;
    emit_until(t);
    times.push_back(t);
    previous = rgb;
    previous_t = t;
  });
  source_fps_ = decoded.nominal_fps;
  framing_ = decoded.framing;
  // The last frame lasts one source frame interval.
  double interval = source_fps_ > 0 ? 1.0 / source_fps_ : 1.0 / fps;
  if (times.size() > 1) interval = (times.back() - times.front()) / (times.size() - 1);
  emit_until(previous_t + interval);
  if (kept.empty()) kept.push_back(previous);
  frames_ = at::stack(kept);
}

VaceFrameSource::Counts VideoFileSource::counts() const {
  Counts counts;
  counts.framing = framing_;
  return counts;
}

at::Tensor VideoFileSource::next_frames(int64_t count) {
  std::vector<at::Tensor> picked;
  picked.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) picked.push_back(frames_[(next_++) % frames_.size(0)]);
  return rgb_to_signed(at::stack(picked));
}

at::Tensor load_control_image(const std::filesystem::path& path, int height, int width) {
  at::Tensor first;
  decode_frames(path, height, width, [&](const at::Tensor& rgb, double) {
    if (!first.defined()) first = rgb;
  });
  return rgb_to_signed(first).unsqueeze(0);
}

at::Tensor load_mask_image(const std::filesystem::path& path, int height, int width) {
  const at::Tensor rgb = load_control_image(path, height, width)[0].add(1.0).div(2.0);
  // BT.601 luma; above half is "generate".
  const at::Tensor luma = rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114;
  return (luma > 0.5).to(at::kFloat);
}

std::string av_error_text(int rc) {
  char reason[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(rc, reason, sizeof reason);
  return reason;
}

VideoDecoder open_video_decoder(AVFormatContext* format, const std::string& source) {
  if (avformat_find_stream_info(format, nullptr) < 0)
    throw FormatError(fmt::format("{}: no readable streams", source));
  const int index = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (index < 0) throw FormatError(fmt::format("{}: no video stream", source));
  const AVStream* stream = format->streams[index];
  const AVCodec* decoder = avcodec_find_decoder(stream->codecpar->codec_id);
  if (!decoder)
    throw FormatError(
        fmt::format("{}: no decoder for {}", source, avcodec_get_name(stream->codecpar->codec_id)));
  AVCodecContext* codec = avcodec_alloc_context3(decoder);
  avcodec_parameters_to_context(codec, stream->codecpar);
  if (avcodec_open2(codec, decoder, nullptr) < 0) {
    avcodec_free_context(&codec);
    throw FormatError(fmt::format("{}: cannot open the {} decoder", source, decoder->name));
  }
  return {index, codec};
}

CoverScaler::CoverScaler(std::string source, int height, int width)
    : source_(std::move(source)), height_(height), width_(width) {}

CoverScaler::~CoverScaler() { sws_freeContext(sws_); }

at::Tensor CoverScaler::operator()(const AVFrame& f) {
  const double scale =
      std::max(static_cast<double>(height_) / f.height, static_cast<double>(width_) / f.width);
  const int sh = std::max(height_, static_cast<int>(std::lround(f.height * scale)));
  const int sw = std::max(width_, static_cast<int>(std::lround(f.width * scale)));
  // Another aspect ratio than the session's loses a band of the picture: say so, once per size.
  const double cut = 1.0 - static_cast<double>(height_) * width_ / (static_cast<double>(sh) * sw);
  if (f.height != said_height_ || f.width != said_width_) {
    said_height_ = f.height;
    said_width_ = f.width;
    framing_.clear();
    if (cut > 0.01) {
      const std::string unused =
          fmt::format("{:.0f} % of its {} not used", cut * 100.0, sw > width_ ? "width" : "height");
      framing_ =
          fmt::format("{}x{} cropped to {}x{}: {}", f.width, f.height, width_, height_, unused);
      log::warn(
          "{}: {}x{} has another aspect ratio than the session's {}x{}: scaled to cover it and "
          "centre-cropped, {}",
          source_, f.width, f.height, width_, height_, unused);
    }
  }
  sws_ = sws_getCachedContext(sws_, f.width, f.height, static_cast<AVPixelFormat>(f.format), sw, sh,
                              AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr);
  if (!sws_)
    throw FormatError(fmt::format("{}: cannot convert pixel format {}", source_,
                                  av_get_pix_fmt_name(static_cast<AVPixelFormat>(f.format))));
  at::Tensor rgb = at::empty({sh, sw, 3}, at::kByte);
  uint8_t* dst[1] = {rgb.data_ptr<uint8_t>()};
  const int stride[1] = {sw * 3};
  sws_scale(sws_, f.data, f.linesize, 0, f.height, dst, stride);
  return rgb.narrow(0, (sh - height_) / 2, height_)
      .narrow(1, (sw - width_) / 2, width_)
      .contiguous();
}

at::Tensor rgb_to_signed(const at::Tensor& rgb_hw3) {
  return rgb_hw3.to(at::kFloat).div(127.5).sub(1.0).movedim(-1, -3).contiguous();
}

}  // namespace longlive
