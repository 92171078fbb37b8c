// Giving a block up mid-way (StreamGenerator::next_block_unless): a switch that arrives between
// two denoising steps applies to that block, and the stream is bit for bit the one where the
// switch came before the block.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "dit_fixture.h"
#include "scoped_env.h"

namespace longlive::test {
namespace {

struct Stream : DitStream {
  static constexpr uint64_t kSeed = 5;
  std::unique_ptr<StreamGenerator> started(const GeneratorOptions& o, int64_t blocks) const {
    return DitStream::started(o, blocks, kSeed);
  }
  // The first block that may be given up (it writes no sink slot).
  static int64_t first_abandonable(const GeneratorOptions& o) {
    return std::max<int64_t>(1, (o.sink_frames + o.frames_per_block - 1) / o.frames_per_block);
  }
};

// Asks after each step; at step `at` runs `then` and answers yes.
struct Abandon {
  int64_t at = 0;
  std::function<void()> then;
  int64_t asked = 0;
  bool operator()() {
    if (asked++ != at) return false;
    if (then) then();
    return true;
  }
};

void expect_same_blocks(StreamGenerator& actual, StreamGenerator& expected, int blocks,
                        const std::string& what) {
  for (int i = 0; i < blocks; ++i) {
    const at::Tensor a = actual.next_block();
    const at::Tensor e = expected.next_block();
    EXPECT_TRUE(at::equal(a, e)) << what << ", block " << i << " after: max |diff| "
                                 << max_abs_diff(a, e);
  }
  EXPECT_EQ(actual.blocks_generated(), expected.blocks_generated()) << what;
  EXPECT_EQ(actual.frames_generated(), expected.frames_generated()) << what;
}

// A cut between any two steps, before the window is full and past it, with a global and a
// rolling sink: the redone block and the ones after equal a cut made before the block. The
// comparison has teeth: the stream that ignored the cut differs.
TEST(DitAbandon, ACutMidBlockEqualsTheCutBeforeIt) {
  const Stream s;
  const int64_t steps = static_cast<int64_t>(s.options.denoising_steps.size());
  for (const bool global_sink : {true, false}) {
    GeneratorOptions o = s.options;
    o.global_sink = global_sink;
    for (const int64_t blocks : {s.first_abandonable(o), Stream::blocks_past_window(o)}) {
      for (const int64_t step : {int64_t{0}, steps - 1}) {
        const std::string what =
            fmt::format("global sink {}, after {} blocks, at step {}", global_sink, blocks, step);
        auto reference = s.started(o, blocks);
        auto live = s.started(o, blocks);
        auto ignored = s.started(o, blocks);
        reference->switch_prompt(s.prompt("B"));
        Abandon abandon{.at = step, .then = [&] { live->switch_prompt(s.prompt("B")); }};
        const std::optional<at::Tensor> given_up =
            live->next_block_unless([&] { return abandon(); });
        EXPECT_FALSE(given_up.has_value()) << what;
        EXPECT_EQ(abandon.asked, step + 1) << what;
        EXPECT_EQ(live->blocks_generated(), blocks) << what;
        EXPECT_EQ(live->stats().abandoned_blocks, 1) << what;
        EXPECT_FALSE(at::equal(ignored->next_block(), reference->next_block())) << what;
        auto again = s.started(o, blocks);
        again->switch_prompt(s.prompt("B"));
        expect_same_blocks(*live, *again, 2, what);
      }
    }
  }
}

// A block that started under a cut (its re-cache done) and is given up for another cut: the
// second prompt wins, as two cuts before the block would have it. A block given up with nothing
// changed is redone as it was.
TEST(DitAbandon, SecondCutAndNoChangeRedoExactly) {
  const Stream s;
  const GeneratorOptions& o = s.options;
  const int64_t blocks = Stream::blocks_past_window(o);
  const int64_t steps = static_cast<int64_t>(o.denoising_steps.size());
  {
    auto reference = s.started(o, blocks);
    reference->switch_prompt(s.prompt("B"));
    reference->switch_prompt(s.prompt("A"));
    auto live = s.started(o, blocks);
    live->switch_prompt(s.prompt("B"));
    // After the second step (the only one in a one-step schedule).
    Abandon abandon{.at = std::min<int64_t>(1, steps - 1),
                    .then = [&] { live->switch_prompt(s.prompt("A")); }};
    EXPECT_FALSE(live->next_block_unless([&] { return abandon(); }).has_value());
    expect_same_blocks(*live, *reference, 2, "second cut");
  }
  {
    auto reference = s.started(o, blocks);
    auto live = s.started(o, blocks);
    Abandon abandon{.at = 0};
    EXPECT_FALSE(live->next_block_unless([&] { return abandon(); }).has_value());
    expect_same_blocks(*live, *reference, 2, "no change");
  }
}

// Blocks that could not be redone exactly are never given up, and the question is not asked:
// the first block while it writes the sink, and a block of a transition. Otherwise it is asked
// once per step and a block answered "no" equals next_block()'s.
TEST(DitAbandon, OnlyBlocksThatCanBeRedoneAreAsked) {
  const Stream s;
  const GeneratorOptions& o = s.options;
  const int64_t steps = static_cast<int64_t>(o.denoising_steps.size());
  int64_t asked = 0;
  auto never = [&] {
    ++asked;
    return false;
  };
  auto live = s.started(o, 0);
  auto reference = s.started(o, 0);
  if (o.sink_frames > 0) {
    ASSERT_TRUE(live->next_block_unless(never).has_value());
    EXPECT_EQ(asked, 0) << "the first block writes the sink";
    reference->next_block();
  }
  for (int64_t b = live->blocks_generated(); b < s.first_abandonable(o); ++b) {
    live->next_block();
    reference->next_block();
  }
  asked = 0;
  const std::optional<at::Tensor> kept = live->next_block_unless(never);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(asked, steps);
  EXPECT_TRUE(at::equal(*kept, reference->next_block()));

  live->transition_to(s.prompt("B"), {.blocks = 2, .interpolation = Interpolation::linear});
  asked = 0;
  ASSERT_TRUE(live->next_block_unless(never).has_value());
  EXPECT_EQ(asked, 0) << "a block of a transition";
  EXPECT_EQ(live->stats().abandoned_blocks, 0);
}

// Denoising steps in two parts (LONGLIVE_STEP_PARTS=2; CausalWanModel::run_first_part /
// run_rest): the stream is bit for bit the one of whole steps, and a block may be given up between
// the two parts of a step (the question is asked there too), redone as if the cut came before it.
// The comparison has teeth: the stream that ignored the cut differs.
TEST(DitAbandon, AStepInPartsIsTheWholeStepAndStopsHalfWay) {
  const Stream s;
  const GeneratorOptions& o = s.options;
  const int64_t blocks = Stream::blocks_past_window(o);
  const int64_t steps = static_cast<int64_t>(o.denoising_steps.size());
  auto whole = s.started(o, 0);
  std::unique_ptr<StreamGenerator> parts;
  {
    const ScopedEnv in_parts("LONGLIVE_STEP_PARTS", "2");
    parts = s.started(o, 0);
    expect_same_blocks(*parts, *whole, static_cast<int>(blocks + 1), "steps in parts");
  }
  // The first question (half-way through the first step) and the end of the step before the last;
  // a one-step schedule asks once, at its end.
  for (const int64_t asked_at : {int64_t{0}, std::max<int64_t>(0, 2 * steps - 3)}) {
    const ScopedEnv in_parts("LONGLIVE_STEP_PARTS", "2");
    const std::string what = fmt::format("cut at question {}", asked_at);
    auto reference = s.started(o, blocks);
    auto live = s.started(o, blocks);
    auto ignored = s.started(o, blocks);
    reference->switch_prompt(s.prompt("B"));
    Abandon abandon{.at = asked_at, .then = [&] { live->switch_prompt(s.prompt("B")); }};
    EXPECT_FALSE(live->next_block_unless([&] { return abandon(); }).has_value()) << what;
    EXPECT_EQ(abandon.asked, asked_at + 1) << what;
    EXPECT_EQ(live->stats().abandoned_blocks, 1) << what;
    EXPECT_FALSE(at::equal(ignored->next_block(), reference->next_block())) << what;
    auto again = s.started(o, blocks);
    again->switch_prompt(s.prompt("B"));
    expect_same_blocks(*live, *again, 2, what);
  }
  // Asked twice a step (half-way and at its end), once at the last step (its end).
  const ScopedEnv in_parts("LONGLIVE_STEP_PARTS", "2");
  auto live = s.started(o, blocks);
  int64_t asked = 0;
  ASSERT_TRUE(live->next_block_unless([&] {
                    ++asked;
                    return false;
                  })
                  .has_value());
  EXPECT_EQ(asked, 2 * steps - 1);
}

}  // namespace
}  // namespace longlive::test
