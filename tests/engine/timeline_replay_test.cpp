// Record a live Engine session on the tiny model (transitions, cuts, a blend, a preset change,
// pause), save its timeline as JSON, load it and replay it: the latents must match bit for bit.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine_support.h"
#include "fixtures.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/performance.h"
#include "longlive/text_encoder.h"
#include "longlive/timeline.h"

namespace longlive::test {
namespace {

std::map<std::string, Preset> test_presets() {
  Preset live;
  live.name = "live";
  live.local_attn_frames = 9;
  Preset alt;
  alt.name = "alt";
  alt.local_attn_frames = 6;
  alt.denoising_steps = {1000, 500};
  return {{"live", live}, {"alt", alt}};
}

PresetLookup lookup_in(const std::map<std::string, Preset>& presets) {
  return [presets](const std::string& name) {
    const auto it = presets.find(name);
    if (it == presets.end()) throw ConfigError("no preset '" + name + "'");
    return it->second;
  };
}

TEST(TimelineReplay, LiveSessionReplaysBitIdentically) {
  const auto presets = test_presets();
  std::mutex m;
  std::vector<at::Tensor> live;
  std::optional<Timeline> recorded;
  std::atomic<int> errors{0};
  Engine::Callbacks cb;
  cb.on_latents = [&](int64_t block, const at::Tensor& latents) {
    std::lock_guard lock(m);
    EXPECT_EQ(block, static_cast<int64_t>(live.size()));
    live.push_back(latents.to(at::kCPU).clone());
  };
  cb.on_timeline = [&](const Timeline& t) {
    std::lock_guard lock(m);
    recorded = t;
  };
  cb.on_error = [&](const std::string& e) {
    ADD_FAILURE() << e;
    ++errors;
  };
  Engine engine(tiny_model(), presets.at("live"), cb, 32, 32);
  auto blocks = [&] {
    std::lock_guard lock(m);
    return live.size();
  };
  auto run_blocks = [&](size_t n) {
    const size_t target = blocks() + n;
    ASSERT_TRUE(wait_for([&] { return blocks() >= target || errors > 0; }));
  };

  engine.start("a red fox", 7);
  run_blocks(2);
  engine.transition(PromptMix::single("a blue whale"),
                    {.blocks = 3, .interpolation = Interpolation::slerp});
  run_blocks(1);
  engine.switch_prompt("a green forest");  // cuts into the running transition
  run_blocks(2);
  engine.transition({{{"a red fox", 1}, {"a blue whale", 3}}, Interpolation::linear},
                    {.blocks = 2, .interpolation = Interpolation::linear, .recache_at_end = true});
  run_blocks(3);
  engine.set_preset(presets.at("alt"));
  run_blocks(2);
  engine.pause();
  engine.transition({{{"a red fox", 1}, {"a green forest", 1}}, Interpolation::slerp},
                    {.blocks = 2});
  engine.resume();
  run_blocks(3);
  engine.stop();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(m);
    return recorded.has_value();
  }));
  ASSERT_EQ(errors.load(), 0);

  std::unique_lock lock(m);
  const Timeline t = *recorded;
  EXPECT_EQ(t.blocks, static_cast<int64_t>(live.size()));
  std::map<EventKind, int> kinds;
  for (const auto& e : t.events) ++kinds[e.kind];
  EXPECT_EQ(kinds[EventKind::start], 1);
  EXPECT_EQ(kinds[EventKind::transition], 3);
  EXPECT_EQ(kinds[EventKind::cut], 1);
  EXPECT_EQ(kinds[EventKind::preset], 1);
  EXPECT_EQ(kinds[EventKind::pause], 1);
  EXPECT_EQ(t.events.back().kind, EventKind::stop);
  EXPECT_EQ(t.preset, "live");
  EXPECT_EQ(t.height, 32);

  // Through the file format, as `longlive render` reads it.
  const auto path = temp_dir("timeline") / "session.json";
  save_timeline(path, t);
  const Timeline loaded = load_timeline(path);
  std::vector<at::Tensor> replayed;
  replay(loaded, tiny_model(), lookup_in(presets),
         [&](const ReplayBlock& b) { replayed.push_back(b.latents.to(at::kCPU)); });
  ASSERT_EQ(replayed.size(), live.size());
  for (size_t b = 0; b < live.size(); ++b)
    EXPECT_TRUE(at::equal(replayed[b], live[b])) << "block " << b;
  // The comparison has teeth: blocks under other prompts differ.
  EXPECT_FALSE(at::equal(live[1], live[5]));

  // Played back live by the engine (File > Load timeline in the studio): the same latents, and
  // the playback records the same timeline again.
  const std::vector<at::Tensor> original = std::move(live);
  live.clear();
  recorded.reset();
  lock.unlock();
  engine.play(loaded, lookup_in(presets));
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard l(m);
    return recorded.has_value();
  }));
  lock.lock();
  ASSERT_EQ(live.size(), original.size());
  for (size_t b = 0; b < live.size(); ++b)
    EXPECT_TRUE(at::equal(live[b], original[b])) << "played block " << b;
  ASSERT_EQ(recorded->events.size(), t.events.size());
  for (size_t i = 0; i < t.events.size(); ++i) {
    EXPECT_EQ(recorded->events[i].kind, t.events[i].kind) << i;
    EXPECT_EQ(recorded->events[i].block, t.events[i].block) << i;
  }
}

