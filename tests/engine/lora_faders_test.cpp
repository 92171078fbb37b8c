// Style-LoRA faders in a live Engine session on the tiny model: loads, fader moves and a preset
// change are timeline events, and the timeline (through its JSON file, as `longlive render`
// reads it) replays the live latents bit for bit. Bad fader commands are reported, not fatal.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "engine_support.h"
#include "fixtures.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/performance.h"
#include "longlive/timeline.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

// A kohya-named rank-2 LoRA for the tiny DiT (its sizes from WanConfig::tiny(); blocks 0 and 1),
// adapting the text K/V.
std::filesystem::path write_kohya_lora(const std::filesystem::path& dir) {
  const WanConfig c = WanConfig::tiny();
  auto gen = at::detail::createCPUGenerator(5);
  std::map<std::string, at::Tensor> t;
  for (const char* m : {"blocks_0_cross_attn_k", "blocks_1_self_attn_q", "blocks_1_ffn_2"}) {
    const std::string name = m;
    const int64_t in = name.ends_with("ffn_2") ? c.ffn_dim : c.dim;
    t["lora_unet_" + name + ".lora_down.weight"] = at::randn({2, in}, gen) * 0.5;
    t["lora_unet_" + name + ".lora_up.weight"] = at::randn({c.dim, 2}, gen) * 0.5;
    t["lora_unet_" + name + ".alpha"] = at::full({}, 1.0);
  }
  const auto path = dir / "ink.safetensors";
  save_safetensors(path, t);
  return path;
}

struct Presets {
  Preset live, alt;
  Presets() {
    live.name = "live";
    live.local_attn_frames = 9;
    alt.name = "alt";
    alt.local_attn_frames = 6;
    alt.denoising_steps = {1000, 500};
  }
  PresetLookup lookup() const {
    return [this](const std::string& name) {
      if (name == "live") return live;
      if (name == "alt") return alt;
      throw ConfigError("no preset '" + name + "'");
    };
  }
};

TEST(LoraFaders, LiveFaderMovesReplayBitIdentically) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const Presets presets;
  const auto dir = temp_dir("lora_faders");
  const auto kohya = write_kohya_lora(dir);
  std::mutex m;
  std::vector<at::Tensor> live;
  std::optional<Timeline> recorded;
  std::vector<std::string> errors;
  Engine::Callbacks cb;
  cb.on_latents = [&](int64_t, const at::Tensor& latents) {
    std::lock_guard lock(m);
    live.push_back(latents.to(at::kCPU).clone());
  };
  cb.on_timeline = [&](const Timeline& t) {
    std::lock_guard lock(m);
    recorded = t;
  };
  cb.on_error = [&](const std::string& e) {
    std::lock_guard lock(m);
    errors.push_back(e);
  };
  Engine engine(tiny_model(), presets.live, cb, 32, 32);
  auto blocks = [&] {
    std::lock_guard lock(m);
    return live.size();
  };
  auto run_blocks = [&](size_t n) {
    const size_t target = blocks() + n;
    ASSERT_TRUE(wait_for([&] { return blocks() >= target; }));
  };

  // A fader set before the start is part of the video from its first block.
  engine.load_lora(fixture("dit_lora.safetensors"), "glow");
  engine.set_lora_strength("glow", 0.8);
  engine.start("a red fox", 7);
  run_blocks(2);
  engine.load_lora(kohya);  // named after the file: "ink"
  engine.set_lora_strength("ink", 1.2);
  engine.set_lora_strength("ink", 2.0);   // out of range: reported, ignored
  engine.set_lora_strength("nope", 1.0);  // unknown: reported, ignored
  run_blocks(2);
  engine.set_lora_strength("glow", 0.0);
  engine.switch_prompt("a blue whale");
  run_blocks(1);
  engine.set_preset(presets.alt);  // a new generator: the faders carry over
  run_blocks(2);
  engine.set_lora_strength("glow", 1.5);
  run_blocks(1);
  engine.stop();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(m);
    return recorded.has_value();
  }));

  std::unique_lock lock(m);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("'ink': strength 2 is outside 0..1.5"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("no LoRA named 'nope'"), std::string::npos) << errors[1];
  const Timeline t = *recorded;
  std::vector<std::pair<std::string, double>> moves;
  for (const auto& e : t.events)
    if (e.kind == EventKind::lora) moves.emplace_back(e.lora, e.strength);
  const std::vector<std::pair<std::string, double>> expected = {
      {"glow", 0.8}, {"ink", 0.0}, {"ink", 1.2}, {"glow", 0.0}, {"glow", 1.5}};
  EXPECT_EQ(moves, expected);
  EXPECT_EQ(t.events[1].kind, EventKind::lora);  // right after the start, at block 0
  EXPECT_EQ(t.events[1].block, 0);
  EXPECT_EQ(t.blocks, static_cast<int64_t>(live.size()));

  const auto path = dir / "session.json";
  save_timeline(path, t);
  const Timeline loaded = load_timeline(path);
  std::vector<at::Tensor> replayed;
  replay(loaded, tiny_model(), presets.lookup(),
         [&](const ReplayBlock& b) { replayed.push_back(b.latents.to(at::kCPU)); });
  ASSERT_EQ(replayed.size(), live.size());
  for (size_t b = 0; b < live.size(); ++b)
    EXPECT_TRUE(at::equal(replayed[b], live[b])) << "block " << b;

  // The faders matter: the same timeline without its lora events gives other latents from the
  // first block on.
  Timeline plain = loaded;
  std::erase_if(plain.events, [](const TimelineEvent& e) { return e.kind == EventKind::lora; });
  std::vector<at::Tensor> without;
  replay(plain, tiny_model(), presets.lookup(),
         [&](const ReplayBlock& b) { without.push_back(b.latents.to(at::kCPU)); });
  ASSERT_EQ(without.size(), live.size());
  EXPECT_GT((without[0] - live[0]).abs().max().item<double>(), 1e-4);
}

TEST(LoraFaders, TimelineRejectsBadFaderEvents) {
  const std::string base = R"({"version": 2, "preset": "live", "height": 32, "width": 32,
    "blocks": 2, "events": [{"type": "start", "block": 0, "seed": 1,
    "prompts": [{"text": "a"}]}, )";
  auto error_of = [&](const std::string& event) {
    try {
      parse_timeline(base + event + "]}", "t.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(R"({"type": "lora", "block": 1, "lora": "glow", "file": "g.safetensors",
                        "strength": 1.6})")
                .find("t.json: events[1].strength: 1.6 is outside 0..1.5"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"type": "lora", "block": 1, "file": "g.safetensors", "strength": 1})")
                .find("events[1].lora: missing"),
            std::string::npos);
  const Timeline ok =
      parse_timeline(base + R"({"type": "lora", "block": 1, "lora": "glow", "file": "g.safetensors",
                 "strength": 0.25}]})",
                     "t.json");
  ASSERT_EQ(ok.events.size(), 2u);
  EXPECT_EQ(ok.events[1].lora, "glow");
  EXPECT_EQ(ok.events[1].lora_file, "g.safetensors");
  EXPECT_EQ(ok.events[1].strength, 0.25);
}

}  // namespace
}  // namespace longlive::test
