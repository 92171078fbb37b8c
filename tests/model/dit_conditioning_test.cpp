// set_conditioning (soft prompt change, no re-cache) and the generator's public contract around
// it, on the fixture weights and configuration.
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/error.h"

namespace longlive::test {
namespace {

struct Fixture {
  WeightStore weights = WeightStore::open(fixture("dit_weights.safetensors"));
  WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  GeneratorOptions options = options_from_stream(stream);
  at::Tensor prompt(const std::string& name) const { return stream.get("prompt." + name); }
};

TEST(DitConditioning, BeforeTheFirstBlockEqualsStartingWithThatPrompt) {
  const Fixture s;
  StreamGenerator direct(s.weights, s.options);
  direct.start(s.prompt("B"), 7);
  StreamGenerator swapped(s.weights, s.options);
  swapped.start(s.prompt("A"), 7);
  swapped.set_conditioning(s.prompt("B"));
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(at::equal(direct.next_block(), swapped.next_block()));
}

TEST(DitConditioning, MidStreamChangesTheNextBlockWithoutRecache) {
  const Fixture s;
  auto run = [&](const std::string& second_prompt, bool hard_cut) {
    StreamGenerator g(s.weights, s.options);
    g.start(s.prompt("A"), 3);
    g.next_block();
    g.next_block();
    if (hard_cut) {
      g.switch_prompt(s.prompt(second_prompt));
    } else {
      g.set_conditioning(s.prompt(second_prompt));
    }
    const at::Tensor out = g.next_block();
    return std::pair{out, g.stats().recaches};
  };
  const auto [same, same_recaches] = run("A", false);
  const auto [soft, soft_recaches] = run("B", false);
  const auto [hard, hard_recaches] = run("B", true);
  EXPECT_EQ(same_recaches, 0);
  EXPECT_EQ(soft_recaches, 0);
  EXPECT_EQ(hard_recaches, 1);
  // Re-conditioning on the same prompt is a no-op; another prompt changes the block; the hard cut
  // (which also rewrites the cached K/V) differs from the soft change.
  StreamGenerator reference(s.weights, s.options);
  reference.start(s.prompt("A"), 3);
  reference.next_block();
  reference.next_block();
  EXPECT_TRUE(at::equal(reference.next_block(), same));
  EXPECT_GT(max_abs_diff(soft, same), 1e-3);
  EXPECT_GT(max_abs_diff(hard, soft), 1e-3);
}

TEST(DitConditioning, CallsBeforeStartAndBadWidthsAreRejected) {
  const Fixture s;
  StreamGenerator g(s.weights, s.options);
  EXPECT_THROW(g.set_conditioning(s.prompt("A")), Error);
  EXPECT_THROW(g.switch_prompt(s.prompt("A")), Error);
  EXPECT_THROW(g.next_block(), Error);
  g.start(s.prompt("A"), 1);
  const at::Tensor wide = at::zeros({int64_t{1}, int64_t{4}, s.options.model.text_dim + 1});
  EXPECT_THROW(g.set_conditioning(wide), ConfigError);
  EXPECT_THROW(g.switch_prompt(wide), ConfigError);
  const at::Tensor tall =
      at::zeros({int64_t{1}, s.options.model.text_len + 1, s.options.model.text_dim});
  EXPECT_THROW(g.switch_prompt(tall), ConfigError);
}

}  // namespace
}  // namespace longlive::test
