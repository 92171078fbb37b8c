// Style LoRAs as faders: key mapping of each community format, the side path against the
// reference's unmerged (PEFT) run and against baked weights, and errors that name the keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>

#include "dit_fixture.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/style_lora.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

// The DiT configuration of the fixture folder in use (sizes from its metadata).
WanConfig fixture_config() {
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  return config_from_metadata(metadata_json(stream, "config"));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The fixture's PEFT tensors by module ("blocks.N.<module>") -> (lora_A, lora_B).
std::map<std::string, std::pair<at::Tensor, at::Tensor>> fixture_pairs(const WeightStore& lora) {
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> pairs;
  const std::string prefix = "base_model.model.";
  for (const auto& name : lora.names()) {
    const bool a = name.ends_with(".lora_A.weight");
    const std::string module = name.substr(prefix.size(), name.size() - prefix.size() - 14);
    (a ? pairs[module].first : pairs[module].second) = lora.get(name);
  }
  return pairs;
}

TEST(StyleLoraKeys, EachFormatMapsToOurModuleNames) {
  struct Case {
    const char* key;
    const char* target;
    const char* part;
    const char* format;
  };
  const Case cases[] = {
      {"base_model.model.blocks.0.self_attn.q.lora_A.weight", "blocks.0.self_attn.q", "down",
       "peft"},
      {"base_model.model.blocks.7.cross_attn.o.lora_B.default.weight", "blocks.7.cross_attn.o",
       "up", "peft"},
      {"blocks.1.ffn.2.lora_B.weight", "blocks.1.ffn.2", "up", "peft"},
      {"blocks.1.ffn.2.alpha", "blocks.1.ffn.2", "alpha", "peft"},
      {"transformer.blocks.3.attn1.to_out.0.lora_B.weight", "blocks.3.self_attn.o", "up",
       "diffusers"},
      {"transformer.blocks.3.attn2.to_k.lora_A.weight", "blocks.3.cross_attn.k", "down",
       "diffusers"},
      {"transformer.blocks.0.ffn.net.0.proj.lora_A.weight", "blocks.0.ffn.0", "down", "diffusers"},
      {"transformer.blocks.0.ffn.net.2.lora_B.weight", "blocks.0.ffn.2", "up", "diffusers"},
      {"diffusion_model.blocks.12.cross_attn.v.lora_down.weight", "blocks.12.cross_attn.v", "down",
       "comfyui"},
      {"diffusion_model.blocks.12.cross_attn.v.lora_A.weight", "blocks.12.cross_attn.v", "down",
       "comfyui"},
      {"diffusion_model.blocks.12.cross_attn.v.alpha", "blocks.12.cross_attn.v", "alpha",
       "comfyui"},
      {"model.diffusion_model.blocks.2.self_attn.v.lora_up.weight", "blocks.2.self_attn.v", "up",
       "comfyui"},
      {"lora_unet_blocks_29_self_attn_k.lora_up.weight", "blocks.29.self_attn.k", "up", "kohya"},
      {"lora_unet_blocks_0_ffn_2.alpha", "blocks.0.ffn.2", "alpha", "kohya"},
      {"lora_unet_blocks_5_ffn_0.lora_down.weight", "blocks.5.ffn.0", "down", "kohya"},
      {"lora_unet_blocks_4_attn2_to_out_0.lora_down.weight", "blocks.4.cross_attn.o", "down",
       "kohya"},
      {"lora_unet_blocks_4_ffn_net_0_proj.lora_up.weight", "blocks.4.ffn.0", "up", "kohya"},
  };
  for (const auto& c : cases) {
    const LoraKey k = map_lora_key(c.key);
    EXPECT_EQ(k.target, c.target) << c.key << ": " << k.reason;
    EXPECT_EQ(k.part, c.part) << c.key;
    EXPECT_EQ(k.format, c.format) << c.key;
    EXPECT_TRUE(k.reason.empty()) << c.key;
  }
}

TEST(StyleLoraKeys, KeysOutsideTheBlockLinearsDoNotMapAndSayWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {"diffusion_model.head.head.lora_A.weight", "head.head"},
      {"transformer.blocks.0.attn2.add_k_proj.lora_A.weight", "attn2.add_k_proj"},
      {"lora_unet_time_projection_1.lora_down.weight", "time_projection_1"},
      {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "text-encoder"},
      {"diffusion_model.blocks.0.self_attn.q.diff", ".diff"},
      {"diffusion_model.blocks.0.self_attn.q.dora_scale", ".dora_scale"},
      {"blocks.0.self_attn.norm_q.lora_A.weight", "self_attn.norm_q"},
  };
  for (const auto& [key, mention] : cases) {
    const LoraKey k = map_lora_key(key);
    EXPECT_TRUE(k.target.empty()) << key << " mapped to " << k.target;
    EXPECT_TRUE(contains(k.reason, mention)) << key << ": " << k.reason;
  }
}

