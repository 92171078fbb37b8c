#include <ATen/ATen.h>
#include <fmt/format.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive {

DecodedVideo read_video(const std::filesystem::path& path, bool keep_pixels) {
  AVFormatContext* format = nullptr;
  if (avformat_open_input(&format, path.c_str(), nullptr, nullptr) < 0)
    throw IoError(fmt::format("cannot open video '{}'", path.string()));
  struct Cleanup {
    AVFormatContext** f;
    AVCodecContext* c = nullptr;
    AVFrame* frame = av_frame_alloc();
    AVPacket* packet = av_packet_alloc();
    SwsContext* sws = nullptr;
    ~Cleanup() {
      sws_freeContext(sws);
      av_frame_free(&frame);
      av_packet_free(&packet);
      avcodec_free_context(&c);
      avformat_close_input(f);
    }
  } cleanup{&format};
  if (avformat_find_stream_info(format, nullptr) < 0)
    throw FormatError(fmt::format("'{}': no readable streams", path.string()));
  const int index = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (index < 0) throw FormatError(fmt::format("'{}': no video stream", path.string()));
  AVStream* stream = format->streams[index];
  const AVCodec* decoder = avcodec_find_decoder(stream->codecpar->codec_id);
  cleanup.c = avcodec_alloc_context3(decoder);
  avcodec_parameters_to_context(cleanup.c, stream->codecpar);
  if (avcodec_open2(cleanup.c, decoder, nullptr) < 0)
    throw FormatError(fmt::format("'{}': cannot open the decoder", path.string()));

  DecodedVideo out;
  out.codec = decoder->name;
  out.width = cleanup.c->width;
  out.height = cleanup.c->height;
  auto drain = [&] {
    while (avcodec_receive_frame(cleanup.c, cleanup.frame) >= 0) {
      const AVFrame* f = cleanup.frame;
      out.timestamps_s.push_back(f->best_effort_timestamp * av_q2d(stream->time_base));
      if (keep_pixels) {
        cleanup.sws = sws_getCachedContext(
            cleanup.sws, f->width, f->height, static_cast<AVPixelFormat>(f->format), f->width,
            f->height, AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
            nullptr, nullptr, nullptr);
        at::Tensor rgb = at::empty({f->height, f->width, 3}, at::kByte);
        uint8_t* dst[1] = {rgb.data_ptr<uint8_t>()};
        const int stride[1] = {f->width * 3};
        sws_scale(cleanup.sws, f->data, f->linesize, 0, f->height, dst, stride);
        out.rgb.push_back(rgb);
      }
      ++out.frames;
    }
  };
  while (av_read_frame(format, cleanup.packet) >= 0) {
    if (cleanup.packet->stream_index == index) {
      avcodec_send_packet(cleanup.c, cleanup.packet);
      drain();
    }
    av_packet_unref(cleanup.packet);
  }
  avcodec_send_packet(cleanup.c, nullptr);
  drain();
  return out;
}

}  // namespace longlive
