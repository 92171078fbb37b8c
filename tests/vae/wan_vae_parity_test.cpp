// Wan VAE against the reference (wanvae_weights / wanvae_io): whole decode, streamed decode,
// the feature cache after the first chunk, the encoder, config inference and random weights.
// Every size comes from the fixtures' metadata, so another fixture set of the same format works.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/wan_vae.h"

namespace longlive::test {
namespace {

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

struct WanVaeFixture : ::testing::Test {
  static void SetUpTestSuite() {
    if (!fixture_has("wanvae")) return;  // each test skips in SetUp
    weights = new WeightStore(load_wan_vae_weights(fixture("wanvae_weights.safetensors")));
    io = new WeightStore(WeightStore::open(fixture("wanvae_io.safetensors")));
  }
  void SetUp() override { LONGLIVE_REQUIRE_FIXTURE("wanvae"); }
  static void TearDownTestSuite() {
    delete weights;
    delete io;
  }
  static nlohmann::json meta(const std::string& key) {
    return nlohmann::json::parse(io->metadata().at(key));
  }
  static inline WeightStore* weights = nullptr;
  static inline WeightStore* io = nullptr;
};

TEST_F(WanVaeFixture, ConfigIsInferredFromTheWeights) {
  const auto expected = meta("config");
  const WanVaeConfig c = WanVaeConfig::infer(*weights);
  EXPECT_EQ(c.dim, expected.at("dim").get<int64_t>());
  EXPECT_EQ(c.z_dim, expected.at("z_dim").get<int64_t>());
  EXPECT_EQ(c.dim_mult, expected.at("dim_mult").get<std::vector<int64_t>>());
  EXPECT_EQ(c.num_res_blocks, expected.at("num_res_blocks").get<int64_t>());
  EXPECT_EQ(c.temporal_downsample, expected.at("temperal_downsample").get<std::vector<bool>>());
  EXPECT_TRUE(expected.at("attn_scales").empty()) << "attention outside the middle block";
}

TEST_F(WanVaeFixture, NormalisationConstantsMatchTheWrapper) {
  const at::Tensor mean = at::tensor(wan_vae_latent_mean());
  const at::Tensor std = at::tensor(wan_vae_latent_std());
  EXPECT_EQ(max_abs_diff(mean, io->get("latent_mean")), 0.0);
  EXPECT_EQ(max_abs_diff(std, io->get("latent_std")), 0.0);
}

TEST_F(WanVaeFixture, WholeVideoInOneCallMatchesReference) {
  WanVaeDecoder decoder(*weights, {});
  const at::Tensor latents = io->get("latents");
  const at::Tensor expected = io->get("decode_full")[0];
  const at::Tensor pixels = decoder.decode_pixels(latents);
  ASSERT_EQ(pixels.sizes(), expected.sizes());
  EXPECT_EQ(pixels.size(0), decoder.frames_for(latents.size(1), true));
  const double diff = max_abs_diff(pixels, expected);
  std::printf("Wan VAE decode_full max |diff| = %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  // decode() is the same video in [0, 1].
  decoder.reset();
  const at::Tensor unit = decoder.decode(latents);
  EXPECT_LT(max_abs_diff(unit, (expected * 0.5 + 0.5).clamp(0, 1)), 1e-4);
}

TEST_F(WanVaeFixture, StreamedChunksMatchTheDocumentedFrameRanges) {
  const at::Tensor latents = io->get("latents");
  const at::Tensor expected = io->get("decode_full")[0];
  const auto ranges = meta("stream_chunk_frame_ranges");
  const int64_t chunk = latents.size(1) / static_cast<int64_t>(ranges.size());
  // Each split; channels-last (the GPU's layout, explicit here so the CPU runs it too) once.
  for (int64_t per_pass : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{-1}}) {
    WanVaeDecoderOptions options;
    options.latent_frames_per_pass = std::max<int64_t>(per_pass, 0);
    if (per_pass < 0) options.layout = DecoderLayout::channels_last;
    WanVaeDecoder decoder(*weights, options);
    for (int repeat = 0; repeat < 2; ++repeat) {  // reset() starts a new video
      decoder.reset();
      for (size_t i = 0; i < ranges.size(); ++i) {
        const at::Tensor pixels =
            decoder.decode_pixels(latents.narrow(1, static_cast<int64_t>(i) * chunk, chunk));
        const int64_t begin = ranges[i][0], end = ranges[i][1];
        ASSERT_EQ(pixels.size(0), end - begin);
        EXPECT_EQ(pixels.size(0), decoder.frames_for(chunk, i == 0));
        EXPECT_LT(max_abs_diff(pixels, expected.narrow(0, begin, end - begin)), 1e-4)
            << "chunk " << i << ", latent frames per pass " << per_pass;
      }
    }
  }
}

TEST_F(WanVaeFixture, FeatureCacheAfterFirstChunkMatchesReference) {
  const at::Tensor latents = io->get("latents");
  const auto ranges = meta("stream_chunk_frame_ranges");
  const auto kinds = meta("feat_cache_kinds").at("after_chunk0");
  ASSERT_EQ(static_cast<int64_t>(kinds.size()),
            std::stoll(io->metadata().at("decoder_causal_conv_count")));
  WanVaeDecoder decoder(*weights, {});
  decoder.decode_pixels(
      latents.narrow(1, 0, latents.size(1) / static_cast<int64_t>(ranges.size())));
  const auto cache = decoder.feature_cache();
  // The reference counts every CausalConv3d; the 1x1x1 shortcuts are never cached and have no
  // slot here, so they are the "None" entries at the end.
  size_t compared = 0;
  for (size_t i = 0; i < kinds.size(); ++i) {
    if (kinds[i] != "tensor") {
      EXPECT_TRUE(i >= cache.size() || !cache[i].defined()) << "slot " << i;
      continue;
    }
    ASSERT_LT(i, cache.size());
    ASSERT_TRUE(cache[i].defined()) << "slot " << i;
    const at::Tensor expected =
        io->get("decode_stream.after_chunk0.feat_cache." + std::to_string(i));
    ASSERT_EQ(cache[i].sizes(), expected.sizes()) << "slot " << i;
    EXPECT_LT(max_abs_diff(cache[i], expected), 1e-4) << "slot " << i;
    ++compared;
  }
  EXPECT_EQ(compared, cache.size());
}

TEST_F(WanVaeFixture, EncoderMatchesReference) {
  WanVaeEncoder encoder(*weights, {});
  // encode.pixels is channel-first [1, 3, T, H, W]; the encoder takes [1, T, 3, H, W].
  const at::Tensor video = io->get("encode.pixels").permute({0, 2, 1, 3, 4});
  const at::Tensor expected = io->get("encode.latents");
  for (int64_t groups : {int64_t{1}, int64_t{2}}) {
    const at::Tensor latents = encoder.encode(video, groups);
    ASSERT_EQ(latents.sizes(), expected.sizes());
    EXPECT_LT(max_abs_diff(latents, expected), 1e-4) << "groups per pass " << groups;
  }
  EXPECT_THROW(encoder.encode(video.narrow(1, 0, 4)), ConfigError);
}

TEST_F(WanVaeFixture, RandomWeightsHaveTheReferenceNamesAndShapes) {
  const WeightStore random = make_random_wan_vae_weights(WanVaeConfig::infer(*weights), 7);
  ASSERT_EQ(random.names(), weights->names());
  for (const auto& name : weights->names())
    EXPECT_EQ(random.get(name).sizes(), weights->get(name).sizes()) << name;
  EXPECT_EQ(WanVaeConfig::infer(*weights), WanVaeConfig::tiny());
  // The released size builds and decodes one latent frame at a tiny resolution.
  const WeightStore full = make_random_wan_vae_weights(WanVaeConfig::wan_2_1(), 1, false);
  EXPECT_EQ(WanVaeConfig::infer(full), WanVaeConfig::wan_2_1());
}

TEST_F(WanVaeFixture, ClearErrors) {
  WanVaeDecoder decoder(*weights, {});
  EXPECT_THROW(decoder.decode(at::zeros({1, 3, 8, 4, 4})), ConfigError);
  WeightStore broken;
  for (const auto& name : weights->names())
    if (name != "decoder.upsamples.4.shortcut.weight") broken.add(name, weights->get(name));
  try {
    WanVaeDecoder bad(broken, {});
    FAIL() << "missing shortcut accepted";
  } catch (const WeightError& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.upsamples.4.shortcut"), std::string::npos)
        << e.what();
  }
  WeightStore reshaped;
  for (const auto& name : weights->names())
    reshaped.add(name, name == "decoder.middle.0.residual.2.weight"
                           ? weights->get(name).narrow(1, 0, 8)
                           : weights->get(name));
  EXPECT_THROW(WanVaeDecoder(reshaped, {}), WeightError);
}

}  // namespace
}  // namespace longlive::test