// The fixture LoRA written under another format's names, read back: the same modules and tensors.
TEST(StyleLoraFiles, EveryFormatLoadsTheSameModules) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore peft = WeightStore::open(fixture("dit_lora.safetensors"));
  const auto pairs = fixture_pairs(peft);
  const WanConfig config = fixture_config();
  const double alpha = std::stod(peft.metadata().at("alpha"));
  // Every block linear of every layer (10 per layer), of the fixture's rank.
  ASSERT_EQ(pairs.size(), static_cast<size_t>(config.num_layers) * 10);
  const int64_t rank = pairs.begin()->second.first.size(0);

  auto kohya_name = [](std::string module) {  // blocks.0.self_attn.q -> blocks_0_self_attn_q
    std::replace(module.begin(), module.end(), '.', '_');
    return "lora_unet_" + module;
  };
  auto diffusers_name = [](const std::string& module) {
    const size_t dot = module.find('.', 7);
    const std::string block = module.substr(0, dot), m = module.substr(dot + 1);
    const std::map<std::string, std::string> names = {
        {"self_attn.q", "attn1.to_q"},  {"self_attn.k", "attn1.to_k"},
        {"self_attn.v", "attn1.to_v"},  {"self_attn.o", "attn1.to_out.0"},
        {"cross_attn.q", "attn2.to_q"}, {"cross_attn.k", "attn2.to_k"},
        {"cross_attn.v", "attn2.to_v"}, {"cross_attn.o", "attn2.to_out.0"},
        {"ffn.0", "ffn.net.0.proj"},    {"ffn.2", "ffn.net.2"}};
    return "transformer." + block + "." + names.at(m);
  };
  struct Format {
    std::string name;
    std::function<void(std::map<std::string, at::Tensor>&, const std::string&, const at::Tensor&,
                       const at::Tensor&)>
        write;
    std::map<std::string, std::string> metadata;
  };
  const at::Tensor alpha_t = at::full({}, alpha);
  const std::vector<Format> formats = {
      {"peft",
       [&](auto& out, const std::string& m, const at::Tensor& a, const at::Tensor& b) {
         out["base_model.model." + m + ".lora_A.weight"] = a;
         out["base_model.model." + m + ".lora_B.weight"] = b;
       },
       {{"lora_alpha", peft.metadata().at("alpha")}}},
      {"diffusers",
       [&](auto& out, const std::string& m, const at::Tensor& a, const at::Tensor& b) {
         out[diffusers_name(m) + ".lora_A.weight"] = a;
         out[diffusers_name(m) + ".lora_B.weight"] = b;
         out[diffusers_name(m) + ".alpha"] = alpha_t;
       },
       {}},
      {"comfyui",
       [&](auto& out, const std::string& m, const at::Tensor& a, const at::Tensor& b) {
         out["diffusion_model." + m + ".lora_down.weight"] = a.to(at::kHalf);
         out["diffusion_model." + m + ".lora_up.weight"] = b.to(at::kHalf);
         out["diffusion_model." + m + ".alpha"] = alpha_t;
       },
       {}},
      {"kohya",
       [&](auto& out, const std::string& m, const at::Tensor& a, const at::Tensor& b) {
         out[kohya_name(m) + ".lora_down.weight"] = a.to(at::kBFloat16);
         out[kohya_name(m) + ".lora_up.weight"] = b.to(at::kBFloat16);
         out[kohya_name(m) + ".alpha"] = alpha_t;
       },
       {{"ss_network_alpha", peft.metadata().at("alpha")}}},
  };
  const auto dir = temp_dir("style_lora_formats");
  for (const auto& f : formats) {
    std::map<std::string, at::Tensor> tensors;
    for (const auto& [module, ab] : pairs) f.write(tensors, module, ab.first, ab.second);
    const auto path = dir / (f.name + "_style.safetensors");
    save_safetensors(path, tensors, f.metadata);
    const StyleLora lora = load_style_lora(path, config);
    EXPECT_EQ(lora.name, f.name + "_style");
    EXPECT_EQ(lora.format, f.name);
    EXPECT_TRUE(lora.unmapped.empty()) << f.name << ": " << lora.unmapped.front();
    ASSERT_EQ(lora.modules.size(), pairs.size()) << f.name;
    EXPECT_TRUE(lora.touches_text_kv());
    for (const auto& m : lora.modules) {
      ASSERT_TRUE(pairs.contains(m.target)) << f.name << ": " << m.target;
      const auto& [a, b] = pairs.at(m.target);
      // fp16/bf16 files hold rounded copies.
      const double tol = f.name == "kohya" ? 2e-2 : f.name == "comfyui" ? 2e-3 : 0;
      EXPECT_LE(max_abs_diff(m.down, a), tol) << f.name << " " << m.target;
      EXPECT_LE(max_abs_diff(m.up, b), tol) << f.name << " " << m.target;
      EXPECT_EQ(m.alpha, alpha) << f.name << " " << m.target;
      EXPECT_EQ(m.rank(), rank);
    }
  }
}