TEST(TimelineReplay, EnginePlaysATimelineAtItsOwnResolution) {
  // Recorded at 48x32; the engine plays it while set up for 32x32.
  const auto presets = test_presets();
  Performance live(tiny_model(), presets.at("live"), 48, 32);
  live.start(PromptMix::single("a red fox"), 5);
  live.next_block();
  live.cut(PromptMix::single("a blue whale"));
  live.next_block();
  live.stop();
  const Timeline t = live.timeline();
  ASSERT_EQ(t.height, 48);
  std::vector<at::Tensor> reference;
  replay(t, tiny_model(), lookup_in(presets),
         [&](const ReplayBlock& b) { reference.push_back(b.latents.to(at::kCPU)); });

  std::mutex m;
  std::vector<at::Tensor> played;
  std::vector<std::vector<int64_t>> frame_sizes;
  std::optional<Timeline> recorded;
  Engine::Callbacks cb;
  cb.on_latents = [&](int64_t, const at::Tensor& latents) {
    std::lock_guard lock(m);
    played.push_back(latents.to(at::kCPU).clone());
  };
  cb.on_frame = [&](EngineFrame f) {
    std::lock_guard lock(m);
    frame_sizes.push_back(f.rgba.sizes().vec());
  };
  cb.on_timeline = [&](const Timeline& done) {
    std::lock_guard lock(m);
    recorded = done;
  };
  cb.on_error = [&](const std::string& e) { ADD_FAILURE() << e; };
  Engine engine(tiny_model(), presets.at("live"), cb, 32, 32);
  engine.play(t, lookup_in(presets));
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(m);
    return recorded.has_value();
  }));
  std::lock_guard lock(m);
  ASSERT_EQ(played.size(), reference.size());
  for (size_t b = 0; b < played.size(); ++b)
    EXPECT_TRUE(at::equal(played[b], reference[b])) << "block " << b;
  EXPECT_EQ(played[0].size(3), 6);  // 48 / 8 latent rows
  ASSERT_FALSE(frame_sizes.empty());
  for (const auto& size : frame_sizes) EXPECT_EQ(size, (std::vector<int64_t>{48, 32, 4}));
  EXPECT_EQ(recorded->height, 48);
  EXPECT_EQ(recorded->width, 32);
}

TEST(TimelineReplay, CutRightAfterTheFirstBlock) {
  // The re-cache of a cut after one block only touches the (protected) sink frames: nothing to
  // run, and the cut still takes effect through the new cross-attention.
  const auto presets = test_presets();
  Performance cut(tiny_model(), presets.at("live"), 32, 32);
  Performance kept(tiny_model(), presets.at("live"), 32, 32);
  for (Performance* p : {&cut, &kept}) {
    p->start(PromptMix::single("a red fox"), 9);
    p->next_block();
  }
  cut.cut(PromptMix::single("a blue whale"));
  EXPECT_FALSE(at::equal(cut.next_block().to(at::kCPU), kept.next_block().to(at::kCPU)));
}

