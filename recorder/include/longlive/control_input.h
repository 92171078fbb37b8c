#pragma once
// VACE control inputs read with FFmpeg's libavformat/libavcodec (no Qt): a video file as a frame
// source, images as reference pictures or inpainting masks. Every picture is scaled to cover the
// session's size and center-cropped (no padding, no distortion).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>

#include "longlive/vace.h"

namespace longlive {

// A video file resampled to `fps` by presentation time (a frame is repeated or dropped as the
// rate asks) and looped at its end. Decoded once at open, kept as uint8 at the session's size
// (12 frames at 480x832 are 14 MiB: a minute of control video at 16 fps takes 1.1 GiB).
class VideoFileSource final : public VaceFrameSource {
 public:
  // IoError naming the file when it cannot be opened; FormatError when it has no decodable
  // video stream or no frame.
  VideoFileSource(const std::filesystem::path& path, int height, int width, double fps = 16.0);
  at::Tensor next_frames(int64_t count) override;  // [count, 3, H, W] float32 in [-1, 1]

  int64_t frames() const { return frames_.size(0); }  // after resampling, one loop
  int64_t position() const { return next_; }          // frames handed out so far
  double source_fps() const { return source_fps_; }

 private:
  at::Tensor frames_;  // [N, H, W, 3] uint8
  int64_t next_ = 0;
  double source_fps_ = 0;
};

// An image (PNG, JPEG, ... anything FFmpeg decodes) as [1, 3, H, W] float32 in [-1, 1].
at::Tensor load_control_image(const std::filesystem::path& path, int height, int width);
// A mask image as [H, W] float32 of 0/1: 1 (bright, luma > 0.5) = generate, 0 = keep.
at::Tensor load_mask_image(const std::filesystem::path& path, int height, int width);

}  // namespace longlive
