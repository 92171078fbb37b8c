#pragma once
// How far one video is from another: the drift figures of `longlive bench --drift-vs`.
#include <ATen/core/Tensor.h>

namespace longlive {

// ||a - reference|| / ||reference|| over all elements (float64 accumulation).
double relative_l2(const at::Tensor& a, const at::Tensor& reference);

// Frames [N, 3, H, W] (or [N, H, W, 3|4] uint8) in [0, 1] (or 0..255): PSNR in dB over all
// pixels and channels; +infinity when they are equal.
double psnr(const at::Tensor& a, const at::Tensor& b);

// Mean SSIM over frames, on luma (BT.601), 11x11 Gaussian window (sigma 1.5), data range 1,
// C1 = 0.01^2, C2 = 0.03^2 (Wang et al. 2004), valid windows only.
double ssim(const at::Tensor& a, const at::Tensor& b);

}  // namespace longlive
