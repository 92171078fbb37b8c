#pragma once
// FFmpeg side of the recorder and the stream output (no ATen): RGBA8 rows -> H.264/HEVC -> a
// fragmented MP4 file, or FLV/MPEG-TS to a URL (rtmp://, srt://, udp://, file:); and the
// faststart remux done on a clean stop.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

struct AVCodecContext;
struct AVOutputFormat;
struct AVFormatContext;
struct AVFrame;
struct AVPacket;
struct AVStream;
struct SwsContext;

namespace longlive::detail {

// The part of RecorderOptions the writer needs (kept apart so this file needs no ATen).
struct EncoderConfig {
  std::filesystem::path path;  // the MP4 file (when url is empty)
  int width = 0;
  int height = 0;
  int fps = 16;
  int crf = 18;
  std::string codec = "auto";
  int gop_frames = 16;
  std::map<std::string, std::string> metadata;
  int threads = 0;  // 0 = FFmpeg's choice
  // libx264/libx265's speed preset (ultrafast .. veryslow); NVENC keeps its own.
  std::string software_preset = "veryfast";
  // libx264/libx265 tuned for zero latency: each frame leaves as a packet at once (threads split
  // each frame into slices): what a stream's receiver wants. Off (files): frame-parallel threads
  // and no lookahead (libx264), a packet `threads` frames after its frame, more frames per second
  // with many threads (H100 box, 832x480 noise: 104 vs 90 FPS at 4 threads, 212 vs 154 at 8).
  bool zero_latency = true;
  // A libavformat URL instead of a file (streaming): written with `container`, no fragments.
  std::string url;
  std::string container = "mp4";  // libavformat muxer: mp4, flv, mpegts
  // > 0: constant bitrate in kbit/s with a one-second buffer (what RTMP/SRT receivers expect)
  // instead of the constant quality `crf`.
  int bitrate_kbps = 0;
  // Network writes and connects give up after this long (url outputs only), so a stalled
  // receiver ends the output with an error instead of blocking its thread forever.
  int io_timeout_ms = 5000;

  // What the messages call the output: "recording to 'x.mp4'" / "streaming to 'rtmp://…'".
  std::string describe() const;
};

class VideoWriter {
 public:
  // Opens the encoder and the file or URL and writes the header (an MP4's empty moov). Throws
  // ConfigError (size, codec, unknown protocol or container) / IoError (cannot open or connect).
  explicit VideoWriter(EncoderConfig config);
  ~VideoWriter();
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  // Converts one RGBA8 frame to the encoder's format and encodes it at `pts` (in 1/fps).
  void write_rgba(const uint8_t* rgba, int stride, int64_t pts);
  // Encodes one packed I420 frame (Y, then U, then V planes without padding) at `pts`.
  void write_i420(const uint8_t* i420, int64_t pts);
  // Drains the encoder and writes the trailer (the last fragment). Throws IoError.
  void finish();
  // Closes the file as it stands (after an error or a cancel); never throws.
  void abandon();

  const std::string& codec_name() const { return codec_name_; }
  int64_t end_pts() const { return end_pts_; }  // pts after the last frame written
  int64_t bytes_written() const;                // what the muxer has written so far

 private:
  [[noreturn]] void fail(const std::string& what, int code) const;
  void open_encoder();
  void open_muxer();
  void encode(AVFrame* input);

  EncoderConfig config_;
  std::string codec_name_;
  const AVOutputFormat* output_format_ = nullptr;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* codec_ = nullptr;
  AVStream* stream_ = nullptr;
  SwsContext* sws_ = nullptr;
  AVFrame* frame_ = nullptr;
  AVPacket* packet_ = nullptr;
  int64_t end_pts_ = 0;
  bool finished_ = false;
};

// Copies the packets of `input` (a finished recording) into a non-fragmented MP4 at `output`
// with the moov up front, `metadata` as its tags and `chapters` (start/end in 1/fps) as its
// chapters. Throws IoError naming `output` on failure (the caller keeps `input`).
struct ChapterSpan {
  int64_t start = 0;
  int64_t end = 0;
  std::string title;
};
void remux_faststart(const std::filesystem::path& input, const std::filesystem::path& output,
                     const std::map<std::string, std::string>& metadata,
                     const std::vector<ChapterSpan>& chapters, int fps);

std::string av_error_string(int code);

}  // namespace longlive::detail
