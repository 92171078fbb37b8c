// The drift metrics against values derived by hand from their definitions.
#include "longlive/profiler.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "longlive/error.h"

namespace longlive::test {
namespace {

TEST(Quality, RelativeL2IsTheNormRatio) {
  const at::Tensor ref = at::full({2, 3}, 2.0);
  const at::Tensor a = ref + at::full({2, 3}, 0.5);
  // ||0.5 * ones|| / ||2 * ones|| = 0.25 whatever the count.
  EXPECT_NEAR(relative_l2(a, ref), 0.25, 1e-12);
  EXPECT_THROW(relative_l2(a, at::ones({3, 2})), ConfigError);
}

TEST(Quality, PsnrOfAConstantOffset) {
  const at::Tensor x = at::rand({2, 3, 16, 16}, at::kDouble) * 0.5;
  // MSE = d^2 -> PSNR = -20 log10(d).
  EXPECT_NEAR(psnr(x + 0.1, x), 20.0, 1e-9);
  EXPECT_NEAR(psnr(x + 0.01, x), 40.0, 1e-9);
  EXPECT_TRUE(std::isinf(psnr(x, x)));
  // uint8 RGBA rows: one level off everywhere -> 20 log10(255).
  const at::Tensor rgba = at::full({1, 12, 12, 4}, 100, at::kByte);
  EXPECT_NEAR(psnr(rgba + 1, rgba), 20.0 * std::log10(255.0), 1e-9);
}

TEST(Quality, SsimOfConstantsAndOfItself) {
  // Constant images: variances and covariance are 0, so SSIM is the luminance term alone,
  // (2 mx my + C1) / (mx^2 + my^2 + C1) with mx = 0.5, my = 0.25.
  const double c1 = 1e-4;
  const double expected = (2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1);
  EXPECT_NEAR(ssim(at::full({1, 3, 16, 16}, 0.5), at::full({1, 3, 16, 16}, 0.25)), expected, 1e-12);
  const at::Tensor x = at::rand({2, 3, 24, 20}, at::kDouble);
  EXPECT_NEAR(ssim(x, x), 1.0, 1e-12);
  EXPECT_LT(ssim(x, 1.0 - x), 0.0);  // anti-correlated structure
  EXPECT_THROW(ssim(at::rand({1, 3, 8, 8}), at::rand({1, 3, 8, 8})), ConfigError);
}

}  // namespace
}  // namespace longlive::test
