// ops::linear_into and ops::linear_fp8_into (the VACE hints' projections write straight into
// their buffer): the same values as ops::linear / ops::linear_fp8 bit for bit, into a slice of a
// larger buffer, and a clear error for an output of the wrong shape or type. CPU here; on a GPU
// (the GPU box) also bf16 through lt_gemm and FP8 through _scaled_mm.
#include <gtest/gtest.h>

#include "longlive/error.h"
#include "model/ops.h"

namespace longlive::test {
namespace {

// Rows of a [3, rows, n] buffer, as the hint buffer's: the middle one.
at::Tensor middle_slice(int64_t rows, int64_t n, const at::TensorOptions& options) {
  return at::full({3, rows, n}, -7.0, options)[1];
}

TEST(LinearInto, WritesWhatLinearReturnsIntoTheBuffer) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({1, 37, 64}), w = at::randn({48, 64}) / 8, b = at::randn({48});
  const at::Tensor out = middle_slice(37, 48, x.options());
  ops::linear_into(x, w, b, out);
  EXPECT_TRUE(at::equal(out, ops::linear(x, w, b).view({37, 48})));
  // A [1, rows, n] view is as good as [rows, n].
  const at::Tensor out3 = at::empty({1, 37, 48});
  ops::linear_into(x, w, b, out3);
  EXPECT_TRUE(at::equal(out3, ops::linear(x, w, b)));
}

TEST(LinearInto, RefusesAnOutputOfAnotherShapeOrType) {
  const at::Tensor x = at::randn({37, 64}), w = at::randn({48, 64}), b = at::randn({48});
  for (const at::Tensor& bad : {at::empty({36, 48}), at::empty({37, 47}), at::empty({48, 37}).t(),
                                at::empty({37, 48}, at::kDouble)}) {
    try {
      ops::linear_into(x, w, b, bad);
      ADD_FAILURE() << "accepted [" << bad.sizes() << "] " << bad.scalar_type();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("linear_into: output ["), std::string::npos) << e.what();
    }
  }
}

TEST(LinearInto, OnTheGpuBf16AndFp8GiveTheSameBits) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU paths are tested on the GPU box";
  at::manual_seed(6);
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA, 0);
  // A VACE hint's shape at a small size (rows not a multiple of a tile).
  const int64_t rows = 1171, d = 1536;
  const at::Tensor x = at::randn({1, rows, d}, bf16), w = at::randn({d, d}, bf16) / 40,
                   b = at::randn({d}, bf16);
  const at::Tensor out = middle_slice(rows, d, bf16);
  ops::linear_into(x, w, b, out);
  EXPECT_TRUE(at::equal(out, ops::linear(x, w, b).view({rows, d}))) << "bf16";

  const ops::Fp8Weight w8 = ops::quantize_weight_fp8(w);
  const at::Tensor out8 = middle_slice(rows, d, bf16);
  ops::linear_fp8_into(x, w8, b, out8);
  EXPECT_TRUE(at::equal(out8, ops::linear_fp8(x, w8, b, at::kBFloat16).view({rows, d}))) << "FP8";
}

}  // namespace
}  // namespace longlive::test
