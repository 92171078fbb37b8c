// Wan VAE on the GPU (skipped without CUDA): the reference fixture decoded block by block in
// fp32 with TF32 off within 1e-3 (or the configuration's float32 rounding tolerance where that is
// larger, see wan_vae_rounding.h), in both activation layouts (channels-last, cuDNN's native one,
// and the plain one), and bf16 close to it; the encoder likewise.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "fixtures.h"
#include "longlive/wan_vae.h"
#include "stream_chunks.h"
#include "tensor_compare.h"
#include "wan_vae_rounding.h"

namespace longlive::test {
namespace {

// The fixture's latents in its documented chunks, each chunk's pixels against its frame range.
double streamed_max_diff(const WeightStore& weights, const WeightStore& io,
                         const WanVaeDecoderOptions& options) {
  const at::Tensor latents = io.get("latents");
  const at::Tensor expected = io.get("decode_full")[0];
  const auto ranges = nlohmann::json::parse(io.metadata().at("stream_chunk_frame_ranges"));
  WanVaeDecoder decoder(weights, options);
  const std::vector<int64_t> sizes = stream_chunk_sizes(ranges, decoder, latents.size(1));
  if (sizes.size() != ranges.size()) return 1e9;
  double worst = 0;
  int64_t latent = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const at::Tensor pixels = decoder.decode_pixels(latents.narrow(1, latent, sizes[i]));
    latent += sizes[i];
    EXPECT_TRUE(pixels.is_cuda());
    const int64_t begin = ranges[i][0], end = ranges[i][1];
    EXPECT_EQ(pixels.size(0), end - begin) << "chunk " << i;
    if (pixels.size(0) != end - begin) return 1e9;
    worst = std::max(worst, max_abs_diff(pixels, expected.narrow(0, begin, end - begin)));
  }
  return worst;
}

// The fixture's weights and inputs on a GPU computing fp32 without TF32.
class WanVaeGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    LONGLIVE_REQUIRE_FIXTURE("wanvae");
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU parity runs on the GPU box";
    auto& context = at::globalContext();
    context.setAllowTF32CuDNN(false);
    context.setAllowTF32CuBLAS(false);
    weights = load_wan_vae_weights(fixture("wanvae_weights.safetensors"));
    io = WeightStore::open(fixture("wanvae_io.safetensors"));
  }
  WeightStore weights, io;
};

TEST_F(WanVaeGpu, StreamedDecodeMatchesReferenceInBothLayouts) {
  // The float32 rounding floor of this configuration, measured on the CPU.
  const WanVaeRounding& rounding = fixture_wan_vae_rounding();
  const double tolerance = std::max(1e-3, rounding.tolerance());
  WanVaeDecoderOptions options;
  options.device = at::Device(at::kCUDA, 0);
  options.dtype = at::kFloat;
  for (DecoderLayout layout : {DecoderLayout::channels_last, DecoderLayout::contiguous}) {
    options.layout = layout;
    const bool channels_last = layout == DecoderLayout::channels_last;
    const double diff = streamed_max_diff(weights, io, options);
    std::printf("Wan VAE fp32 on the GPU, channels-last %d: max |diff| = %.3g (tolerance %.3g)\n",
                channels_last, diff, tolerance);
    EXPECT_LT(diff, tolerance) << "channels-last " << channels_last;
  }
  options.dtype = at::kBFloat16;
  options.layout = DecoderLayout::best;
  const double bf16 = streamed_max_diff(weights, io, options);
  // bf16 keeps 8 significant bits against float32's 24: its rounding errors are 2^16 times
  // float32's, amplified by the configuration as float32's are (the floor). On an H200 the bf16
  // decodes of twelve configurations (widths 2 to 8) came to at most 0.6 of floor * 2^16 (0.078
  // for the public width-8 set). Where that bound reaches the pixel range ([-1, 1]), as with most
  // 2- and 3-channel models, bf16 has no parity to check: only that it decodes to finite pixels.
  const double bf16_tolerance = std::max(1e-1, rounding.floor * 65536.0);
  std::printf("Wan VAE bf16 channels-last: max |diff| = %.3g (tolerance %.3g)\n", bf16,
              bf16_tolerance);
  EXPECT_TRUE(std::isfinite(bf16));
  if (bf16_tolerance < 2.0) {
    EXPECT_LT(bf16, bf16_tolerance) << "bf16 decode beyond half precision";
  } else {
    std::printf("  no bf16 parity for this configuration (bound %.3g beyond the pixel range)\n",
                bf16_tolerance);
  }
}

