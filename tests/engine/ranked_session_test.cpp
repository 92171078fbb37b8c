// A stream opened on several ranks through RankedSession (what `generate --gpus` and
// `bench --gpus` open) makes the same latents as the one session the factory opens for the same
// preset: 2 and 3 CPU ranks over Gloo, through a prompt switch before the window is full and
// blocks past it. The ranks' sessions share the lead's roles: only rank 0 has prompts.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "engine_support.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/ranked_session.h"
#include "longlive/session.h"

namespace longlive::test {
namespace {

TEST(RankedSession, RanksMakeTheOneSessionStream) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  SessionFactory factory(tiny_model(at::kCPU));
  auto one = factory.open(windowed_preset(), 32, 32);
  const at::Tensor a = one->embed(PromptMix::single("a red fox"));
  const at::Tensor b = one->embed(PromptMix::single("a blue whale"));
  // With a switch after the first block (the window not yet full).
  const int64_t blocks = blocks_past_window(one->generator->options());
  std::vector<at::Tensor> expected;
  one->generator->start(a, 9);
  for (int i = 0; i < blocks; ++i) {
    if (i == 1) one->generator->switch_prompt(b);
    expected.push_back(one->generator->next_block().clone());
  }
  for (const int ranks : {2, 3}) {
    auto ranked =
        RankedSession::open(tiny_model(at::kCPU), {}, windowed_preset(), 32, 32, {.ranks = ranks});
    ASSERT_EQ(ranked->ranks(), ranks);
    EXPECT_EQ(ranked->backend(), RankBackend::gloo);
    ASSERT_EQ(ranked->devices().size(), 1u) << "CPU ranks share the CPU";
    // The lead's prompts (the same text seeds the same tiny encoder) drive every rank.
    const at::Tensor ra = ranked->lead().embed(PromptMix::single("a red fox"));
    EXPECT_TRUE(at::equal(ra, a));
    ParallelStream& stream = ranked->stream();
    stream.each([&](StreamGenerator& g, int) { g.start(ra, 9); });
    for (int i = 0; i < blocks; ++i) {
      if (i == 1) stream.each([&](StreamGenerator& g, int) { g.switch_prompt(b); });
      const at::Tensor block = stream.next_block();
      EXPECT_LT((block - expected[static_cast<size_t>(i)]).abs().max().item<double>(), 1e-5)
          << fmt::format("{} ranks, block {}", ranks, i);
    }
    EXPECT_GT(stream.bytes_received(), 0);
    EXPECT_EQ(ranked->lead().generator, nullptr) << "the lead's unused generator is released";
  }
}

TEST(RankedSession, NamesWhatCannotBeOpened) {
  EXPECT_THROW(
      RankedSession::open(tiny_model(at::kCPU), {}, windowed_preset(), 32, 32, {.ranks = 0}),
      ConfigError);
  // NCCL needs a CUDA device per rank: ranks sharing the CPU cannot use it.
  try {
    RankedSession::open(tiny_model(at::kCPU), {}, windowed_preset(), 32, 32,
                        {.ranks = 2, .backend = RankBackend::nccl});
    FAIL() << "NCCL ranks on the CPU were opened";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("nccl"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longlive::test
