// A performance on several ranks (Performance::set_ranks: what `render --gpus`, the engine's
// EngineOptions::ranks and the studio's GPUs box use) makes the video of one rank: a timeline
// recorded on one rank, replayed on 2 and 3 CPU ranks over Gloo, preset changes mid-video, and an
// engine on 2 ranks (with a preset change) whose recorded timeline replays on one. What several
// ranks do not do yet is refused by name.
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

// The windowed preset, and a wider window under another name (a new generator on a change).
Preset wider_preset() {
  Preset wider = windowed_preset("wider");
  wider.local_attn_frames += wider.frames_per_block;
  return wider;
}

PresetLookup windowed_or_wider() {
  return [](const std::string& name) {
    if (name == "wider") return wider_preset();
    return only(windowed_preset())(name);
  };
}

std::vector<at::Tensor> replayed(const Timeline& t, const RankPlan& ranks) {
  std::vector<at::Tensor> out;
  replay(
      t, tiny_model(at::kCPU), windowed_or_wider(),
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
  EXPECT_EQ(p.ranks(), 2);
  p.next_block();  // the video goes on
  p.stop();
  // Stopped, a preset change reopens the ranks at the next start.
  p.set_preset(windowed_preset("other"));
  p.start(PromptMix::single("a red fox"), 7);
  EXPECT_EQ(p.session()->preset.name, "other");
  p.next_block();
}

// Preset changes mid-video on ranks: one that keeps the caches (fewer steps: continue_with on
// every rank's shard), one that needs a new generator (a wider window: every rank hands its
// stream over and re-caches), one that changes nothing the stream runs. The video and what each
// change did are the one rank's.
TEST(RankedPerformance, PresetChangesMidVideoMakeTheOneRankVideo) {
  if (!rank_backend_available(RankBackend::gloo)) GTEST_SKIP() << "built without Gloo headers";
  Preset fewer_steps = windowed_preset("fewer_steps");
  fewer_steps.denoising_steps = {1000, 500};
  const Preset wider = wider_preset();
  Preset wider_renamed = wider;
  wider_renamed.name = "wider_renamed";
  struct Run {
    std::vector<at::Tensor> blocks;
    std::vector<PresetChange> changes;
  };
  auto run = [&](int ranks) {
    Run out;
    Performance p(tiny_model(at::kCPU), windowed_preset(), 32, 32);
    p.set_ranks({.ranks = ranks});
    auto block = [&] { out.blocks.push_back(p.next_block().to(at::kCPU).clone()); };
    p.start(PromptMix::single("a red fox"), 7);
    block();
    block();
    out.changes.push_back(p.set_preset(fewer_steps));
    block();
    p.cut(PromptMix::single("a blue whale"));
    block();
    out.changes.push_back(p.set_preset(wider));
    for (int64_t i = 0; i < blocks_past_window(p.generator()->options()); ++i) block();
    out.changes.push_back(p.set_preset(wider_renamed));
    block();
    EXPECT_EQ(p.preset().name, "wider_renamed");
    EXPECT_EQ(p.generator()->options().local_attn_frames, wider.local_attn_frames);
    p.stop();
    return out;
  };
  const Run one = run(1);
  ASSERT_EQ(one.changes.size(), 3u);
  EXPECT_TRUE(one.changes[0].caches_kept);
  EXPECT_TRUE(one.changes[1].generator_rebuilt && one.changes[1].stream_continued);
  EXPECT_FALSE(one.changes[2].generator_rebuilt || one.changes[2].caches_kept);
  for (const int ranks : {2, 3}) {
    const Run many = run(ranks);
    ASSERT_EQ(many.blocks.size(), one.blocks.size()) << ranks << " ranks";
    for (size_t b = 0; b < one.blocks.size(); ++b)
      EXPECT_LT(max_diff(many.blocks[b], one.blocks[b]), 1e-5)
          << fmt::format("{} ranks, block {}", ranks, b);
    for (size_t c = 0; c < one.changes.size(); ++c) {
      EXPECT_EQ(many.changes[c].caches_kept, one.changes[c].caches_kept)
          << ranks << " ranks, " << c;
      EXPECT_EQ(many.changes[c].generator_rebuilt, one.changes[c].generator_rebuilt)
          << ranks << " ranks, " << c;
      EXPECT_EQ(many.changes[c].stream_continued, one.changes[c].stream_continued)
          << ranks << " ranks, " << c;
    }
  }
  // The comparison has teeth: the video after the changes differs from the one before.
  EXPECT_GT(max_diff(one.blocks[1], one.blocks.back()), 1e-3);
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
  // A preset change while the video runs on ranks (a new generator on every rank).
  engine.set_preset(wider_preset());
  const size_t at = blocks();
  ASSERT_TRUE(wait_for([&] { return blocks() >= at + 2; }));
  engine.stop();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(m);
    return recorded.has_value();
  }));
  std::lock_guard lock(m);
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_GT(frames, 0) << "rank 0's decoder delivered the frames";
  const auto one = replayed(*recorded, {.ranks = 1});
  ASSERT_EQ(one.size(), live.size());
  for (size_t b = 0; b < live.size(); ++b)
    EXPECT_LT(max_diff(one[b], live[b]), 1e-5) << "block " << b;
}

}  // namespace
}  // namespace longlive::test
