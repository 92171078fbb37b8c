// What every streaming decoder shares (longlive/decoder.h).
#include "longlive/decoder.h"

#include <ATen/ATen.h>

namespace longlive {

at::Tensor to_rgba8(const at::Tensor& frames) {
  const at::Tensor rgb = (frames.clamp(0, 1) * 255.0).round().to(at::kByte).permute({0, 2, 3, 1});
  const at::Tensor alpha = at::full({rgb.size(0), rgb.size(1), rgb.size(2), 1}, 255, rgb.options());
  return at::cat({rgb, alpha}, 3).contiguous();
}

}  // namespace longlive
