// Prompt transitions in the generator, on the fixture weights: N = 0 is the hard cut, N > 0
// conditions block k on the interpolation at k / N, the end can re-cache.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "dit_fixture.h"
#include "longlive/error.h"

namespace longlive::test {
namespace {

struct Fixture {
  WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  GeneratorOptions options = options_from_stream(stream);
  // Fixture prompts padded to text_len the way the DiT pads them.
  at::Tensor prompt(const std::string& name) const {
    const at::Tensor p = stream.get("prompt." + name).to(at::kFloat);
    return at::constant_pad_nd(p, {0, 0, 0, options.model.text_len - p.size(1)});
  }
  // A third prompt: the fixture's C when it switches twice or more, else a random embedding of
  // A's shape and scale (these tests compare the generator with itself, not with the reference).
  at::Tensor third() const {
    if (stream.contains("prompt.C")) return prompt("C");
    const at::Tensor a = prompt("A");
    return at::randn(a.sizes(), at::detail::createCPUGenerator(31)) * a.std();
  }
  std::unique_ptr<StreamGenerator> started(const std::string& name, int blocks) const {
    auto g = std::make_unique<StreamGenerator>(weights, options);
    g->start(prompt(name), 5);
    for (int i = 0; i < blocks; ++i) g->next_block();
    return g;
  }
};

TEST(DitTransition, ZeroBlocksIsTheHardSwitchExactly) {
  const Fixture s;
  auto cut = s.started("A", 2);
  auto zero = s.started("A", 2);
  cut->switch_prompt(s.prompt("B"));
  zero->transition_to(s.prompt("B"), {.blocks = 0, .recache_at_end = false});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at::equal(cut->next_block(), zero->next_block()));
  EXPECT_EQ(cut->stats().recaches, 1);
  EXPECT_EQ(zero->stats().recaches, 1);
  EXPECT_TRUE(at::equal(zero->conditioning(), s.prompt("B")));
}

TEST(DitTransition, EachBlockIsConditionedOnTheAnalyticInterpolation) {
  const Fixture s;
  const at::Tensor a = s.prompt("A").to(at::kDouble), b = s.prompt("B").to(at::kDouble);
  auto g = s.started("A", 1);
  g->transition_to(s.prompt("B"), {.blocks = 4, .interpolation = Interpolation::linear});
  for (int k = 1; k <= 4; ++k) {
    EXPECT_TRUE(g->transition_active());
    g->next_block();
    const double t = k / 4.0;
    const at::Tensor expected = a * (1 - t) + b * t;
    EXPECT_LT((g->conditioning().to(at::kDouble) - expected).abs().max().item<double>(), 1e-6)
        << "block " << k;
  }
  EXPECT_FALSE(g->transition_active());
  EXPECT_TRUE(at::equal(g->conditioning(), s.prompt("B")));
  EXPECT_EQ(g->stats().recaches, 0);
}

TEST(DitTransition, MatchesSettingTheMixedConditioningByHand) {
  const Fixture s;
  auto transition = s.started("A", 2);
  auto manual = s.started("A", 2);
  transition->transition_to(s.third(), {.blocks = 3, .interpolation = Interpolation::slerp});
  for (int k = 1; k <= 4; ++k) {
    manual->set_conditioning(slerp_embeddings(s.prompt("A"), s.third(), std::min(k, 3) / 3.0));
    EXPECT_TRUE(at::equal(transition->next_block(), manual->next_block())) << "block " << k;
  }
}

TEST(DitTransition, RecacheAtTheEndIsAHardCutOnTheLastBlock) {
  const Fixture s;
  auto transition = s.started("A", 3);
  auto manual = s.started("A", 3);
  transition->transition_to(
      s.prompt("B"), {.blocks = 2, .interpolation = Interpolation::linear, .recache_at_end = true});
  manual->set_conditioning(lerp_embeddings(s.prompt("A"), s.prompt("B"), 0.5));
  EXPECT_TRUE(at::equal(transition->next_block(), manual->next_block()));
  EXPECT_EQ(transition->stats().recaches, 0);
  manual->switch_prompt(s.prompt("B"));
  EXPECT_TRUE(at::equal(transition->next_block(), manual->next_block()));
  EXPECT_EQ(transition->stats().recaches, 1);
  EXPECT_TRUE(at::equal(transition->next_block(), manual->next_block()));
}

TEST(DitTransition, StartsFromAPendingCutAndIsReplacedByANewCommand) {
  const Fixture s;
  auto g = s.started("A", 2);
  g->switch_prompt(s.prompt("B"));
  g->transition_to(s.third(), {.blocks = 2, .interpolation = Interpolation::linear});
  g->next_block();  // re-caches under B, then conditions on (B + C) / 2
  EXPECT_EQ(g->stats().recaches, 1);
  const at::Tensor mid = (s.prompt("B").to(at::kDouble) + s.third().to(at::kDouble)) / 2;
  EXPECT_LT((g->conditioning().to(at::kDouble) - mid).abs().max().item<double>(), 1e-6);
  g->set_conditioning(s.prompt("A"));
  EXPECT_FALSE(g->transition_active());
  g->next_block();
  EXPECT_TRUE(at::equal(g->conditioning(), s.prompt("A")));
}

TEST(DitTransition, BadCallsAreRejected) {
  const Fixture s;
  StreamGenerator g(s.weights, s.options);
  EXPECT_THROW(g.transition_to(s.prompt("A"), {.blocks = 2}), Error);
  g.start(s.prompt("A"), 1);
  EXPECT_THROW(g.transition_to(s.prompt("B"), {.blocks = -1}), ConfigError);
  const at::Tensor wide = at::zeros({int64_t{1}, int64_t{4}, s.options.model.text_dim + 1});
  EXPECT_THROW(g.transition_to(wide, {.blocks = 2}), ConfigError);
  EXPECT_FALSE(g.transition_active());
}

}  // namespace
}  // namespace longlive::test
