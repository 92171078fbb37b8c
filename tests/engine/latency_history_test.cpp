// The block-latency history behind the overlay's plot: bounded, marks kept with their blocks,
// and, in the Engine, carried across a preset change (which is marked) but not a new start.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include "engine_support.h"
#include "longlive/engine.h"
#include "longlive/profiler.h"

namespace longlive::test {
namespace {

TEST(LatencyHistory, KeepsTheNewestBlocksWithTheirMarks) {
  LatencyHistory h(3);
  h.add({10, false, false, {}});
  h.add({20, true, false, {}});
  h.add({30, false, true, {}});
  h.add({40, false, true, "turbo"});
  h.add({50, false, false, {}});
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.added(), 5);
  EXPECT_EQ(h.ms(), (std::vector<float>{30, 40, 50}));  // the oldest went first
  EXPECT_EQ(h.prompt_switches(), 0);                    // its block was dropped
  EXPECT_EQ(h.transition_blocks(), 2);
  EXPECT_EQ(h.preset_changes(), 1);
  EXPECT_EQ(h.blocks()[1].preset_change, "turbo");
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.added(), 0);
  EXPECT_EQ(LatencyHistory().capacity(), 200u);
  EXPECT_EQ(LatencyHistory(0).capacity(), 1u);
}

TEST(EngineLatencyHistory, PresetChangeContinuesTheVideoAndMarksTheChange) {
  Preset live;
  live.name = "live";
  live.local_attn_frames = 9;
  Preset alt = live;
  alt.name = "alt";
  alt.denoising_steps = {1000, 500};
  Engine engine({.tiny_random = true, .folder = {}, .device = {}}, live, {}, 32, 32);
  engine.start("a red fox", 3);
  ASSERT_TRUE(wait_for([&] { return engine.stats().blocks >= 2; }));
  engine.switch_prompt("a blue whale");
  ASSERT_TRUE(wait_for([&] {
    const EngineStats s = engine.stats();
    return s.history.prompt_switches() == 1 && s.last_switch_ms > 0;
  }));
  const EngineStats before = engine.stats();
  engine.set_preset(alt);
  ASSERT_TRUE(wait_for([&] {
    const EngineStats s = engine.stats();
    return s.preset == "alt" && s.state == "running" && s.blocks >= 2;
  }));
  engine.stop();
  ASSERT_TRUE(wait_for([&] { return engine.stats().state == "idle"; }));

  const EngineStats s = engine.stats();
  const auto& blocks = s.history.blocks();
  ASSERT_EQ(s.history.preset_changes(), 1);
  const auto marker = static_cast<size_t>(
      std::find_if(blocks.begin(), blocks.end(),
                   [](const BlockSample& b) { return !b.preset_change.empty(); }) -
      blocks.begin());
  EXPECT_EQ(blocks[marker].preset_change, "alt");
  // Every block seen before the change is still there, unchanged, before the marker...
  ASSERT_GE(marker, before.history.size());
  for (size_t i = 0; i < before.history.size(); ++i) {
    EXPECT_EQ(blocks[i].ms, before.history.blocks()[i].ms) << i;
    EXPECT_EQ(blocks[i].prompt_switch, before.history.blocks()[i].prompt_switch) << i;
  }
  EXPECT_EQ(s.history.prompt_switches(), 1);
  // ... and the video went on through the change: one history, one block count, frame numbers
  // running on (a preset change no longer restarts the video).
  EXPECT_EQ(static_cast<int64_t>(blocks.size()), s.blocks);
  EXPECT_GT(s.frames, before.frames);
  EXPECT_EQ(s.last_switch_ms, before.last_switch_ms);  // the switch latency stays on display

  // A new video (start) begins a new history.
  engine.start("a green forest", 4);
  ASSERT_TRUE(wait_for([&] {
    const Timeline t = engine.timeline();  // the new video's, once the start is applied
    return !t.events.empty() && t.events.front().mix.prompts[0].text == "a green forest" &&
           engine.stats().blocks >= 1;
  }));
  engine.stop();
  ASSERT_TRUE(wait_for([&] { return engine.stats().state == "idle"; }));
  const EngineStats fresh = engine.stats();
  EXPECT_EQ(fresh.history.preset_changes(), 0);
  EXPECT_EQ(fresh.history.prompt_switches(), 0);
  EXPECT_EQ(static_cast<int64_t>(fresh.history.size()), fresh.blocks);
  EXPECT_EQ(fresh.last_switch_ms, 0);
}

}  // namespace
}  // namespace longlive::test
