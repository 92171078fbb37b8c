// RGBA8 -> I420 with ATen ops, so CUDA frames are converted where they are and only the
// 4:2:0 planes (1.5 bytes per pixel instead of 4) cross to the host.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/recorder.h"

namespace longlive {

at::Tensor rgba_to_i420(const at::Tensor& rgba) {
  if (rgba.dim() != 3 || rgba.size(2) != 4 || rgba.scalar_type() != at::kByte || rgba.size(0) % 2 ||
      rgba.size(1) % 2) {
    throw ConfigError(
        fmt::format("rgba_to_i420: expected [H, W, 4] uint8 with even H and W, got [{}, {}, {}] {}",
                    rgba.dim() > 0 ? rgba.size(0) : 0, rgba.dim() > 1 ? rgba.size(1) : 0,
                    rgba.dim() > 2 ? rgba.size(2) : 0, c10::toString(rgba.scalar_type())));
  }
  const at::Tensor rgb = rgba.narrow(2, 0, 3).to(at::kFloat).permute({2, 0, 1});  // [3, H, W]
  const at::Tensor r = rgb[0], g = rgb[1], b = rgb[2];
  // BT.709 luma weights; limited range puts Y in [16, 235] and chroma in [16, 240].
  const at::Tensor luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  const at::Tensor y = luma * (219.0 / 255.0) + 16.0;
  const at::Tensor cb = (b - luma) * (224.0 / 255.0 / 1.8556) + 128.0;
  const at::Tensor cr = (r - luma) * (224.0 / 255.0 / 1.5748) + 128.0;
  // 2x2 box average: chroma sits between the four luma samples it covers.
  const at::Tensor chroma = at::avg_pool2d(at::stack({cb, cr}).unsqueeze(0), {2, 2}).squeeze(0);
  auto to_u8 = [](const at::Tensor& t) { return t.round().clamp(0, 255).to(at::kByte).flatten(); };
  return at::cat({to_u8(y), to_u8(chroma[0]), to_u8(chroma[1])});
}

}  // namespace longlive
