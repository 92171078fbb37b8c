// umT5 on the GPU (skipped without CUDA): the reference fixture in fp32 with TF32 off within 1e-3,
// and bf16 (the production dtype) close to it.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "fixtures.h"
#include "longlive/text_encoder.h"

namespace longlive::test {
namespace {

double relative_l2(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

TEST(Umt5Gpu, Fp32MatchesReferenceAndBf16StaysClose) {
  LONGLIVE_REQUIRE_FIXTURE("umt5");
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU parity runs on the GPU box";
  auto& context = at::globalContext();
  context.setAllowTF32CuBLAS(false);
  const WeightStore weights = WeightStore::open(fixture("umt5_weights.safetensors"));
  const WeightStore io = WeightStore::open(fixture("umt5_io.safetensors"));
  const UMT5Config config = UMT5Config::infer(weights);
  const at::Device cuda(at::kCUDA, 0);
  const at::Tensor expected = io.get("encoder_out_raw");

  UMT5Encoder fp32(weights, config, cuda, at::kFloat);
  const at::Tensor out = fp32.forward(io.get("input_ids"), io.get("attention_mask"));
  EXPECT_LT((out.to(at::kCPU, at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>(),
            1e-3);

  UMT5Encoder bf16(weights, config, cuda, at::kBFloat16);
  const at::Tensor half = bf16.forward(io.get("input_ids"), io.get("attention_mask"));
  EXPECT_LT(relative_l2(half, expected), 3e-2);
}

}  // namespace
}  // namespace longlive::test