TEST(TimelineReplay, ResolutionChangesOnlyWhileStopped) {
  Performance p(tiny_model(), test_presets().at("live"), 32, 32);
  p.start(PromptMix::single("a fox"), 1);
  try {
    p.set_resolution(48, 48);
    ADD_FAILURE() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("48x48"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p.session()->height, 32);
  p.stop();
  p.set_resolution(32, 32);  // the same size keeps the session
  EXPECT_NE(p.session(), nullptr);
  p.set_resolution(48, 48);
  EXPECT_EQ(p.session(), nullptr);
  p.start(PromptMix::single("a fox"), 1);
  EXPECT_EQ(p.next_block().size(3), 6);
  EXPECT_EQ(p.timeline().height, 48);
}

TEST(TimelineReplay, AnotherPresetRendersTheSameEvents) {
  auto presets = test_presets();
  Performance live(tiny_model(), presets.at("live"), 32, 32);
  live.start(PromptMix::single("a red fox"), 3);
  live.next_block();
  live.transition(PromptMix::single("a blue whale"), {.blocks = 2});
  live.next_block();
  live.next_block();
  live.stop();
  // The "final cut": every preset name resolves to another preset.
  Preset quality = presets.at("alt");
  int64_t blocks = 0;
  replay(
      live.timeline(), tiny_model(), [&](const std::string&) { return quality; },
      [&](const ReplayBlock& b) {
        EXPECT_EQ(b.index, blocks++);
        EXPECT_EQ(b.session->generator->options().denoising_steps.size(), 2u);
        EXPECT_EQ(b.prompt, b.index == 0 ? "a red fox" : "a blue whale");
      });
  EXPECT_EQ(blocks, 3);
}

TEST(TimelineReplay, StallingAndMissingPresetsFailClearly) {
  const auto presets = test_presets();
  Timeline t;
  t.preset = "live";
  t.height = t.width = 32;
  t.blocks = 3;
  TimelineEvent start;
  start.mix = PromptMix::single("a fox");
  TimelineEvent pause;
  pause.kind = EventKind::pause;
  pause.block = 1;
  t.events = {start, pause};
  try {
    replay(
        t, tiny_model(), lookup_in(presets), [](const ReplayBlock&) {}, "t.json");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("paused at block 1"), std::string::npos) << e.what();
  }
  TimelineEvent preset;
  preset.kind = EventKind::preset;
  preset.preset = "ultra_hd";
  preset.block = 1;
  t.events = {start, preset};
  try {
    replay(
        t, tiny_model(), lookup_in(presets), [](const ReplayBlock&) {}, "t.json");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("t.json: events[1].preset: preset 'ultra_hd'"), std::string::npos) << what;
  }
}

// A live engine whose on_frame handler can act on the engine (it runs on the engine's thread, the
// way a performer's command can arrive at any moment), and the replay of its timeline.
struct SwitchingSession {
  std::mutex m;
  std::vector<at::Tensor> live;
  std::optional<Timeline> recorded;
  std::function<void(Engine&)> on_frame;
  std::unique_ptr<Engine> engine;

  explicit SwitchingSession(const Preset& preset) {
    Engine::Callbacks cb;
    cb.on_latents = [this](int64_t, const at::Tensor& latents) {
      std::lock_guard lock(m);
      live.push_back(latents.to(at::kCPU).clone());
    };
    cb.on_frame = [this](EngineFrame) {
      if (on_frame) on_frame(*engine);
    };
    cb.on_timeline = [this](const Timeline& t) {
      std::lock_guard lock(m);
      recorded = t;
    };
    cb.on_error = [](const std::string& e) { ADD_FAILURE() << e; };
    engine = std::make_unique<Engine>(tiny_model(), preset, cb, 32, 32);
  }
  size_t blocks() {
    std::lock_guard lock(m);
    return live.size();
  }
  // Runs until `blocks` blocks were made, stops and waits for the timeline.
  void run_until(size_t blocks_wanted) {
    ASSERT_TRUE(wait_for([&] { return blocks() >= blocks_wanted; }));
    engine->stop();
    ASSERT_TRUE(wait_for([&] {
      std::lock_guard lock(m);
      return recorded.has_value();
    }));
  }
  void expect_replay_equals_live(const PresetLookup& presets) {
    std::lock_guard lock(m);
    std::vector<at::Tensor> replayed;
    replay(*recorded, tiny_model(), presets,
           [&](const ReplayBlock& b) { replayed.push_back(b.latents.to(at::kCPU)); });
    ASSERT_EQ(replayed.size(), live.size());
    for (size_t b = 0; b < live.size(); ++b)
      EXPECT_TRUE(at::equal(replayed[b], live[b])) << "block " << b;
  }
};