TEST(StyleLoraFiles, UnmappedKeysAreNamedInTheWarning) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  WeightStore file = WeightStore::open(fixture("dit_lora.safetensors"));
  file.add("diffusion_model.head.head.lora_A.weight", at::zeros({4, 64}));
  file.add("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", at::zeros({4, 64}));
  // A LoRA on a module the side path does not cover (RMSNorm gain) is left out too, by name.
  file.add("blocks.0.self_attn.norm_q.lora_A.weight", at::zeros({4, 64}));
  std::vector<std::string> warnings;
  log::set_callback([&](log::Level level, std::string_view text) {
    if (level == log::Level::warn) warnings.emplace_back(text);
  });
  const StyleLora lora = map_style_lora(file, fixture_config(), "style");
  log::set_callback(nullptr);
  EXPECT_EQ(lora.modules.size(), 20u);
  ASSERT_EQ(lora.unmapped.size(), 3u);
  ASSERT_EQ(warnings.size(), 1u);
  for (const char* key : {"diffusion_model.head.head.lora_A.weight",
                          "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
                          "blocks.0.self_attn.norm_q.lora_A.weight"}) {
    EXPECT_TRUE(contains(warnings[0], key)) << warnings[0];
    EXPECT_TRUE(std::any_of(lora.unmapped.begin(), lora.unmapped.end(), [&](const std::string& u) {
      return u.starts_with(key);
    })) << key;
  }
}

TEST(StyleLoraFiles, HalfPairIsNamed) {
  WeightStore file;
  file.add("diffusion_model.blocks.0.self_attn.q.lora_down.weight", at::zeros({2, 64}));
  file.add("diffusion_model.blocks.0.self_attn.k.lora_down.weight", at::zeros({2, 64}));
  file.add("diffusion_model.blocks.0.self_attn.k.lora_up.weight", at::zeros({64, 2}));
  const StyleLora lora = map_style_lora(file, WanConfig::tiny(), "half");
  ASSERT_EQ(lora.modules.size(), 1u);
  EXPECT_EQ(lora.modules[0].target, "blocks.0.self_attn.k");
  ASSERT_EQ(lora.unmapped.size(), 1u);
  EXPECT_TRUE(contains(lora.unmapped[0], "diffusion_model.blocks.0.self_attn.q.lora_down.weight"))
      << lora.unmapped[0];
  EXPECT_EQ(lora.modules[0].alpha, 2.0);  // no alpha anywhere: alpha = rank
}