// The encoder (VACE control frames, video-to-video input) on the GPU: fp32 in both layouts within
// 1e-3 of the reference's latents, and bf16 channels-last (what sessions run) close to them.
TEST_F(WanVaeGpu, EncoderMatchesReferenceInBothLayouts) {
  // encode.pixels is channel-first [1, 3, T, H, W]; the encoder takes [1, T, 3, H, W].
  const at::Tensor video = io.get("encode.pixels").permute({0, 2, 1, 3, 4});
  const at::Tensor expected = io.get("encode.latents");
  WanVaeEncoderOptions options;
  options.device = at::Device(at::kCUDA, 0);
  options.dtype = at::kFloat;
  for (DecoderLayout layout : {DecoderLayout::channels_last, DecoderLayout::contiguous}) {
    options.layout = layout;
    const bool channels_last = layout == DecoderLayout::channels_last;
    const double diff = max_abs_diff(WanVaeEncoder(weights, options).encode(video), expected);
    std::printf("Wan VAE encoder fp32 on the GPU, channels-last %d: max |diff| = %.3g\n",
                channels_last, diff);
    EXPECT_LT(diff, 1e-3) << "channels-last " << channels_last;
  }
  options.dtype = at::kBFloat16;
  options.layout = DecoderLayout::best;
  const at::Tensor bf16 = WanVaeEncoder(weights, options).encode(video).to(at::kCPU, at::kDouble);
  const at::Tensor reference = expected.to(at::kDouble);
  const double relative = ((bf16 - reference).norm() / reference.norm()).item<double>();
  std::printf("Wan VAE encoder bf16 channels-last: relative L2 %.3g\n", relative);
  EXPECT_TRUE(std::isfinite(relative));
  // bf16 keeps 8 significant bits: a few parts in a thousand per layer, not tenths.
  EXPECT_LT(relative, 0.1);
}

// A residual block's conv biases folded into the passes after the convs (the default on a GPU
// in bf16, channels-last) against ATen's bias adds after each conv (LONGLIVE_VAE_FOLD_BIAS=0):
// bit for bit the same latents and pixels. Random weights of the tiny width (8: every block's
// channels a multiple of 8, so every block folds).
TEST(WanVaeGpuFold, FoldedConvBiasesChangeNoBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: runs on the GPU box";
  const WanVaeConfig config = WanVaeConfig::tiny();
  ASSERT_EQ(config.dim % 8, 0) << "a width whose blocks fold";
  const WeightStore weights = make_random_wan_vae_weights(config, 21);
  WanVaeEncoderOptions encoder_options;
  encoder_options.device = at::Device(at::kCUDA, 0);
  encoder_options.dtype = at::kBFloat16;
  encoder_options.layout = DecoderLayout::channels_last;
  WanVaeDecoderOptions decoder_options;
  decoder_options.device = encoder_options.device;
  decoder_options.dtype = at::kBFloat16;
  decoder_options.layout = DecoderLayout::channels_last;
  auto gen = at::detail::createCPUGenerator(8);
  const int64_t frames = 1 + 2 * config.temporal_scale();
  const int64_t side = 4 * config.spatial_scale();
  const at::Tensor video =
      at::rand({1, frames, 3, side, side + config.spatial_scale()}, gen) * 2 - 1;
  auto run = [&](const char* fold) {
    setenv("LONGLIVE_VAE_FOLD_BIAS", fold, 1);
    const at::Tensor latents = WanVaeEncoder(weights, encoder_options).encode(video);
    const at::Tensor pixels = WanVaeDecoder(weights, decoder_options).decode_pixels(latents);
    unsetenv("LONGLIVE_VAE_FOLD_BIAS");
    return std::make_pair(latents.to(at::kCPU), pixels.to(at::kCPU));
  };
  const auto [latents, pixels] = run("1");
  const auto [latents_added, pixels_added] = run("0");
  EXPECT_TRUE(at::equal(latents, latents_added));
  EXPECT_TRUE(at::equal(pixels, pixels_added));
  EXPECT_GT(latents.abs().max().item<float>(), 0.f);
}

}  // namespace
}  // namespace longlive::test
