// TAEHV on the GPU (skipped without CUDA): the reference fixture in fp32 with TF32 off within
// 1e-3 and fp16 close to it, in both activation layouts, with and without fused conv + ReLU.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#include "fixtures.h"
#include "longlive/decoder.h"
#include "longlive/taehv.h"
#include "tensor_compare.h"

namespace longlive::test {
namespace {

WeightStore gpu_taehv_weights(const WeightStore& io) {
  WeightStore w;
  for (const auto& part : nlohmann::json::parse(io.metadata().at("weights")))
    w.merge(WeightStore::open(taehv_weights_dir() / part.get<std::string>()));
  return w;
}

TEST(TaehvGpu, Fp32MatchesReferenceAndFp16StaysClose) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU parity runs on the GPU box";
  auto& context = at::globalContext();
  context.setAllowTF32CuDNN(false);
  context.setAllowTF32CuBLAS(false);
  LONGLIVE_REQUIRE_FIXTURE("taehv");
  if (taehv_weights_dir().empty())
    GTEST_SKIP() << "no TAEHV decoder weights for " << fixtures_dir();
  const WeightStore io = WeightStore::open(fixture("taehv_io.safetensors"));
  const WeightStore weights = gpu_taehv_weights(io);
  const at::Device cuda(at::kCUDA, 0);
  const at::Tensor expected = io.get("decode_full")[0];

  for (const bool fused : {false, true}) {
    for (DecoderLayout layout : {DecoderLayout::contiguous, DecoderLayout::channels_last}) {
      const bool channels_last = layout == DecoderLayout::channels_last;
      const std::string variant =
          fmt::format("channels-last {}, fused conv {}", channels_last, fused);
      auto fp32 = make_taehv_decoder(weights, {cuda, at::kFloat, layout, fused});
      const at::Tensor frames = fp32->decode(io.get("latents"));
      ASSERT_TRUE(frames.is_cuda());
      ASSERT_EQ(frames.sizes(), expected.sizes());
      EXPECT_TRUE(frames.is_contiguous()) << variant;
      const double diff = max_abs_diff(frames, expected);
      std::printf("TAEHV fp32 on the GPU, %s: max |diff| = %.3g\n", variant.c_str(), diff);
      EXPECT_LT(diff, 1e-3) << variant;

      auto fp16 = make_taehv_decoder(weights, {cuda, at::kHalf, layout, fused});
      const at::Tensor half = fp16->decode(io.get("latents"));
      EXPECT_EQ(half.scalar_type(), at::kFloat);
      EXPECT_LT(max_abs_diff(half, expected), 3e-2)
          << "fp16 decode beyond half precision, " << variant;
    }
  }
}

}  // namespace
}  // namespace longlive::test