TEST(StyleLoraFiles, NothingMappingIsAnErrorNamingTheKeys) {
  WeightStore file;
  file.add("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", at::zeros({4, 64}));
  file.add("head.head.lora_A.weight", at::zeros({4, 64}));
  try {
    map_style_lora(file, WanConfig::tiny(), "nothing");
    FAIL() << "expected WeightError";
  } catch (const WeightError& e) {
    EXPECT_TRUE(contains(e.what(), "head.head.lora_A.weight")) << e.what();
    EXPECT_TRUE(contains(e.what(), "no tensor maps")) << e.what();
  }
}

TEST(StyleLoraFiles, ShapeOrBlockNotFittingIsNamed) {
  WeightStore wrong_shape;  // a LoRA for the 1.3B model (dim 1536) against the tiny DiT (64)
  wrong_shape.add("blocks.0.ffn.0.lora_A.weight", at::zeros({4, 1536}));
  wrong_shape.add("blocks.0.ffn.0.lora_B.weight", at::zeros({8960, 4}));
  try {
    map_style_lora(wrong_shape, WanConfig::tiny(), "big");
    FAIL() << "expected WeightError";
  } catch (const WeightError& e) {
    EXPECT_TRUE(contains(e.what(), "blocks.0.ffn.0.lora_A.weight")) << e.what();
    EXPECT_TRUE(contains(e.what(), "[4, 1536]")) << e.what();
    EXPECT_TRUE(contains(e.what(), "[128, rank]")) << e.what();
  }
  WeightStore far_block;
  far_block.add("lora_unet_blocks_29_self_attn_q.lora_down.weight", at::zeros({4, 64}));
  far_block.add("lora_unet_blocks_29_self_attn_q.lora_up.weight", at::zeros({64, 4}));
  try {
    map_style_lora(far_block, WanConfig::tiny(), "far");
    FAIL() << "expected WeightError";
  } catch (const WeightError& e) {
    EXPECT_TRUE(contains(e.what(), "lora_unet_blocks_29_self_attn_q")) << e.what();
    EXPECT_TRUE(contains(e.what(), "2 blocks")) << e.what();
  }
}

// Baking the fixture LoRA at strength 1 gives PEFT's merge_and_unload weights (the reference).
TEST(StyleLoraBake, MatchesPeftMergedWeights) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore io = WeightStore::open(fixture("dit_lora_io.safetensors"));
  auto lora = std::make_shared<StyleLora>(map_style_lora(
      WeightStore::open(fixture("dit_lora.safetensors")), fixture_config(), "fixture"));
  const WeightStore baked = bake_style_loras(base, {{lora, 1.0}});
  int checked = 0;
  for (const auto& name : io.names()) {
    if (!name.starts_with("merged.")) continue;
    EXPECT_LT(max_abs_diff(baked.get(name.substr(7)), io.get(name)), 1e-5) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 10);  // the fixture stores block 0's merged weights
}

// The side path at strength 1 against the reference's unmerged PEFT run of one block.
TEST(StyleLoraSidePath, MatchesReferenceUnmergedRun) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore io = WeightStore::open(fixture("dit_lora_io.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  auto lora = std::make_shared<StyleLora>(map_style_lora(
      WeightStore::open(fixture("dit_lora.safetensors")), fixture_config(), "fixture"));
  GeneratorOptions options = options_from_stream(stream);
  options.latent_height = io.get("noise").size(3);
  options.latent_width = io.get("noise").size(4);
  StreamGenerator generator(base, options);  // base weights: nothing merged
  generator.set_style_loras({{lora, 1.0}});
  EXPECT_TRUE(generator.style_loras_active());
  generator.start(io.get("prompt.A"), 0);
  generator.set_noise_source(
      std::make_unique<RecordedNoise>(io, "lora.", options.frames_per_block));
  BlockTrace trace;
  const at::Tensor out = generator.next_block(&trace);
  for (size_t s = 0; s < trace.step_flows.size(); ++s) {
    const std::string step = "lora.b0.s" + std::to_string(s) + ".";
    EXPECT_LT(max_abs_diff(trace.step_flows[s], io.get(step + "flow_pred")), 1e-4) << step;
  }
  EXPECT_LT(max_abs_diff(out, io.get("output_latents")), 1e-4);
}

