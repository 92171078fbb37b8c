#include "longlive/profiler.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>

#include "longlive/error.h"

namespace longlive {
namespace {

// [N, 3, H, W] float64 in [0, 1], from float frames or uint8 RGB(A) rows.
at::Tensor as_unit_rgb(const at::Tensor& frames, const char* what) {
  at::Tensor t = frames.to(at::kCPU);
  if (t.scalar_type() == at::kByte) {
    if (t.dim() != 4 || (t.size(3) != 3 && t.size(3) != 4))
      throw ConfigError(fmt::format("{}: uint8 frames must be [N, H, W, 3|4], got [{}]", what,
                                    fmt::join(t.sizes(), ", ")));
    return t.narrow(3, 0, 3).permute({0, 3, 1, 2}).to(at::kDouble) / 255.0;
  }
  if (t.dim() != 4 || t.size(1) != 3)
    throw ConfigError(
        fmt::format("{}: frames must be [N, 3, H, W], got [{}]", what, fmt::join(t.sizes(), ", ")));
  return t.to(at::kDouble);
}

void require_same_shape(const at::Tensor& a, const at::Tensor& b) {
  if (!a.sizes().equals(b.sizes()))
    throw ConfigError(fmt::format("frames to compare differ in shape: [{}] vs [{}]",
                                  fmt::join(a.sizes(), ", "), fmt::join(b.sizes(), ", ")));
}

}  // namespace

double relative_l2(const at::Tensor& a, const at::Tensor& reference) {
  require_same_shape(a, reference);
  const at::Tensor r = reference.to(at::kCPU).to(at::kDouble);
  const double norm = r.norm().item<double>();
  const double diff = (a.to(at::kCPU).to(at::kDouble) - r).norm().item<double>();
  return norm > 0 ? diff / norm : diff;
}

double psnr(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = as_unit_rgb(a, "psnr"), y = as_unit_rgb(b, "psnr");
  require_same_shape(x, y);
  const double mse = (x - y).pow(2).mean().item<double>();
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : std::numeric_limits<double>::infinity();
}

double ssim(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = as_unit_rgb(a, "ssim"), y = as_unit_rgb(b, "ssim");
  require_same_shape(x, y);
  constexpr int64_t kWindow = 11;
  if (x.size(2) < kWindow || x.size(3) < kWindow)
    throw ConfigError(fmt::format("ssim: frames of {}x{} are smaller than its {}x{} window",
                                  x.size(2), x.size(3), kWindow, kWindow));
  const at::Tensor luma_weights = at::tensor({0.299, 0.587, 0.114}, at::kDouble).view({1, 3, 1, 1});
  const at::Tensor lx = (x * luma_weights).sum(1, true), ly = (y * luma_weights).sum(1, true);
  const at::Tensor g = at::arange(kWindow, at::kDouble) - (kWindow - 1) / 2.0;
  at::Tensor g1 = at::exp(-g.pow(2) / (2 * 1.5 * 1.5));
  g1 = g1 / g1.sum();
  const at::Tensor window = at::outer(g1, g1).view({1, 1, kWindow, kWindow});
  auto blur = [&](const at::Tensor& t) { return at::conv2d(t, window); };
  const at::Tensor mx = blur(lx), my = blur(ly);
  const at::Tensor sxx = blur(lx * lx) - mx * mx, syy = blur(ly * ly) - my * my,
                   sxy = blur(lx * ly) - mx * my;
  constexpr double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const at::Tensor map =
      ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return map.mean().item<double>();
}

}  // namespace longlive
