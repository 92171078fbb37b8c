// Baking style LoRAs into the running DiT (Performance::bake_loras, docs/performing.md) on the
// tiny model in float32 on the CPU: the blocks after a bake match the side path at the same
// strength, a preset change keeps the bake, the timeline (through its JSON file) replays the bake
// bit for bit, unloading the LoRAs undoes it, and a bake with no fader up changes nothing. "Unload
// LoRAs" while the video runs (Performance::unload_loras): the side path goes, the bake stays,
// and both this timeline and the next one (which states the unloaded bake) replay exactly.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "engine_support.h"
#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/performance.h"
#include "longlive/timeline.h"
#include "longlive/weights.h"
#include "tensor_compare.h"

namespace longlive::test {
namespace {

// A random kohya LoRA of `rank` for a DiT of `config` (the tiny model's), on every kind of block
// linear (self-attention q, o; the text K/V; cross q; both FFN matrices) of every block.
std::filesystem::path write_lora(const std::filesystem::path& dir, const WanConfig& config,
                                 int64_t rank, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> t;
  const std::pair<const char*, std::pair<int64_t, int64_t>> modules[] = {
      {"self_attn_q", {config.dim, config.dim}},  {"self_attn_o", {config.dim, config.dim}},
      {"cross_attn_q", {config.dim, config.dim}}, {"cross_attn_k", {config.dim, config.dim}},
      {"cross_attn_v", {config.dim, config.dim}}, {"ffn_0", {config.ffn_dim, config.dim}},
      {"ffn_2", {config.dim, config.ffn_dim}}};
  for (int64_t layer = 0; layer < config.num_layers; ++layer)
    for (const auto& [module, shape] : modules) {
      const std::string name = "lora_unet_blocks_" + std::to_string(layer) + "_" + module;
      const auto [out, in] = shape;
      t[name + ".lora_down.weight"] = at::randn({rank, in}, gen) * 0.3;
      t[name + ".lora_up.weight"] = at::randn({out, rank}, gen) * 0.3;
      t[name + ".alpha"] = at::full({}, static_cast<double>(rank) / 2);
    }
  const auto path = dir / ("style" + std::to_string(seed) + ".safetensors");
  save_safetensors(path, t);
  return path;
}

struct Presets {
  Preset live, alt;
  Presets() {
    live.name = "live";
    live.local_attn_frames = 9;
    alt.name = "alt";  // another sampling: a new generator on the same weights
    alt.denoising_steps = {1000, 500};
    alt.local_attn_frames = 9;
  }
  PresetLookup lookup() const {
    return [this](const std::string& name) { return name == "alt" ? alt : live; };
  }
};

// One performance: faders up from the start, a bake (or not) before block 2, a second LoRA
// moved and both baked before block 5, a preset change before block 6; stopped at the end.
struct Performed {
  std::unique_ptr<Performance> performance;
  std::vector<at::Tensor> blocks;
};
Performed perform(const Presets& presets, const std::filesystem::path& a,
                  const std::filesystem::path& b, bool bake) {
  Performed r{std::make_unique<Performance>(tiny_model(), presets.live, 32, 32), {}};
  Performance& p = *r.performance;
  p.load_lora(a, "warm");
  p.load_lora(b, "grain");
  p.set_lora_strength("warm", 0.8);
  p.start(PromptMix::single("a red fox"), 11);
  for (int block = 0; block < 8; ++block) {
    if (block == 2 && bake) p.bake_loras();
    if (block == 4) p.set_lora_strength("grain", 1.3);
    if (block == 5 && bake) p.bake_loras();
    if (block == 6) p.set_preset(presets.alt);
    r.blocks.push_back(p.next_block().clone());
  }
  p.stop();
  return r;
}

TEST(LoraBake, BlocksAfterABakeMatchTheSidePathAndReplayExactly) {
  const Presets presets;
  const WanConfig config = WanConfig::tiny();  // the tiny random model's configuration
  const auto dir = temp_dir("lora_bake");
  const auto warm = write_lora(dir, config, 4, 1);
  const auto grain = write_lora(dir, config, 2, 2);

  const Performed baked_run = perform(presets, warm, grain, true);
  const Performed side_run = perform(presets, warm, grain, false);
  const auto& baked = baked_run.blocks;
  const auto& side = side_run.blocks;
  Performance* baked_perf = baked_run.performance.get();
  const Timeline timeline = baked_perf->timeline();
  ASSERT_EQ(baked.size(), side.size());

  // Before the bake: the same computation.
  for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(at::equal(baked[i], side[i])) << "block " << i;
  // After: (W + s B A) x against W x + s B (A x) in float32, fed back through the KV cache for
  // six blocks: rounding only. Measured (printed) 1.4e-6 at worst; the bound is 1e-5, five orders
  // of magnitude below the LoRAs' own effect (checked next).
  double worst = 0;
  for (size_t i = 2; i < baked.size(); ++i) {
    const double d = max_abs_diff(baked[i], side[i]);
    worst = std::max(worst, d);
    EXPECT_LT(d, 1e-5) << "block " << i;
  }
  // The faders matter: without them the latents are far apart (so the bound above can fail).
  const auto none = [&] {
    Performance p(tiny_model(), presets.live, 32, 32);
    p.start(PromptMix::single("a red fox"), 11);
    std::vector<at::Tensor> out;
    for (int i = 0; i < 3; ++i) out.push_back(p.next_block().clone());
    return out;
  }();
  const double effect = max_abs_diff(none[2], side[2]);
  EXPECT_GT(effect, 1e-2);
  std::cout << "[ bake     ] worst |baked - side path| " << worst << ", LoRA effect " << effect
            << "\n";

  // The faders after the two bakes: at 0, baked at what they were.
  ASSERT_EQ(baked_perf->loras().size(), 2u);
  EXPECT_EQ(baked_perf->loras()[0].strength, 0.0);
  EXPECT_DOUBLE_EQ(baked_perf->loras()[0].baked, 0.8);
  EXPECT_EQ(baked_perf->loras()[1].strength, 0.0);
  EXPECT_DOUBLE_EQ(baked_perf->loras()[1].baked, 1.3);
  std::vector<int64_t> bake_blocks;
  for (const auto& e : timeline.events)
    if (e.kind == EventKind::lora_bake) bake_blocks.push_back(e.block);
  EXPECT_EQ(bake_blocks, (std::vector<int64_t>{2, 5}));

  // The timeline, through its file, replays the bakes bit for bit.
  const auto path = dir / "baked.json";
  save_timeline(path, timeline);
  std::vector<at::Tensor> replayed;
  replay(load_timeline(path), tiny_model(), presets.lookup(),
         [&](const ReplayBlock& b) { replayed.push_back(b.latents.clone()); });
  ASSERT_EQ(replayed.size(), baked.size());
  for (size_t i = 0; i < baked.size(); ++i)
    EXPECT_TRUE(at::equal(replayed[i], baked[i])) << "block " << i;

  // Undo: unloading the LoRAs (stopped) rebuilds the DiT from the unbaked host weights.
  EXPECT_NO_THROW(baked_perf->clear_loras());
  baked_perf->set_preset(presets.live);
  baked_perf->start(PromptMix::single("a red fox"), 11);
  EXPECT_TRUE(at::equal(baked_perf->next_block(), none[0]));
}

TEST(LoraBake, BakeBeforeTheStartIsStatedByTheTimeline) {
  const Presets presets;
  const auto dir = temp_dir("lora_bake_before");
  const auto warm = write_lora(dir, WanConfig::tiny(), 3, 4);
  Performance p(tiny_model(), presets.live, 32, 32);
  p.load_lora(warm, "warm");
  p.set_lora_strength("warm", 0.6);
  p.bake_loras();                    // no video yet: recorded by the next start
  p.set_lora_strength("warm", 0.4);  // and a fader up on top of the bake
  p.start(PromptMix::single("a lighthouse"), 3);
  std::vector<at::Tensor> live;
  for (int i = 0; i < 3; ++i) live.push_back(p.next_block().clone());
  p.stop();
  std::vector<at::Tensor> replayed;
  replay(p.timeline(), tiny_model(), presets.lookup(),
         [&](const ReplayBlock& b) { replayed.push_back(b.latents.clone()); });
  ASSERT_EQ(replayed.size(), live.size());
  for (size_t i = 0; i < live.size(); ++i)
    EXPECT_TRUE(at::equal(replayed[i], live[i])) << "block " << i;
}

TEST(LoraBake, NothingUpIsAClearNoOp) {
  const Presets presets;
  const auto dir = temp_dir("lora_bake_noop");
  Performance p(tiny_model(), presets.live, 32, 32);
  try {
    p.bake_loras();
    FAIL() << "a bake with no LoRA loaded";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no style LoRA is loaded, nothing to bake"),
              std::string::npos)
        << e.what();
  }
  p.load_lora(write_lora(dir, WanConfig::tiny(), 2, 5), "warm");
  p.start(PromptMix::single("a red fox"), 1);
  const at::Tensor first = p.next_block().clone();
  try {
    p.bake_loras();
    FAIL() << "a bake with every fader at 0";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("every style-LoRA fader is at 0, nothing to bake"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(p.loras()[0].baked, 0.0);
  const Timeline timeline = p.timeline();  // a copy: a range-for over a temporary's member dangles
  for (const auto& e : timeline.events) EXPECT_NE(e.kind, EventKind::lora_bake);
  // Nothing changed: the video goes on as a fresh one does.
  Performance fresh(tiny_model(), presets.live, 32, 32);
  fresh.start(PromptMix::single("a red fox"), 1);
  EXPECT_TRUE(at::equal(first, fresh.next_block()));
  EXPECT_TRUE(at::equal(p.next_block(), fresh.next_block()));
}

// Unload while the video runs, after a bake and with a second fader up: from that block on the
// latents are those of the same fader moved to 0 (nothing of the side path is left, the bake is
// kept), and differ from the fader left up.
enum class AtBlock5 { unload, fader_to_zero, nothing };
Performed perform_unload(const Presets& presets, const std::filesystem::path& a,
                         const std::filesystem::path& b, AtBlock5 what) {
  Performed r{std::make_unique<Performance>(tiny_model(), presets.live, 32, 32), {}};
  Performance& p = *r.performance;
  p.load_lora(a, "warm");
  p.load_lora(b, "grain");
  p.set_lora_strength("warm", 0.9);
  p.start(PromptMix::single("a harbour at night"), 5);
  for (int block = 0; block < 8; ++block) {
    if (block == 2) p.bake_loras();
    if (block == 3) p.set_lora_strength("grain", 1.1);
    if (block == 5 && what == AtBlock5::unload) p.unload_loras();
    if (block == 5 && what == AtBlock5::fader_to_zero) p.set_lora_strength("grain", 0);
    r.blocks.push_back(p.next_block().clone());
  }
  return r;
}

TEST(LoraUnload, SidePathGoesBakeStaysAndBothTimelinesReplayExactly) {
  const Presets presets;
  const auto dir = temp_dir("lora_unload");
  const auto warm = write_lora(dir, WanConfig::tiny(), 4, 7);
  const auto grain = write_lora(dir, WanConfig::tiny(), 2, 8);
  Performed unloaded = perform_unload(presets, warm, grain, AtBlock5::unload);
  const Performed zero = perform_unload(presets, warm, grain, AtBlock5::fader_to_zero);
  const Performed kept = perform_unload(presets, warm, grain, AtBlock5::nothing);
  ASSERT_EQ(unloaded.blocks.size(), zero.blocks.size());
  for (size_t i = 0; i < unloaded.blocks.size(); ++i)
    EXPECT_TRUE(at::equal(unloaded.blocks[i], zero.blocks[i])) << "block " << i;
  EXPECT_FALSE(at::equal(unloaded.blocks[5], kept.blocks[5])) << "the unload changed nothing";

  Performance& p = *unloaded.performance;
  EXPECT_TRUE(p.loras().empty());
  EXPECT_TRUE(p.session()->loras.empty());
  const Timeline with_unload = p.timeline();
  const auto unload =
      std::find_if(with_unload.events.begin(), with_unload.events.end(),
                   [](const TimelineEvent& e) { return e.kind == EventKind::lora_unload; });
  ASSERT_NE(unload, with_unload.events.end());
  EXPECT_EQ(unload->block, 5);
  // Nothing left to unload: said, and not recorded.
  const size_t events = p.timeline().events.size();
  try {
    p.unload_loras();
    FAIL() << "an unload with no LoRA loaded";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no style LoRA is loaded, nothing to unload"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(p.timeline().events.size(), events);

  // This timeline, through its file (the unload event included), replays bit for bit.
  p.stop();
  const auto path = dir / "unloaded.json";
  save_timeline(path, p.timeline());
  std::vector<at::Tensor> replayed;
  replay(load_timeline(path), tiny_model(), presets.lookup(),
         [&](const ReplayBlock& b) { replayed.push_back(b.latents.clone()); });
  ASSERT_EQ(replayed.size(), unloaded.blocks.size());
  for (size_t i = 0; i < replayed.size(); ++i)
    EXPECT_TRUE(at::equal(replayed[i], unloaded.blocks[i])) << "block " << i;

  // The next video, on the weights that hold the bake, with one LoRA loaded again: its timeline
  // states the unloaded LoRAs' loads, bake and unload before its own fader, and replays exactly.
  EXPECT_EQ(p.load_lora(grain, "grain"), "grain");
  p.set_lora_strength("grain", 0.7);
  p.start(PromptMix::single("a lighthouse"), 9);
  std::vector<at::Tensor> second;
  for (int i = 0; i < 3; ++i) second.push_back(p.next_block().clone());
  p.stop();
  std::vector<EventKind> lora_kinds;
  const Timeline second_timeline = p.timeline();
  for (const auto& e : second_timeline.events)
    if (e.kind == EventKind::lora || e.kind == EventKind::lora_bake ||
        e.kind == EventKind::lora_unload)
      lora_kinds.push_back(e.kind);
  using K = EventKind;
  EXPECT_EQ(lora_kinds,
            (std::vector<K>{K::lora, K::lora, K::lora, K::lora_bake, K::lora_unload, K::lora}));
  const auto second_path = dir / "second.json";
  save_timeline(second_path, p.timeline());
  std::vector<at::Tensor> second_replayed;
  replay(load_timeline(second_path), tiny_model(), presets.lookup(),
         [&](const ReplayBlock& b) { second_replayed.push_back(b.latents.clone()); });
  ASSERT_EQ(second_replayed.size(), second.size());
  for (size_t i = 0; i < second.size(); ++i)
    EXPECT_TRUE(at::equal(second_replayed[i], second[i])) << "block " << i;
  // The bake is in that video: a fresh performance with only grain at 0.7 differs.
  Performance fresh(tiny_model(), presets.live, 32, 32);
  fresh.load_lora(grain, "grain");
  fresh.set_lora_strength("grain", 0.7);
  fresh.start(PromptMix::single("a lighthouse"), 9);
  EXPECT_FALSE(at::equal(fresh.next_block(), second[0])) << "the bake was lost";
}

}  // namespace
}  // namespace longlive::test