// Two LoRAs (one adapting the text K/V) at fader strengths: the side path and the weights baked
// at the same strengths give the same stream, prompt switch included (fp32, 1e-5).
TEST(StyleLoraSidePath, EqualsBakedWeightsAtFaderStrengths) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  const WanConfig config = fixture_config();
  auto first = std::make_shared<StyleLora>(
      map_style_lora(WeightStore::open(fixture("dit_lora.safetensors")), config, "fixture"));
  // A second, kohya-named, rank 3 with its own alpha on some modules only.
  auto gen = at::detail::createCPUGenerator(77);
  WeightStore kohya;
  for (const char* m : {"blocks_0_cross_attn_k", "blocks_1_self_attn_v", "blocks_1_ffn_0"}) {
    const std::string name = m;
    const int64_t out = name.ends_with("ffn_0") ? config.ffn_dim : config.dim;
    kohya.add("lora_unet_" + name + ".lora_down.weight", at::randn({3, config.dim}, gen) * 0.3);
    kohya.add("lora_unet_" + name + ".lora_up.weight", at::randn({out, 3}, gen) * 0.3);
    kohya.add("lora_unet_" + name + ".alpha", at::full({}, 1.5));
  }
  auto second = std::make_shared<StyleLora>(map_style_lora(kohya, config, "kohya"));
  ASSERT_EQ(second->modules.size(), 3u);
  const std::vector<ActiveStyleLora> faders = {{first, 0.7}, {second, 1.3}};

  GeneratorOptions options = options_from_stream(stream);
  StreamGenerator side(base, options);
  side.set_style_loras(faders);
  StreamGenerator baked(bake_style_loras(base, faders), options);
  EXPECT_FALSE(baked.style_loras_active());
  for (StreamGenerator* g : {&side, &baked}) g->start(stream.get("prompt.A"), 11);
  double worst = 0, moved = 0;
  for (int b = 0; b < 4; ++b) {
    if (b == 2)
      for (StreamGenerator* g : {&side, &baked}) g->switch_prompt(stream.get("prompt.B"));
    const at::Tensor x = side.next_block();
    const at::Tensor y = baked.next_block();
    worst = std::max(worst, max_abs_diff(x, y));
    moved = std::max(moved, x.abs().max().item<double>());
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(moved, 0.1);  // real latents, not zeros
}

// A fader at 0 is no LoRA at all; moving it changes the next block and nothing before.
TEST(StyleLoraSidePath, FaderMovesApplyAtTheNextBlock) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  auto lora = std::make_shared<StyleLora>(map_style_lora(
      WeightStore::open(fixture("dit_lora.safetensors")), fixture_config(), "fixture"));
  const GeneratorOptions options = options_from_stream(stream);
  auto run = [&](double before, double after) {
    StreamGenerator g(base, options);
    g.set_style_loras({{lora, before}});
    g.start(stream.get("prompt.A"), 3);
    std::vector<at::Tensor> blocks{g.next_block()};
    g.set_style_loras({{lora, after}});
    EXPECT_EQ(g.style_loras_active(), after != 0);
    blocks.push_back(g.next_block());
    blocks.push_back(g.next_block());
    return blocks;
  };
  StreamGenerator plain(base, options);
  plain.start(stream.get("prompt.A"), 3);
  const at::Tensor plain0 = plain.next_block();
  const auto off = run(0, 0);
  EXPECT_TRUE(at::equal(off[0], plain0));  // strength 0: no side path, bit-identical

  const auto steady = run(0.5, 0.5);
  const auto moved = run(0.5, 1.2);
  const auto again = run(0.5, 1.2);
  EXPECT_TRUE(at::equal(steady[0], moved[0]));         // the block before the move is untouched
  EXPECT_GT(max_abs_diff(steady[1], moved[1]), 1e-3);  // the next one changes
  for (size_t i = 0; i < moved.size(); ++i) EXPECT_TRUE(at::equal(moved[i], again[i])) << i;
  const auto back_off = run(0.5, 0);  // a fader back to 0 drops the side path
  EXPECT_GT(max_abs_diff(steady[1], back_off[1]), 1e-3);
}

}  // namespace
}  // namespace longlive::test
