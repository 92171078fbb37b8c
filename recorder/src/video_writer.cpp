#include "video_writer.h"

#include <algorithm>

#include <fmt/format.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive::detail {
namespace {

bool is_nvenc(const std::string& name) { return name.find("nvenc") != std::string::npos; }
bool is_hevc(const std::string& name) { return name == "libx265" || name == "hevc_nvenc"; }

// Encoders to try in order for a codec option; "auto" falls back from NVENC to x264 because
// NVENC is compiled into Debian's FFmpeg but only opens on a GPU with an encoder engine.
std::vector<std::string> candidates(const std::string& codec) {
  if (codec == "auto") return {"h264_nvenc", "libx264"};
  if (codec == "h264" || codec == "libx264") return {"libx264"};
  if (codec == "hevc" || codec == "libx265") return {"libx265"};
  if (codec == "h264_nvenc" || codec == "hevc_nvenc") return {codec};
  throw ConfigError(fmt::format(
      "recorder codec '{}' is not one of auto, libx264, libx265, h264_nvenc, hevc_nvenc", codec));
}

// An owned FFmpeg object freed by its FFmpeg function.
template <typename T, void (*Free)(T**)>
struct AvPtr {
  T* p = nullptr;
  ~AvPtr() { Free(&p); }
};
void close_input(AVFormatContext** f) { avformat_close_input(f); }

}  // namespace

std::string EncoderConfig::describe() const {
  return url.empty() ? fmt::format("recording to '{}'", path.string())
                     : fmt::format("streaming to '{}'", url);
}

std::string av_error_string(int code) {
  char buffer[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buffer, sizeof buffer);
  return buffer;
}

VideoWriter::VideoWriter(EncoderConfig config) : config_(std::move(config)) {
  if (config_.width <= 0 || config_.height <= 0 || config_.width % 2 || config_.height % 2) {
    throw ConfigError(
        fmt::format("{}: frame size {}x{} must be positive and even (4:2:0 chroma); crop or "
                    "scale the frames to an even size",
                    config_.describe(), config_.width, config_.height));
  }
  if (config_.fps <= 0 || config_.gop_frames <= 0)
    throw ConfigError(fmt::format("{}: fps {} and gop_frames {} must be positive",
                                  config_.describe(), config_.fps, config_.gop_frames));
  if (config_.url.empty()) {
    const auto parent = config_.path.parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent))
      throw IoError(
          fmt::format("{}: folder '{}' does not exist", config_.describe(), parent.string()));
  }
  output_format_ = av_guess_format(config_.container.c_str(), nullptr, nullptr);
  if (!output_format_)
    throw ConfigError(fmt::format("{}: container '{}' is not in this FFmpeg build",
                                  config_.describe(), config_.container));
  av_log_set_level(AV_LOG_WARNING);  // keep encoder banners and statistics out of the terminal
  try {
    open_encoder();
    open_muxer();
  } catch (...) {
    abandon();
    throw;
  }
}

VideoWriter::~VideoWriter() { abandon(); }

void VideoWriter::fail(const std::string& what, int code) const {
  throw IoError(fmt::format("{}: {}: {}", config_.describe(), what, av_error_string(code)));
}

