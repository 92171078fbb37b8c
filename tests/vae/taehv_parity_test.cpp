// TAEHV decoder against the reference decode (taehv_io.safetensors): whole video and streamed.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/taehv.h"
#include "stream_chunks.h"
#include "tensor_compare.h"

namespace longlive::test {
namespace {

WeightStore taehv_weights(const WeightStore& io) {
  WeightStore w;
  for (const auto& part : nlohmann::json::parse(io.metadata().at("weights")))
    w.merge(WeightStore::open(taehv_weights_dir() / part.get<std::string>()));
  return w;
}

TEST(Taehv, WholeVideoMatchesReference) {
  LONGLIVE_REQUIRE_FIXTURE("taehv");
  if (taehv_weights_dir().empty())
    GTEST_SKIP() << "no TAEHV decoder weights for " << fixtures_dir();
  const WeightStore io = WeightStore::open(fixture("taehv_io.safetensors"));
  auto decoder = make_taehv_decoder(taehv_weights(io), {});
  const at::Tensor frames = decoder->decode(io.get("latents"));
  const at::Tensor expected = io.get("decode_full")[0];
  ASSERT_EQ(frames.sizes(), expected.sizes());
  EXPECT_LT(max_abs_diff(frames, expected), 1e-4);
}

// In both activation layouts (channels-last is the GPU's alternative; it runs on the CPU too).
TEST(Taehv, StreamedChunksMatchTheDocumentedFrameRanges) {
  LONGLIVE_REQUIRE_FIXTURE("taehv");
  if (taehv_weights_dir().empty())
    GTEST_SKIP() << "no TAEHV decoder weights for " << fixtures_dir();
  const WeightStore io = WeightStore::open(fixture("taehv_io.safetensors"));
  const at::Tensor latents = io.get("latents");
  const at::Tensor expected = io.get("decode_full")[0];
  // The reference's chunks (latent frames each), which need not be equal.
  const auto ranges = nlohmann::json::parse(io.metadata().at("stream_chunk_frame_ranges"));
  const WeightStore weights = taehv_weights(io);
  const std::vector<int64_t> sizes =
      stream_chunk_sizes(ranges, *make_taehv_decoder(weights, {}), latents.size(1));
  ASSERT_EQ(sizes.size(), ranges.size());
  for (DecoderLayout layout : {DecoderLayout::best, DecoderLayout::channels_last}) {
    const bool channels_last = layout == DecoderLayout::channels_last;
    auto decoder = make_taehv_decoder(weights, {at::kCPU, at::kFloat, layout});
    for (int repeat = 0; repeat < 2; ++repeat) {  // reset() starts a new video
      decoder->reset();
      int64_t latent = 0;
      for (size_t i = 0; i < ranges.size(); ++i) {
        const at::Tensor frames = decoder->decode(latents.narrow(1, latent, sizes[i]));
        latent += sizes[i];
        const int64_t begin = ranges[i][0], end = ranges[i][1];
        ASSERT_EQ(frames.size(0), end - begin);
        EXPECT_TRUE(frames.is_contiguous());
        EXPECT_EQ(frames.size(0), decoder->frames_for(sizes[i], i == 0));
        EXPECT_LT(max_abs_diff(frames, expected.narrow(0, begin, end - begin)), 1e-4)
            << "chunk " << i << " of " << sizes[i] << " latent frames, channels-last "
            << channels_last;
      }
    }
  }
}

TEST(Taehv, Rgba8ConversionAndBadInput) {
  const at::Tensor frames = at::rand({2, 3, 4, 5});
  const at::Tensor rgba = to_rgba8(frames);
  EXPECT_EQ(rgba.sizes(), (std::vector<int64_t>{2, 4, 5, 4}));
  EXPECT_EQ(rgba[1][2][3][0].item<uint8_t>(),
            static_cast<uint8_t>(std::lround(frames[1][0][2][3].item<float>() * 255)));
  EXPECT_EQ(rgba.select(3, 3).min().item<uint8_t>(), 255);
  auto decoder = make_taehv_decoder(make_random_taehv_weights(1), {});
  EXPECT_THROW(decoder->decode(at::zeros({1, 3, 8, 4, 4})), ConfigError);
}

}  // namespace
}  // namespace longlive::test
