// Wan VAE on the GPU (skipped without CUDA): the reference fixture decoded block by block in
// fp32 with TF32 off within 1e-3, in both activation layouts (channels-last, cuDNN's native one,
// and the plain one), and bf16 close to it.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "fixtures.h"
#include "longlive/wan_vae.h"

namespace longlive::test {
namespace {

double max_abs_diff_cpu(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

// The fixture's latents in its documented chunks, each chunk's pixels against its frame range.
double streamed_max_diff(const WeightStore& weights, const WeightStore& io,
                         const WanVaeDecoderOptions& options) {
  const at::Tensor latents = io.get("latents");
  const at::Tensor expected = io.get("decode_full")[0];
  const auto ranges = nlohmann::json::parse(io.metadata().at("stream_chunk_frame_ranges"));
  const int64_t chunk = latents.size(1) / static_cast<int64_t>(ranges.size());
  WanVaeDecoder decoder(weights, options);
  double worst = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const at::Tensor pixels =
        decoder.decode_pixels(latents.narrow(1, static_cast<int64_t>(i) * chunk, chunk));
    EXPECT_TRUE(pixels.is_cuda());
    const int64_t begin = ranges[i][0], end = ranges[i][1];
    EXPECT_EQ(pixels.size(0), end - begin) << "chunk " << i;
    if (pixels.size(0) != end - begin) return 1e9;
    worst = std::max(worst, max_abs_diff_cpu(pixels, expected.narrow(0, begin, end - begin)));
  }
  return worst;
}

TEST(WanVaeGpu, StreamedDecodeMatchesReferenceInBothLayouts) {
  LONGLIVE_REQUIRE_FIXTURE("wanvae");
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU parity runs on the GPU box";
  auto& context = at::globalContext();
  context.setAllowTF32CuDNN(false);
  context.setAllowTF32CuBLAS(false);
  const WeightStore weights = load_wan_vae_weights(fixture("wanvae_weights.safetensors"));
  const WeightStore io = WeightStore::open(fixture("wanvae_io.safetensors"));
  WanVaeDecoderOptions options;
  options.device = at::Device(at::kCUDA, 0);
  options.dtype = at::kFloat;
  for (DecoderLayout layout : {DecoderLayout::channels_last, DecoderLayout::contiguous}) {
    options.layout = layout;
    const bool channels_last = layout == DecoderLayout::channels_last;
    const double diff = streamed_max_diff(weights, io, options);
    std::printf("Wan VAE fp32 on the GPU, channels-last %d: max |diff| = %.3g\n", channels_last,
                diff);
    EXPECT_LT(diff, 1e-3) << "channels-last " << channels_last;
  }
  options.dtype = at::kBFloat16;
  options.layout = DecoderLayout::best;
  const double bf16 = streamed_max_diff(weights, io, options);
  std::printf("Wan VAE bf16 channels-last: max |diff| = %.3g\n", bf16);
  EXPECT_LT(bf16, 1e-1) << "bf16 decode beyond half precision";
}

}  // namespace
}  // namespace longlive::test
