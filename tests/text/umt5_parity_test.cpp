// umT5 encoder against the reference (umt5_io.safetensors), sizes from the fixture.
#include <gtest/gtest.h>

#include <optional>

#include <ATen/ATen.h>

#include "fixtures.h"
#include "longlive/text_encoder.h"
#include "tensor_compare.h"

namespace longlive::test {
namespace {

struct Umt5Fixture : ::testing::Test {
  void SetUp() override {
    LONGLIVE_REQUIRE_FIXTURE("umt5");
    weights = WeightStore::open(fixture("umt5_weights.safetensors"));
    io = WeightStore::open(fixture("umt5_io.safetensors"));
    encoder.emplace(weights, UMT5Config::infer(weights), at::kCPU, at::kFloat);
  }
  WeightStore weights;
  WeightStore io;
  std::optional<UMT5Encoder> encoder;
};

TEST_F(Umt5Fixture, RelativePositionBucketsAndLayer0Bias) {
  const at::Tensor buckets = io.get("rel_pos_buckets");
  EXPECT_TRUE(at::equal(encoder->relative_buckets(buckets.size(0)), buckets));
  const at::Tensor bias = io.get("layer0_pos_bias");
  EXPECT_LT(max_abs_diff(encoder->position_bias(0, bias.size(-1)), bias), 1e-6);
}

// A preset change of text_encoder_device converts the resident encoder (no file read): the
// moved encoder computes exactly what one built in that dtype from the same weights computes,
// and moving back to float32 from bf16 is exact on bf16-representable weights (the public
// checkpoint is stored in bf16).
TEST_F(Umt5Fixture, MovedEncoderEqualsOneBuiltThere) {
  const at::Tensor ids = io.get("input_ids"), mask = io.get("attention_mask");
  UMT5Encoder built_bf16(weights, UMT5Config::infer(weights), at::kCPU, at::kBFloat16);
  encoder->move_to(at::kCPU, at::kBFloat16);
  EXPECT_EQ(encoder->dtype(), at::kBFloat16);
  EXPECT_TRUE(at::equal(encoder->forward(ids, mask), built_bf16.forward(ids, mask)));

  // The relative-position tables stay float32 in every dtype; the matrices went through bf16.
  WeightStore rounded;
  for (const auto& name : weights.names()) {
    const at::Tensor& t = weights.get(name);
    const bool table = name.find("pos_embedding") != std::string::npos;
    rounded.add(name, table ? t : t.to(at::kBFloat16).to(at::kFloat), "rounded");
  }
  UMT5Encoder built_from_rounded(rounded, UMT5Config::infer(weights), at::kCPU, at::kFloat);
  encoder->move_to(at::kCPU, at::kFloat);
  EXPECT_EQ(encoder->dtype(), at::kFloat);
  EXPECT_TRUE(at::equal(encoder->forward(ids, mask), built_from_rounded.forward(ids, mask)));
}

TEST_F(Umt5Fixture, EncoderOutputOnAllPositions) {
  const at::Tensor out = encoder->forward(io.get("input_ids"), io.get("attention_mask"));
  EXPECT_LT(max_abs_diff(out, io.get("encoder_out_raw")), 1e-4);
}

TEST_F(Umt5Fixture, PipelineEmbeddingsZeroPastTheValidLength) {
  const at::Tensor ids = io.get("input_ids");
  const at::Tensor mask = io.get("attention_mask");
  const at::Tensor expected = io.get("prompt_embeds");
  // One prompt at a time, as TextEncoder does it.
  for (int64_t row = 0; row < ids.size(0); ++row) {
    const at::Tensor out = encoder->forward(ids.narrow(0, row, 1), mask.narrow(0, row, 1));
    const int64_t valid = mask[row].sum().item<int64_t>();
    at::Tensor embeds = out.clone();
    embeds.narrow(1, valid, out.size(1) - valid).zero_();
    EXPECT_LT(max_abs_diff(embeds[0], expected[row]), 1e-4) << "row " << row;
  }
}

TEST_F(Umt5Fixture, TextEncoderWithByteTokenizerZeroesPadding) {
  // Text length and width are the fixture's: the tokenizer pads to the recorded input length,
  // and the encoder's width is its token embedding's.
  const int64_t text_len = io.get("input_ids").size(1);
  const UMT5Config config = UMT5Config::infer(weights);
  const int64_t width = weights.get("token_embedding.weight").size(1);
  TextEncoder text(Tokenizer::byte_fallback(config.vocab, text_len),
                   std::make_unique<UMT5Encoder>(weights, config, at::kCPU, at::kFloat));
  const std::string prompt = "a red fox";
  const at::Tensor e = text.encode(prompt);
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{1, text_len, width}));
  // One token per byte plus EOS, truncated to the text length.
  const int64_t valid = std::min<int64_t>(static_cast<int64_t>(prompt.size()) + 1, text_len);
  EXPECT_GT(e.narrow(1, 0, valid).abs().sum().item<double>(), 0);
  EXPECT_EQ(e.narrow(1, valid, text_len - valid).abs().sum().item<double>(), 0);
}

}  // namespace
}  // namespace longlive::test
