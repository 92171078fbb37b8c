// Whole-clip export: a frames tensor in any of our layouts -> MP4 through the Recorder.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s;
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return fmt::format("[{}] {}", s, c10::toString(t.scalar_type()));
}

}  // namespace

at::Tensor frames_to_rgba8(const at::Tensor& frames) {
  if (frames.dim() == 4 && frames.scalar_type() == at::kByte &&
      (frames.size(3) == 4 || frames.size(3) == 3)) {
    at::Tensor rgba = frames.to(at::kCPU);
    if (rgba.size(3) == 3)
      rgba = at::cat(
          {rgba, at::full({rgba.size(0), rgba.size(1), rgba.size(2), 1}, 255, rgba.options())}, 3);
    return rgba.contiguous();
  }
  if (frames.dim() == 4 && frames.size(1) == 3 && at::isFloatingType(frames.scalar_type())) {
    // [0, 1] floats, rounded to the nearest code (as the decoders' to_rgba8).
    const at::Tensor rgb = frames.to(at::kCPU, at::kFloat)
                               .clamp(0, 1)
                               .mul(255)
                               .round()
                               .to(at::kByte)
                               .permute({0, 2, 3, 1});
    return at::cat({rgb, at::full({rgb.size(0), rgb.size(1), rgb.size(2), 1}, 255, rgb.options())},
                   3)
        .contiguous();
  }
  throw ConfigError(
      fmt::format("frames must be [N, 3, H, W] float in [0, 1] or [N, H, W, 4|3] uint8, got {}",
                  shape_of(frames)));
}

bool record_frames_to_mp4(const at::Tensor& frames, RecorderOptions options,
                          const std::vector<PromptMark>& prompts,
                          const std::function<bool(int64_t, int64_t)>& progress) {
  const bool channels_first =
      frames.dim() == 4 && frames.size(1) == 3 && at::isFloatingType(frames.scalar_type());
  if (frames.dim() != 4 || frames.size(0) == 0)
    throw ConfigError(
        fmt::format("exporting '{}': frames must be a non-empty [N, ...] batch, got {}",
                    options.path.string(), shape_of(frames)));
  options.height = static_cast<int>(frames.size(channels_first ? 2 : 1));
  options.width = static_cast<int>(frames.size(channels_first ? 3 : 2));
  const int64_t total = frames.size(0);
  Recorder recorder(options);
  for (const auto& p : prompts) recorder.mark_prompt(p.text, p.frame);
  // Convert a few frames at a time: a long clip in float would double its memory at once.
  constexpr int64_t kChunk = 16;
  for (int64_t start = 0; start < total; start += kChunk) {
    const at::Tensor rgba =
        frames_to_rgba8(frames.narrow(0, start, std::min(kChunk, total - start)));
    for (int64_t i = 0; i < rgba.size(0); ++i) {
      recorder.push(rgba[i]);
      if (progress && !progress(start + i + 1, total)) {
        recorder.cancel();
        std::error_code ec;
        std::filesystem::remove(recorder.path(), ec);
        std::filesystem::remove(recorder.sidecar_path(), ec);
        return false;
      }
    }
  }
  recorder.finish();
  return true;
}

}  // namespace longlive
