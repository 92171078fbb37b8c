#pragma once
// Small generated videos for the control-input tests (written with the recorder).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "fixtures.h"
#include "longlive/recorder.h"

namespace longlive::test {

// A moving pattern: frame i is [3, H, W] in [0, 1], a bright bar sweeping right.
inline at::Tensor moving_bar(int64_t frames, int64_t height, int64_t width) {
  at::Tensor video = at::zeros({frames, 3, height, width});
  for (int64_t i = 0; i < frames; ++i) {
    const int64_t x = (i * 7) % (width - 8);
    video[i].narrow(2, x, 8).fill_(1.0);
    video[i][0].add_(0.2 * static_cast<double>(i % 5) / 5.0);
  }
  return video.clamp(0, 1);
}

inline std::filesystem::path write_video(const std::string& name, const at::Tensor& frames,
                                         int fps) {
  const auto path = temp_dir("vace_input") / name;
  RecorderOptions options;
  options.path = path;
  options.fps = fps;
  options.codec = "libx264";
  options.write_sidecar = false;
  EXPECT_TRUE(record_frames_to_mp4(frames, options));
  return path;
}

}  // namespace longlive::test
