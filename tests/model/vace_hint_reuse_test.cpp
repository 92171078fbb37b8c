// vace_hint_reuse (preset field, GeneratorOptions::vace_hint_reuse): a block's later denoising
// steps add the hints its first step computed instead of running the VACE blocks again. And with
// full hints, the context's embedding a block's first step computes for its later steps. On the
// CPU with the fixture DiT and random VACE blocks (96 context channels).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "cache/cross_attn_cache.h"
#include "cache/kv_cache.h"
#include "dit_fixture.h"
#include "longlive/error.h"
#include "longlive/preset.h"
#include "longlive/vace.h"
#include "model/causal_wan.h"
#include "scoped_env.h"

namespace longlive::test {
namespace {

struct HintReuse : ::testing::Test {
  static constexpr int64_t kContextChannels = 96;  // of the random VACE blocks (Wan2.1-VACE's)
  void SetUp() override {
    LONGLIVE_REQUIRE_FIXTURE("dit");  // the DiT stream's model, with random VACE blocks
    weights = WeightStore::open(fixture("dit_weights.safetensors"));
    stream = WeightStore::open(fixture("dit_stream.safetensors"));
    options = options_from_stream(stream);
    module = make_random_vace_weights(options.model, kContextChannels, 7);
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
            at::randn({kContextChannels, o.frames_per_block, o.latent_height, o.latent_width}, gen),
            0.8});
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
  const size_t steps = options.denoising_steps.size();
  if (steps < 2) GTEST_SKIP() << "the fixture's schedule has one step: no later step to reuse in";
  const auto full = run(false);
  const auto reused = run(true);
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
  // With one step there is no later step: reuse is full VACE.
  EXPECT_EQ(reused.equal(full_a), options.denoising_steps.size() < 2);
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

// Full hints: the block's first step embeds the context (patch embedding, before_proj) into a
// buffer its later steps start from; LONGLIVE_VACE_PROLOGUE=step embeds it at every step. The
// same hints, flows and latents bit for bit over two blocks with a new context each.
TEST_F(HintReuse, ContextEmbeddedOncePerBlockGivesTheStepsOfEveryStepEmbedding) {
  at::Tensor once_latents, every_latents;
  const auto once = run(false, true, &once_latents);
  std::vector<BlockTrace> every;
  {
    const ScopedEnv per_step("LONGLIVE_VACE_PROLOGUE", "step");
    every = run(false, true, &every_latents);
  }
  EXPECT_TRUE(once_latents.equal(every_latents));
  ASSERT_EQ(once.size(), every.size());
  for (size_t b = 0; b < once.size(); ++b) {
    ASSERT_EQ(once[b].step_hints.size(), every[b].step_hints.size());
    for (size_t s = 0; s < once[b].step_hints.size(); ++s) {
      EXPECT_TRUE(once[b].step_hints[s].equal(every[b].step_hints[s])) << b << " " << s;
      EXPECT_TRUE(once[b].step_flows[s].equal(every[b].step_flows[s])) << b << " " << s;
    }
  }
}

// The model's side of it (ForwardArgs::vace_embedded): a call given the context writes its
// embedding into the buffer; a call given only the buffer computes the same hints and flow as one
// given the context; a buffer of another shape is refused with both shapes named.
TEST_F(HintReuse, AStepGivenTheEmbeddingEqualsAStepGivenTheContext) {
  const GeneratorOptions& o = options;
  const CausalWanModel dit(weights, o.model, at::kCPU, at::kFloat, {});
  const std::shared_ptr<const CausalWanModel> model = dit.with_vace(module);
  CrossAttnCache cross;
  model->build_cross_cache(prompt.to(at::kFloat), cross);
  KvCache kv(model->kv_shape(o.latent_height, o.latent_width, o.sink_frames, o.local_attn_frames),
             at::TensorOptions().dtype(at::kFloat));
  const int64_t f = o.frames_per_block;
  const KvCache::Plan plan = kv.plan(0, f, KvWriteKind::block, o.global_sink);
  auto gen = at::detail::createCPUGenerator(11);
  const at::Tensor latents =
      at::randn({1, f, o.model.in_channels, o.latent_height, o.latent_width}, gen);
  CausalWanModel::ForwardArgs args = model->prepare(latents, at::full({1, f}, 750.f), plan);
  args.vace_scale = at::full({1}, 0.8f);
  const int64_t blocks = model->vace_layout().blocks();
  const int64_t tokens =
      f * (o.latent_height / o.model.patch[1]) * (o.latent_width / o.model.patch[2]);
  auto hints_buffer = [&] { return at::full({blocks, tokens, o.model.dim}, NAN); };

  CausalWanModel::ForwardArgs from_context = args;
  from_context.vace_context =
      at::randn({kContextChannels, f, o.latent_height, o.latent_width}, gen);
  from_context.vace_hints = hints_buffer();
  const at::Tensor reference = model->run(from_context, kv, plan, cross);

  CausalWanModel::ForwardArgs first = from_context;
  first.vace_hints = hints_buffer();
  first.vace_embedded = at::full({1, tokens, o.model.dim}, NAN);
  EXPECT_TRUE(model->run(first, kv, plan, cross).equal(reference));
  EXPECT_TRUE(first.vace_embedded.isfinite().all().item<bool>()) << "the embedding was written";
  EXPECT_TRUE(first.vace_hints.equal(from_context.vace_hints));

  CausalWanModel::ForwardArgs later = args;
  later.vace_embedded = first.vace_embedded;
  later.vace_hints = hints_buffer();
  EXPECT_TRUE(model->run(later, kv, plan, cross).equal(reference));
  EXPECT_TRUE(later.vace_hints.equal(from_context.vace_hints));

  later.vace_embedded = at::zeros({1, tokens + 1, o.model.dim});
  try {
    model->run(later, kv, plan, cross);
    ADD_FAILURE() << "an embedding buffer of another shape was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("VACE embedding buffer"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longlive::test
