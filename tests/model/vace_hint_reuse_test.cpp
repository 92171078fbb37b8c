// vace_hint_reuse (preset field, GeneratorOptions::vace_hint_reuse): a block's later denoising
// steps add the hints its first step computed instead of running the VACE blocks again. On the
// CPU with the fixture DiT and random VACE blocks (96 context channels).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/error.h"
#include "longlive/preset.h"
#include "longlive/vace.h"

namespace longlive::test {
namespace {

struct HintReuse : ::testing::Test {
  void SetUp() override {
    weights = WeightStore::open(fixture("dit_weights.safetensors"));
    stream = WeightStore::open(fixture("dit_stream.safetensors"));
    options = options_from_stream(stream);
    module = make_random_vace_weights(options.model, 96, 7);
    prompt = stream.get("prompt." +
                        metadata_json(stream, "calls").at(0).at("prompt").get<std::string>());
  }
  // Two VACE blocks (a new context each), traced; `vace` false: no VACE input at all.
  std::vector<BlockTrace> run(bool reuse, bool vace = true, at::Tensor* latents = nullptr) {
    GeneratorOptions o = options;
    o.vace_hint_reuse = reuse;
    StreamGenerator g(weights, o, nullptr, &module);
    g.start(prompt, 3);
    auto gen = at::detail::createCPUGenerator(5);
    std::vector<BlockTrace> traces(2);
    std::vector<at::Tensor> out;
    for (auto& trace : traces) {
      if (vace)
        g.set_vace(VaceInput{
            at::randn({96, o.frames_per_block, o.latent_height, o.latent_width}, gen), 0.8});
      out.push_back(g.next_block(&trace));
    }
    if (latents) *latents = at::cat(out, 1);
    return traces;
  }
  WeightStore weights, stream, module;
  GeneratorOptions options;
  at::Tensor prompt;
};

TEST_F(HintReuse, LaterStepsAddExactlyTheFirstStepsHints) {
  const auto full = run(false);
  const auto reused = run(true);
  const size_t steps = options.denoising_steps.size();
  ASSERT_GE(steps, 2u);
  for (size_t b = 0; b < full.size(); ++b) {
    ASSERT_EQ(reused[b].step_hints.size(), steps);
    ASSERT_EQ(full[b].step_hints.size(), steps);
    for (size_t s = 1; s < steps; ++s) {
      // Reuse: the hints added at step s are step 1's, bit for bit (the VACE blocks did not
      // run again); full VACE recomputes them under the step's timestep and input.
      EXPECT_TRUE(reused[b].step_hints[s].equal(reused[b].step_hints[0])) << b << " " << s;
      EXPECT_GT((full[b].step_hints[s] - full[b].step_hints[0]).abs().max().item<double>(), 0)
          << b << " " << s;
    }
  }
  // Block 0's first step is the same forward in both; its later steps are not.
  EXPECT_TRUE(reused[0].step_flows[0].equal(full[0].step_flows[0]));
  EXPECT_TRUE(reused[0].step_hints[0].equal(full[0].step_hints[0]));
  EXPECT_FALSE(reused[0].step_flows[1].equal(full[0].step_flows[1]));
  // A new block computes new hints (its own context).
  EXPECT_FALSE(reused[1].step_hints[0].equal(reused[0].step_hints[0]));
}

TEST_F(HintReuse, OffOrWithoutVaceInputNothingChanges) {
  at::Tensor plain, reuse_flag, full_a, full_b;
  run(false, false, &plain);
  run(true, false, &reuse_flag);
  EXPECT_TRUE(reuse_flag.equal(plain)) << "the flag alone changes nothing without a VACE input";
  // Off is the default, and deterministic: two runs give the same latents.
  EXPECT_FALSE(GeneratorOptions{}.vace_hint_reuse);
  run(false, true, &full_a);
  run(false, true, &full_b);
  EXPECT_TRUE(full_a.equal(full_b));
  at::Tensor reused;
  run(true, true, &reused);
  EXPECT_FALSE(reused.equal(full_a));
}

TEST(HintReusePreset, ParsedCopiedAndOffByDefault) {
  const Preset off = parse_preset(R"({"name": "x"})", "x.json");
  EXPECT_FALSE(off.vace_hint_reuse);
  const Preset on = parse_preset(R"({"name": "x", "vace_hint_reuse": true})", "x.json");
  EXPECT_TRUE(on.vace_hint_reuse);
  GeneratorOptions o;
  o.apply(on);
  EXPECT_TRUE(o.vace_hint_reuse);
  EXPECT_EQ(to_json(on).at("vace_hint_reuse"), true);
  EXPECT_THROW(parse_preset(R"({"name": "x", "vace_hint_reuse": 1})", "x.json"), ConfigError);
}

}  // namespace
}  // namespace longlive::test