void VideoWriter::open_encoder() {
  std::string last_error;
  for (const auto& name : candidates(config_.codec)) {
    const AVCodec* encoder = avcodec_find_encoder_by_name(name.c_str());
    if (!encoder) {
      last_error = fmt::format("{} is not in this FFmpeg build", name);
      continue;
    }
    codec_ = avcodec_alloc_context3(encoder);
    codec_->width = config_.width;
    codec_->height = config_.height;
    codec_->time_base = AVRational{1, config_.fps};
    codec_->framerate = AVRational{config_.fps, 1};
    codec_->pix_fmt = AV_PIX_FMT_YUV420P;
    codec_->gop_size = config_.gop_frames;
    codec_->thread_count = std::max(config_.threads, 0);
    codec_->max_b_frames = 0;  // packets leave in order, so each fragment closes at once
    // MP4 and FLV carry SPS/PPS once in the header; MPEG-TS repeats them in-band at every
    // keyframe, so a receiver can join mid-stream.
    if (output_format_->flags & AVFMT_GLOBALHEADER) codec_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    const bool cbr = config_.bitrate_kbps > 0;
    if (cbr) {
      codec_->bit_rate = int64_t{config_.bitrate_kbps} * 1000;
      codec_->rc_max_rate = codec_->bit_rate;
      codec_->rc_buffer_size = static_cast<int>(codec_->bit_rate);  // one second
    }
    // BT.709 limited range, tagged, so players convert back with the matrix we used.
    codec_->colorspace = AVCOL_SPC_BT709;
    codec_->color_primaries = AVCOL_PRI_BT709;
    codec_->color_trc = AVCOL_TRC_BT709;
    codec_->color_range = AVCOL_RANGE_MPEG;
    AVDictionary* opts = nullptr;
    const std::string quality = std::to_string(config_.crf);
    if (is_nvenc(name)) {
      av_dict_set(&opts, "preset", cbr ? "p2" : "p4", 0);
      av_dict_set(&opts, "rc", cbr ? "cbr" : "vbr", 0);
      if (!cbr) av_dict_set(&opts, "cq", quality.c_str(), 0);
      if (cbr) av_dict_set(&opts, "tune", "ll", 0);
      av_dict_set(&opts, "zerolatency", "1", 0);
    } else {
      if (!cbr) av_dict_set(&opts, "crf", quality.c_str(), 0);
      av_dict_set(&opts, "preset", config_.software_preset.c_str(), 0);
      if (config_.zero_latency) {
        // No lookahead or frame-thread delay: each frame becomes a packet at once.
        av_dict_set(&opts, "tune", "zerolatency", 0);
      } else if (name == "libx264") {
        // Frame-parallel threads without lookahead: a packet leaves as many frames after its
        // frame as there are threads, and many threads scale better than zerolatency's slices.
        av_dict_set(&opts, "x264-params", "rc-lookahead=0:sync-lookahead=0:mbtree=0", 0);
      }
      if (name == "libx265") av_dict_set(&opts, "x265-params", "log-level=error", 0);
    }
    // Probing NVENC in auto mode fails on most machines (no GPU, or one without an encoder
    // engine such as the H100): keep FFmpeg's error lines out of the terminal then.
    const bool probing = config_.codec == "auto" && is_nvenc(name);
    const int level = av_log_get_level();
    if (probing) av_log_set_level(AV_LOG_QUIET);
    const int rc = avcodec_open2(codec_, encoder, &opts);
    if (probing) av_log_set_level(level);
    av_dict_free(&opts);
    if (rc >= 0) {
      codec_name_ = name;
      return;
    }
    avcodec_free_context(&codec_);
    last_error = fmt::format("{} did not open: {}", name, av_error_string(rc));
    if (probing) log::debug("recorder: {}; trying the next encoder", last_error);
  }
  throw ConfigError(fmt::format("{}: no usable encoder for codec '{}' ({})", config_.describe(),
                                config_.codec, last_error));
}

