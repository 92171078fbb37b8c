// Video-to-video on the streaming DiT (no VACE): a block starts from input latents noised to the
// strength and skips the steps above it. Strength 1 must reproduce the reference stream of
// dit_stream.safetensors (the input is fully replaced by noise).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/error.h"
#include "sampler/flow_match.h"

namespace longlive::test {
namespace {

constexpr double kTolerance = 1e-4;

struct V2vFixture : ::testing::Test {
  void SetUp() override {
    weights = WeightStore::open(fixture("dit_weights.safetensors"));
    stream = WeightStore::open(fixture("dit_stream.safetensors"));
    options = options_from_stream(stream);
    const auto calls = metadata_json(stream, "calls");
    prompt = stream.get("prompt." + calls.at(0).at("prompt").get<std::string>());
    const int64_t f = options.frames_per_block;
    // Some input latents: the reference's second block (any block-shaped latents would do).
    input = stream.get("output_latents").narrow(1, f, f).clone();
  }
  std::unique_ptr<StreamGenerator> started() {
    auto g = std::make_unique<StreamGenerator>(weights, options);
    g->start(prompt, 0);
    g->set_noise_source(std::make_unique<RecordedNoise>(stream, "", options.frames_per_block));
    return g;
  }
  WeightStore weights, stream;
  GeneratorOptions options;
  at::Tensor prompt, input;
};

TEST_F(V2vFixture, StrengthOneIsThePlainStream) {
  auto g = started();
  g->set_v2v(V2vInput{input, 1.0});
  BlockTrace trace;
  const at::Tensor block = g->next_block(&trace);
  EXPECT_EQ(trace.step_flows.size(), options.denoising_steps.size());
  const int64_t f = options.frames_per_block;
  EXPECT_LT(max_abs_diff(block, stream.get("output_latents").narrow(1, 0, f)), kTolerance);
  EXPECT_LT(max_abs_diff(trace.step_inputs[0], stream.get("b0.s0.x_in")), kTolerance);
}

TEST_F(V2vFixture, LowerStrengthSkipsStepsAndStartsFromTheNoisedInput) {
  auto g = started();
  const auto& sigmas = g->sampler().step_sigmas();
  if (sigmas.size() < 2) GTEST_SKIP() << "the fixture's schedule has one step: none to skip";
  // Between two steps' sigmas, half-way down the schedule: the steps before are skipped.
  const size_t skipped = sigmas.size() / 2;
  const double strength = 0.5 * (sigmas[skipped - 1] + sigmas[skipped]);
  g->set_v2v(V2vInput{input, strength});
  BlockTrace trace;
  const at::Tensor block = g->next_block(&trace);
  ASSERT_EQ(trace.step_flows.size(), sigmas.size() - skipped);
  const double sigma = sigmas[skipped];
  const int64_t f = options.frames_per_block;
  const at::Tensor noise = stream.get("noise").narrow(1, 0, f);
  EXPECT_LT(max_abs_diff(trace.step_inputs[0], (1 - sigma) * input + sigma * noise), 1e-6);
  EXPECT_TRUE(at::isfinite(block).all().item<bool>());
  // Cleared: the next block runs every step again.
  g->set_v2v(std::nullopt);
  BlockTrace next;
  g->next_block(&next);
  EXPECT_EQ(next.step_flows.size(), sigmas.size());
}

TEST_F(V2vFixture, BadInputIsRefused) {
  auto g = started();
  EXPECT_THROW(g->set_v2v(V2vInput{input, 0.0}), ConfigError);
  EXPECT_THROW(g->set_v2v(V2vInput{input, 1.5}), ConfigError);
  // One frame more than a block has (any frames_per_block).
  EXPECT_THROW(g->set_v2v(V2vInput{at::cat({input, input.narrow(1, 0, 1)}, 1), 0.5}), ConfigError);
  EXPECT_THROW(g->set_v2v(V2vInput{at::Tensor(), 0.5}), ConfigError);
  EXPECT_FALSE(g->v2v().has_value());
}

}  // namespace
}  // namespace longlive::test
