// Reads a video back through libavformat/libavcodec: frame count, timestamps, pixels, tags,
// chapters. Used by the tests, `longlive probe` and export checks.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <fstream>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive {
namespace {

// True when the MP4 has a top-level `moof` box (a fragmented file).
bool has_movie_fragments(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  for (int boxes = 0; in && boxes < 100000; ++boxes) {
    unsigned char header[16];
    if (!in.read(reinterpret_cast<char*>(header), 8)) return false;
    uint64_t size = (uint64_t{header[0]} << 24) | (header[1] << 16) | (header[2] << 8) | header[3];
    const std::string type(reinterpret_cast<char*>(header) + 4, 4);
    if (type == "moof") return true;
    uint64_t header_size = 8;
    if (size == 1) {  // 64-bit size follows
      if (!in.read(reinterpret_cast<char*>(header + 8), 8)) return false;
      size = 0;
      for (int i = 8; i < 16; ++i) size = (size << 8) | header[i];
      header_size = 16;
    }
    if (size == 0) return false;  // box runs to the end of the file
    if (size < header_size) return false;
    in.seekg(static_cast<std::streamoff>(size - header_size), std::ios::cur);
  }
  return false;
}

std::map<std::string, std::string> tags(const AVDictionary* dict) {
  std::map<std::string, std::string> out;
  const AVDictionaryEntry* e = nullptr;
  while ((e = av_dict_get(dict, "", e, AV_DICT_IGNORE_SUFFIX))) out[e->key] = e->value;
  return out;
}

}  // namespace

DecodedVideo read_video(const std::filesystem::path& path, bool keep_pixels) {
  AVFormatContext* format = nullptr;
  if (const int rc = avformat_open_input(&format, path.c_str(), nullptr, nullptr); rc < 0) {
    char reason[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(rc, reason, sizeof reason);
    throw IoError(fmt::format("cannot open video '{}': {}", path.string(), reason));
  }
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
  if (!decoder)
    throw FormatError(fmt::format("'{}': no decoder for {}", path.string(),
                                  avcodec_get_name(stream->codecpar->codec_id)));
  cleanup.c = avcodec_alloc_context3(decoder);
  avcodec_parameters_to_context(cleanup.c, stream->codecpar);
  if (avcodec_open2(cleanup.c, decoder, nullptr) < 0)
    throw FormatError(fmt::format("'{}': cannot open the decoder", path.string()));

  DecodedVideo out;
  out.codec = decoder->name;
  out.width = cleanup.c->width;
  out.height = cleanup.c->height;
  out.metadata = tags(format->metadata);
  for (unsigned i = 0; i < format->nb_chapters; ++i) {
    const AVChapter* c = format->chapters[i];
    const auto title = tags(c->metadata);
    out.chapters.push_back({c->start * av_q2d(c->time_base), c->end * av_q2d(c->time_base),
                            title.count("title") ? title.at("title") : std::string()});
  }
  out.fragmented = has_movie_fragments(path);
  auto drain = [&] {
    while (avcodec_receive_frame(cleanup.c, cleanup.frame) >= 0) {
      const AVFrame* f = cleanup.frame;
      out.timestamps_s.push_back(f->best_effort_timestamp * av_q2d(stream->time_base));
      if (keep_pixels) {
        cleanup.sws = sws_getCachedContext(
            cleanup.sws, f->width, f->height, static_cast<AVPixelFormat>(f->format), f->width,
            f->height, AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
            nullptr, nullptr, nullptr);
        // Convert back with the matrix the file is tagged with (swscale assumes BT.601).
        const int space = f->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT;
        const int* table = sws_getCoefficients(space);
        sws_setColorspaceDetails(cleanup.sws, table, f->color_range == AVCOL_RANGE_JPEG, table, 1,
                                 0, 1 << 16, 1 << 16);
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