void VideoWriter::open_muxer() {
  const bool file = config_.url.empty();
  const std::string target = file ? config_.path.string() : config_.url;
  int rc = avformat_alloc_output_context2(&format_, output_format_, nullptr, target.c_str());
  if (rc < 0) fail(fmt::format("cannot create the {} muxer", config_.container), rc);
  stream_ = avformat_new_stream(format_, nullptr);
  stream_->time_base = codec_->time_base;
  avcodec_parameters_from_context(stream_->codecpar, codec_);
  if (is_hevc(codec_name_)) stream_->codecpar->codec_tag = MKTAG('h', 'v', 'c', '1');  // Apple
  for (const auto& [key, value] : config_.metadata)
    av_dict_set(&format_->metadata, key.c_str(), value.c_str(), 0);
  AVDictionary* io = nullptr;
  if (!file) {
    const std::string timeout_us = std::to_string(int64_t{config_.io_timeout_ms} * 1000);
    av_dict_set(&io, "rw_timeout", timeout_us.c_str(), 0);  // any protocol's reads and writes
    if (config_.url.rfind("srt:", 0) == 0) {
      av_dict_set(&io, "connect_timeout", std::to_string(config_.io_timeout_ms).c_str(), 0);
      av_dict_set(&io, "latency", "120000", 0);  // 120 ms receive buffer (µs), SRT's default
    }
    if (config_.url.rfind("rtmp", 0) == 0) av_dict_set(&io, "rtmp_live", "live", 0);
  }
  rc = avio_open2(&format_->pb, target.c_str(), AVIO_FLAG_WRITE, nullptr, &io);
  av_dict_free(&io);
  if (rc < 0) fail(file ? "cannot open the file for writing" : "cannot open the URL", rc);
  format_->flags |= AVFMT_FLAG_FLUSH_PACKETS;  // fragments/packets leave as they are written
  AVDictionary* mux = nullptr;
  // A moof per keyframe after an empty moov: a killed recording keeps every closed fragment.
  if (config_.container == "mp4")
    av_dict_set(&mux, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
  rc = avformat_write_header(format_, &mux);
  av_dict_free(&mux);
  if (rc < 0) fail(fmt::format("cannot write the {} header", config_.container), rc);
  avio_flush(format_->pb);
  if (format_->pb->error < 0) fail("cannot write the header", format_->pb->error);

  frame_ = av_frame_alloc();
  frame_->format = codec_->pix_fmt;
  frame_->width = codec_->width;
  frame_->height = codec_->height;
  if ((rc = av_frame_get_buffer(frame_, 0)) < 0) fail("cannot allocate a frame", rc);
  packet_ = av_packet_alloc();
  sws_ =
      sws_getContext(config_.width, config_.height, AV_PIX_FMT_RGBA, config_.width, config_.height,
                     AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                     nullptr, nullptr, nullptr);
  if (!sws_) fail("cannot create the RGBA to YUV converter", AVERROR(EINVAL));
  // Same matrix as the tag above (swscale defaults to BT.601).
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(sws_, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16);
}

void VideoWriter::encode(AVFrame* input) {
  int rc = avcodec_send_frame(codec_, input);
  if (rc < 0) fail("the encoder rejected a frame", rc);
  for (;;) {
    rc = avcodec_receive_packet(codec_, packet_);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    if (rc < 0) fail("encoding failed", rc);
    if (packet_->duration <= 0) packet_->duration = 1;
    av_packet_rescale_ts(packet_, codec_->time_base, stream_->time_base);
    packet_->stream_index = stream_->index;
    rc = av_interleaved_write_frame(format_, packet_);
    if (rc < 0) fail("writing failed (disk full?)", rc);
    if (format_->pb->error < 0) fail("writing failed (disk full?)", format_->pb->error);
  }
}

void VideoWriter::write_rgba(const uint8_t* rgba, int stride, int64_t pts) {
  const int rc = av_frame_make_writable(frame_);
  if (rc < 0) fail("frame buffer busy", rc);
  const uint8_t* src[1] = {rgba};
  const int src_stride[1] = {stride};
  sws_scale(sws_, src, src_stride, 0, config_.height, frame_->data, frame_->linesize);
  frame_->pts = pts;
  encode(frame_);
  end_pts_ = pts + 1;
}

void VideoWriter::write_i420(const uint8_t* i420, int64_t pts) {
  const int rc = av_frame_make_writable(frame_);
  if (rc < 0) fail("frame buffer busy", rc);
  const int w = config_.width, h = config_.height;
  const uint8_t* u = i420 + static_cast<ptrdiff_t>(w) * h;
  const uint8_t* v = u + static_cast<ptrdiff_t>(w / 2) * (h / 2);
  av_image_copy_plane(frame_->data[0], frame_->linesize[0], i420, w, w, h);
  av_image_copy_plane(frame_->data[1], frame_->linesize[1], u, w / 2, w / 2, h / 2);
  av_image_copy_plane(frame_->data[2], frame_->linesize[2], v, w / 2, w / 2, h / 2);
  frame_->pts = pts;
  encode(frame_);
  end_pts_ = pts + 1;
}

int64_t VideoWriter::bytes_written() const {
  return format_ && format_->pb ? avio_tell(format_->pb) : 0;
}

void VideoWriter::finish() {
  if (finished_) return;
  finished_ = true;
  encode(nullptr);  // drain the encoder
  const int rc = av_write_trailer(format_);
  if (rc < 0) fail("cannot finish the file", rc);
  avio_flush(format_->pb);
  if (format_->pb->error < 0) fail("writing failed (disk full?)", format_->pb->error);
  abandon();
}

void VideoWriter::abandon() {
  sws_freeContext(sws_);
  sws_ = nullptr;
  av_frame_free(&frame_);
  av_packet_free(&packet_);
  avcodec_free_context(&codec_);
  if (format_) {
    if (format_->pb) avio_closep(&format_->pb);
    avformat_free_context(format_);
    format_ = nullptr;
  }
}

void remux_faststart(const std::filesystem::path& input, const std::filesystem::path& output,
                     const std::map<std::string, std::string>& metadata,
                     const std::vector<ChapterSpan>& chapters, int fps) {
  auto fail = [&](const std::string& what, int code) {
    throw IoError(fmt::format("finalising '{}' into '{}': {}: {}", input.string(), output.string(),
                              what, av_error_string(code)));
  };
  AvPtr<AVFormatContext, close_input> in;
  int rc = avformat_open_input(&in.p, input.c_str(), nullptr, nullptr);
  if (rc < 0) fail("cannot open the recording", rc);
  if ((rc = avformat_find_stream_info(in.p, nullptr)) < 0) fail("cannot read the recording", rc);
  const int video = av_find_best_stream(in.p, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (video < 0) fail("no video stream", video);

  struct Output {
    AVFormatContext* f = nullptr;
    ~Output() {
      if (!f) return;
      if (f->pb) avio_closep(&f->pb);
      avformat_free_context(f);
    }
  } out;
  rc = avformat_alloc_output_context2(&out.f, nullptr, "mp4", output.c_str());
  if (rc < 0) fail("cannot create the MP4 muxer", rc);
  AVStream* in_stream = in.p->streams[video];
  AVStream* stream = avformat_new_stream(out.f, nullptr);
  avcodec_parameters_copy(stream->codecpar, in_stream->codecpar);
  stream->time_base = in_stream->time_base;
  stream->avg_frame_rate = AVRational{fps, 1};
  av_dict_copy(&out.f->metadata, in.p->metadata, 0);
  for (const auto& [key, value] : metadata)
    av_dict_set(&out.f->metadata, key.c_str(), value.c_str(), 0);
  av_dict_set(&out.f->metadata, "major_brand", nullptr, 0);  // the muxer writes its own brands
  av_dict_set(&out.f->metadata, "minor_version", nullptr, 0);
  av_dict_set(&out.f->metadata, "compatible_brands", nullptr, 0);
  for (size_t i = 0; i < chapters.size(); ++i) {
    // The public way to add chapters to a muxer (as the ffmpeg tool does).
    auto* chapter = static_cast<AVChapter*>(av_mallocz(sizeof(AVChapter)));
    chapter->id = static_cast<int64_t>(i);
    chapter->time_base = AVRational{1, fps};
    chapter->start = chapters[i].start;
    chapter->end = chapters[i].end;
    av_dict_set(&chapter->metadata, "title", chapters[i].title.c_str(), 0);
    int count = static_cast<int>(out.f->nb_chapters);
    av_dynarray_add(&out.f->chapters, &count, chapter);
    if (!out.f->chapters) fail("out of memory adding chapters", AVERROR(ENOMEM));
    out.f->nb_chapters = static_cast<unsigned>(count);
  }
  rc = avio_open(&out.f->pb, output.c_str(), AVIO_FLAG_WRITE);
  if (rc < 0) fail("cannot open the file for writing", rc);
  AVDictionary* mux = nullptr;
  av_dict_set(&mux, "movflags", "+faststart", 0);
  rc = avformat_write_header(out.f, &mux);
  av_dict_free(&mux);
  if (rc < 0) fail("cannot write the MP4 header", rc);

  AvPtr<AVPacket, av_packet_free> packet{av_packet_alloc()};
  while ((rc = av_read_frame(in.p, packet.p)) >= 0) {
    if (packet.p->stream_index != video) {
      av_packet_unref(packet.p);
      continue;
    }
    av_packet_rescale_ts(packet.p, in_stream->time_base, stream->time_base);
    packet.p->stream_index = stream->index;
    packet.p->pos = -1;
    rc = av_interleaved_write_frame(out.f, packet.p);
    if (rc < 0) fail("writing failed (disk full?)", rc);
  }
  if (rc != AVERROR_EOF) fail("reading the recording failed", rc);
  // The trailer writes the moov and, for faststart, rewrites the file with it in front.
  if ((rc = av_write_trailer(out.f)) < 0) fail("cannot finish the file (disk full?)", rc);
  if (out.f->pb->error < 0) fail("writing failed (disk full?)", out.f->pb->error);
  rc = avio_closep(&out.f->pb);
  if (rc < 0) fail("closing failed (disk full?)", rc);
}

}  // namespace longlive::detail
