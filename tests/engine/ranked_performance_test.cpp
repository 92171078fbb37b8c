// A performance on several ranks (Performance::set_ranks: what `render --gpus`, the engine's
// EngineOptions::ranks and the studio's GPUs box use) makes the video of one rank: a timeline
// recorded on one rank, replayed on 2 and 3 CPU ranks over Gloo, and an engine on 2 ranks whose
// recorded timeline replays on one. What several ranks do not do yet is refused by name, and the
// engine's video goes on after a refused preset change.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <mutex>

#include "engine_support.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/performance.h"
#include "longlive/ranked_session.h"

namespace longlive::test {
namespace {

PresetLookup only(const Preset& preset) {
  return [preset](const std::string& name) {
    if (name != preset.name) throw ConfigError("no preset '" + name + "'");
    return preset;
  };
}

std::vector<at::Tensor> replayed(const Timeline& t, const RankPlan& ranks) {
  std::vector<at::Tensor> out;
  replay(
      t, tiny_model(at::kCPU), only(windowed_preset()),
      [&](const ReplayBlock& b) { out.push_back(b.latents.to(at::kCPU).clone()); }, "test", {},
      ranks);
  return out;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(RankedPerformance, ATimelineReplayedOnRanksIsTheOneRankVideo) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  // Recorded on one rank: a transition and a cut before the window is full, blocks past it.
  Performance live(tiny_model(at::kCPU), windowed_preset(), 32, 32);
  std::vector<at::Tensor> expected;
  auto block = [&] { expected.push_back(live.next_block().to(at::kCPU).clone()); };
  live.start(PromptMix::single("a red fox"), 7);
  block();
  live.transition(PromptMix::single("a blue whale"), {.blocks = 2});
  block();
  live.cut(PromptMix::single("a green forest"));
  for (int64_t i = 0; i < blocks_past_window(live.generator()->options()); ++i) block();
  live.stop();
  const Timeline t = live.timeline();
  ASSERT_EQ(t.blocks, static_cast<int64_t>(expected.size()));
  for (const int ranks : {2, 3}) {
    const auto actual = replayed(t, {.ranks = ranks});
    ASSERT_EQ(actual.size(), expected.size()) << ranks << " ranks";
    for (size_t b = 0; b < expected.size(); ++b)
      EXPECT_LT(max_diff(actual[b], expected[b]), 1e-5)
          << fmt::format("{} ranks, block {}", ranks, b);
  }
  // The comparison has teeth: blocks under other prompts differ.
  EXPECT_GT(max_diff(expected.front(), expected.back()), 1e-3);
}

TEST(RankedPerformance, WhatRanksDoNotDoYetIsRefusedByName) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  Performance p(tiny_model(at::kCPU), windowed_preset(), 32, 32);
  EXPECT_THROW(p.set_ranks({.ranks = 0}), ConfigError);
  p.set_ranks({.ranks = 2});
  EXPECT_EQ(p.ranks(), 2);
  p.start(PromptMix::single("a red fox"), 7);
  ASSERT_NE(p.generator(), nullptr);
  EXPECT_EQ(p.session()->generator, nullptr) << "rank 0's session runs no generator of its own";
  p.next_block();
  EXPECT_THROW(p.set_ranks({.ranks = 1}), Error) << "the ranks change while a video runs";
  try {
    p.set_preset(windowed_preset("other"));
    FAIL() << "a running video on ranks changed its preset";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("2 ranks"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p.preset().name, "windowed") << "the refused preset is not taken";
  p.next_block();  // the video goes on
  p.stop();
  // Stopped, a preset change reopens the ranks at the next start.
  p.set_preset(windowed_preset("other"));
  p.start(PromptMix::single("a red fox"), 7);
  EXPECT_EQ(p.session()->preset.name, "other");
  p.next_block();
}

TEST(RankedPerformance, AnEngineOnTwoRanksRecordsWhatOneRankReplays) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  std::mutex m;
  std::vector<at::Tensor> live;
  std::optional<Timeline> recorded;
  int64_t frames = 0;
  Engine::Callbacks cb;
  cb.on_latents = [&](int64_t, const at::Tensor& latents) {
    std::lock_guard lock(m);
    live.push_back(latents.to(at::kCPU).clone());
  };
  cb.on_frame = [&](const EngineFrame&) {
    std::lock_guard lock(m);
    ++frames;
  };
  cb.on_timeline = [&](const Timeline& t) {
    std::lock_guard lock(m);
    recorded = t;
  };
  std::vector<std::string> errors;
  cb.on_error = [&](const std::string& e) {
    std::lock_guard lock(m);
    errors.push_back(e);
  };
  EngineOptions options;
  options.ranks = {.ranks = 2};
  Engine engine(tiny_model(at::kCPU), windowed_preset(), cb, 32, 32, options);
  auto blocks = [&] {
    std::lock_guard lock(m);
    return live.size();
  };
  engine.start("a red fox", 11);
  ASSERT_TRUE(wait_for([&] { return blocks() >= 1; }));
  EXPECT_EQ(engine.stats().ranks, 2);
  engine.switch_prompt("a blue whale");
  ASSERT_TRUE(wait_for([&] { return blocks() >= 3; }));
  // A preset change while the video runs on ranks: refused with its reason, the video goes on.
  engine.set_preset(windowed_preset("other"));
  const size_t at = blocks();
  ASSERT_TRUE(wait_for([&] { return blocks() >= at + 2; }));
  engine.stop();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(m);
    return recorded.has_value();
  }));
  std::lock_guard lock(m);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("2 ranks keeps its preset"), std::string::npos) << errors[0];
  EXPECT_GT(frames, 0) << "rank 0's decoder delivered the frames";
  const auto one = replayed(*recorded, {.ranks = 1});
  ASSERT_EQ(one.size(), live.size());
  for (size_t b = 0; b < live.size(); ++b)
    EXPECT_LT(max_diff(one[b], live[b]), 1e-5) << "block " << b;
}

}  // namespace
}  // namespace longlive::test
