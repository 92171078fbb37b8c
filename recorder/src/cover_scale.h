#pragma once
// Decoded FFmpeg frames to the session's picture: scaled to cover height x width and
// center-cropped (no bars, no distortion), RGB24. Shared by the file and live control inputs.
#include <ATen/core/Tensor.h>

#include <string>

extern "C" {
struct AVCodecContext;
struct AVFormatContext;
struct AVFrame;
struct SwsContext;
}

namespace longlive {

class CoverScaler {
 public:
  // `source` names the input in errors.
  CoverScaler(std::string source, int height, int width);
  ~CoverScaler();
  CoverScaler(const CoverScaler&) = delete;
  CoverScaler& operator=(const CoverScaler&) = delete;
  // [H, W, 3] uint8. FormatError naming the source for a pixel format swscale cannot convert.
  // An input of another aspect ratio than height x width is said once per input size (a
  // warning naming the source, both sizes and how much is cut), then cropped as any other.
  at::Tensor operator()(const AVFrame& frame);
  // What the last frame lost to the crop ("640x480 cropped to 832x480: 23 % of its height not
  // used"); empty when it had the session's aspect ratio.
  const std::string& framing() const { return framing_; }

 private:
  std::string source_;
  int height_, width_;
  int said_height_ = 0, said_width_ = 0;  // the input size framing_ (and the warning) are for
  SwsContext* sws_ = nullptr;
  std::string framing_;
};

// uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-1, 1] (what VACE and V2V inputs take).
at::Tensor rgb_to_signed(const at::Tensor& rgb_hw3);

// The best video stream of an opened input and its decoder, opened: the stream's index and the
// codec context (the caller frees it with avcodec_free_context). FormatError naming `source` when
// the input has no readable stream, no video stream, or no decoder for it (nothing leaks then).
struct VideoDecoder {
  int stream_index = -1;
  AVCodecContext* codec = nullptr;
};
VideoDecoder open_video_decoder(AVFormatContext* format, const std::string& source);

// FFmpeg's text for an error code.
std::string av_error_text(int rc);

}  // namespace longlive
