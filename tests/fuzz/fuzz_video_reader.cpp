// libFuzzer: the VACE / video-to-video control video reader (VideoFileSource: libavformat probes
// the bytes, libavcodec decodes, libswscale covers the session's size, then resampling to 16 fps)
// and the still-image reader on the same path. Either the file is refused with our errors, or the
// frames have the session's shape and lie in [-1, 1]. Anything else (a crash, an ASan report, an
// FFmpeg error escaping as something else) is a bug.
#include <ATen/ATen.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

extern "C" {
#include <libavutil/log.h>
}

#include "longlive/control_input.h"
#include "longlive/error.h"

namespace {

// FFmpeg reads a path: the input goes to one file per process in memory-backed /dev/shm.
const std::filesystem::path& input_path() {
  static const std::filesystem::path path = [] {
    const std::filesystem::path shm = "/dev/shm";
    const std::filesystem::path dir =
        std::filesystem::exists(shm) ? shm : std::filesystem::temp_directory_path();
    return dir / ("longlive-fuzz-video-" + std::to_string(::getpid()));
  }();
  return path;
}

void check_frames(const at::Tensor& frames, int64_t count, int height, int width) {
  if (frames.dim() != 4 || frames.size(0) != count || frames.size(1) != 3 ||
      frames.size(2) != height || frames.size(3) != width || frames.scalar_type() != at::kFloat)
    std::abort();
  if (frames.min().item<float>() < -1.0f || frames.max().item<float>() > 1.0f) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  av_log_set_level(AV_LOG_QUIET);  // every rejected input would print FFmpeg's complaint
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& path = input_path();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  constexpr int kHeight = 16, kWidth = 24;  // small: the scaler and the checks stay cheap
  try {
    longlive::VideoFileSource video(path, kHeight, kWidth, 16.0);
    if (video.frames() < 1) std::abort();
    check_frames(video.next_frames(3), 3, kHeight, kWidth);
  } catch (const longlive::Error&) {
  }
  try {
    check_frames(longlive::load_control_image(path, kHeight, kWidth), 1, kHeight, kWidth);
  } catch (const longlive::Error&) {
  }
  std::error_code ec;
  std::filesystem::remove(path, ec);
  return 0;
}