// A switch that arrives while block 2 is being made (from the handler of block 1's frames, which
// go out between block 2's first denoising steps) gives block 2 up and applies to it: the
// timeline has the cut at block 2, and the video replays bit for bit.
TEST(AbandonedBlocks, ASwitchMidBlockAppliesToThatBlock) {
  const auto presets = test_presets();
  SwitchingSession s(presets.at("live"));
  std::atomic<bool> switched{false};
  s.on_frame = [&](Engine& engine) {
    if (s.blocks() == 2 && !switched.exchange(true)) engine.switch_prompt("a blue whale");
  };
  s.engine->start("a red fox", 3);
  s.run_until(5);
  ASSERT_TRUE(switched.load());
  EXPECT_EQ(s.engine->stats().abandoned_blocks, 1);
  int64_t cut_block = -1;
  for (const TimelineEvent& e : s.recorded->events)
    if (e.kind == EventKind::cut) cut_block = e.block;
  EXPECT_EQ(cut_block, 2) << "the cut applies to the block it interrupted";
  s.expect_replay_equals_live(lookup_in(presets));
  // The cut took effect: block 2 differs from the uninterrupted video's block 2.
  Performance plain(tiny_model(), presets.at("live"), 32, 32);
  plain.start(PromptMix::single("a red fox"), 3);
  for (int b = 0; b < 2; ++b) plain.next_block();
  std::lock_guard lock(s.m);
  EXPECT_FALSE(at::equal(plain.next_block().to(at::kCPU), s.live[2]));
}

// A flood of switches (one per frame shown) still makes progress: a block is given up at most
// once, and the video replays bit for bit.
TEST(AbandonedBlocks, AFloodOfSwitchesStillMakesProgress) {
  const auto presets = test_presets();
  SwitchingSession s(presets.at("live"));
  std::atomic<int> sent{0};
  s.on_frame = [&](Engine& engine) {
    engine.switch_prompt(sent++ % 2 ? "a blue whale" : "a green forest");
  };
  s.engine->start("a red fox", 4);
  s.run_until(6);
  const int64_t abandoned = s.engine->stats().abandoned_blocks;
  EXPECT_GE(abandoned, 1);
  EXPECT_LE(abandoned, static_cast<int64_t>(s.blocks()));
  s.expect_replay_equals_live(lookup_in(presets));
}

}  // namespace
}  // namespace longlive::test

namespace longlive::test {
namespace {

TEST(PromptSetPrefetch, LoadedSetIsEncodedInTheBackground) {
  Preset preset;
  preset.name = "live";
  Performance perf(tiny_model(), preset, 32, 32);
  const PromptSet set{{{"a red fox", 1}, {"a blue whale", 2}, {"snow at night", 0}}};
  for (const auto& p : set.prompts) perf.prefetch(p.text);
  ASSERT_NE(perf.session(), nullptr);
  ASSERT_TRUE(wait_for([&] {
    for (const auto& p : set.prompts)
      if (!perf.session()->prompts->contains(p.text)) return false;
    return true;
  }));
  const auto before = perf.session()->prompts->stats();
  perf.start({{set.prompts[0], set.prompts[1]}, Interpolation::linear}, 1);
  const auto after = perf.session()->prompts->stats();
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.hits, before.hits + 2);
}

}  // namespace
}  // namespace longlive::test
