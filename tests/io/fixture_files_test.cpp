// Every golden fixture file loads with the documented tensor names, shapes and dtypes.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "fixtures.h"
#include "longlive/weights.h"
#include "scoped_env.h"

namespace longlive::test {
namespace {

// Every safetensors file of the folder loads, and the folder holds the files of its components
// (README of the public set §1-4; config.json of a generated folder).
TEST(FixtureFiles, EveryFileLoadsAndHasMetadataOrTensors) {
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(fixtures_dir())) {
    if (entry.path().extension() != ".safetensors") continue;
    const WeightStore store = WeightStore::open(entry.path());
    EXPECT_GT(store.size(), 0u) << entry.path();
    for (const auto& name : store.names()) EXPECT_TRUE(store.get(name).defined()) << name;
    files.insert(entry.path().filename().string());
  }
  for (const auto& [component, names] : fixture_component_files()) {
    if (!fixture_has(component)) continue;
    for (const auto& name : names)
      EXPECT_TRUE(files.count(name)) << component << ": " << name << " missing";
  }
}

// Which components a folder holds: its manifest's list; without one (the public set, or a set
// made by another harness), every component unless the folder has other components' files and
// none of this one's (a set made without VACE). A folder with none at all claims every component,
// so that its tests fail and name it rather than skip.
TEST(FixtureFiles, ComponentsHeldByAFolder) {
  const auto dir = temp_dir("fixture-folder");
  const ScopedEnv folder("LONGLIVE_FIXTURES", dir.c_str());
  auto touch = [&](const std::string& name) { std::ofstream(dir / name) << "x"; };
  EXPECT_TRUE(fixture_has("vace"));
  touch("dit_weights.safetensors");
  EXPECT_TRUE(fixture_has("dit"));
  EXPECT_FALSE(fixture_has("vace"));
  EXPECT_FALSE(fixture_has("umt5"));
  touch("vace_stream.safetensors");  // one of its files: held (the others then fail by name)
  EXPECT_TRUE(fixture_has("vace"));
  std::ofstream(dir / "config.json") << R"({"components": ["umt5"]})";
  EXPECT_TRUE(fixture_has("umt5"));
  EXPECT_FALSE(fixture_has("dit"));
  EXPECT_FALSE(fixture_has("vace"));
}

// Tensor names and shapes follow CausalWanModel's state_dict for the configuration in the
// file's metadata: the same non-block tensors, and the same per-block set for every layer.
TEST(FixtureFiles, DitWeightsHaveTheWanNamesAndShapes) {
  const WeightStore w = WeightStore::open(fixture("dit_weights.safetensors"));
  const auto config = nlohmann::json::parse(w.metadata().at("config"));
  const int64_t dim = config.at("dim"), in_dim = config.at("in_dim"),
                out_dim = config.at("out_dim");
  const int64_t layers = config.at("num_layers"), text_dim = config.at("text_dim");
  const auto patch = config.at("patch_size").get<std::vector<int64_t>>();
  const int64_t patch_volume = patch[0] * patch[1] * patch[2];

  std::set<std::string> outside_blocks, block0;
  for (const auto& name : w.names()) {
    if (name.rfind("blocks.0.", 0) == 0)
      block0.insert(name.substr(9));
    else if (name.rfind("blocks.", 0) != 0)
      outside_blocks.insert(name);
  }
  EXPECT_EQ(outside_blocks,
            (std::set<std::string>{
                "patch_embedding.weight", "patch_embedding.bias", "text_embedding.0.weight",
                "text_embedding.0.bias", "text_embedding.2.weight", "text_embedding.2.bias",
                "time_embedding.0.weight", "time_embedding.0.bias", "time_embedding.2.weight",
                "time_embedding.2.bias", "time_projection.1.weight", "time_projection.1.bias",
                "head.modulation", "head.head.weight", "head.head.bias"}));
  for (int64_t layer = 1; layer < layers; ++layer)
    for (const auto& suffix : block0)
      EXPECT_TRUE(w.contains(fmt::format("blocks.{}.{}", layer, suffix))) << layer << suffix;
  EXPECT_EQ(w.size(), outside_blocks.size() + static_cast<size_t>(layers) * block0.size());
  EXPECT_FALSE(w.contains(fmt::format("blocks.{}.modulation", layers)));

  EXPECT_EQ(w.get("patch_embedding.weight").sizes(),
            (std::vector<int64_t>{dim, in_dim, patch[0], patch[1], patch[2]}));
  EXPECT_EQ(w.get("text_embedding.0.weight").sizes(), (std::vector<int64_t>{dim, text_dim}));
  EXPECT_EQ(w.get("time_projection.1.weight").sizes(), (std::vector<int64_t>{6 * dim, dim}));
  EXPECT_EQ(w.get("blocks.0.modulation").sizes(), (std::vector<int64_t>{1, 6, dim}));
  EXPECT_EQ(w.get("head.modulation").sizes(), (std::vector<int64_t>{1, 2, dim}));
  EXPECT_EQ(w.get("head.head.weight").sizes(), (std::vector<int64_t>{out_dim * patch_volume, dim}));
  for (const char* n : {"self_attn.norm_q.weight", "cross_attn.norm_k.weight", "norm3.bias",
                        "ffn.0.weight", "ffn.2.weight"})
    EXPECT_TRUE(block0.count(n)) << n;
  EXPECT_EQ(w.get("blocks.0.ffn.0.weight").scalar_type(), at::kFloat);
}

TEST(FixtureFiles, TaehvPartsAreHalfPrecisionDecoderTensors) {
  LONGLIVE_REQUIRE_FIXTURE("taehv");
  const auto dir = taehv_weights_dir();
  if (dir.empty()) GTEST_SKIP() << "no TAEHV decoder weights for " << fixtures_dir();
  WeightStore all;
  for (int part = 0; part < 4; ++part)
    all.merge(WeightStore::open(
        dir / ("taehv_decoder_weights.part" + std::to_string(part) + ".safetensors")));
  // The layer indices are TAEHV's nn.Sequential positions (fixed by the class, not by a config).
  EXPECT_TRUE(all.contains("decoder.1.weight"));
  EXPECT_TRUE(all.contains("decoder.3.conv.0.weight"));
  EXPECT_TRUE(all.contains("decoder.7.conv.weight"));
  EXPECT_TRUE(all.contains("decoder.22.weight"));
  for (const auto& name : all.names()) {
    EXPECT_EQ(name.rfind("decoder.", 0), 0u) << name;
    EXPECT_EQ(all.get(name).scalar_type(), at::kHalf) << name;
  }
}

TEST(FixtureFiles, Umt5Names) {
  LONGLIVE_REQUIRE_FIXTURE("umt5");
  const WeightStore t5 = WeightStore::open(fixture("umt5_weights.safetensors"));
  EXPECT_EQ(t5.get("token_embedding.weight").dim(), 2);
  EXPECT_TRUE(t5.contains("blocks.0.pos_embedding.embedding.weight"));
  EXPECT_TRUE(t5.contains("blocks.1.ffn.gate.0.weight"));
  const WeightStore io = WeightStore::open(fixture("umt5_io.safetensors"));
  EXPECT_EQ(io.get("input_ids").scalar_type(), at::kLong);
}

// PEFT keys: an A and a B matrix of the metadata's rank for every nn.Linear of every attention
// block (self q/k/v/o, cross q/k/v/o, ffn.0, ffn.2 = 10 per layer).
TEST(FixtureFiles, LoraHasAnAAndBForEveryLinearOfEveryBlock) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const int64_t layers = nlohmann::json::parse(base.metadata().at("config")).at("num_layers");
  const WeightStore lora = WeightStore::open(fixture("dit_lora.safetensors"));
  const int64_t rank = std::stoll(lora.metadata().at("rank"));
  const std::vector<std::string> linears = {
      "self_attn.q",  "self_attn.k",  "self_attn.v",  "self_attn.o", "cross_attn.q",
      "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0",       "ffn.2"};
  EXPECT_EQ(lora.size(), static_cast<size_t>(2 * layers) * linears.size());
  for (int64_t layer = 0; layer < layers; ++layer)
    for (const auto& linear : linears) {
      const auto prefix = fmt::format("base_model.model.blocks.{}.{}.", layer, linear);
      const auto weight = base.get(fmt::format("blocks.{}.{}.weight", layer, linear));
      ASSERT_TRUE(lora.contains(prefix + "lora_A.weight")) << prefix;
      EXPECT_EQ(lora.get(prefix + "lora_A.weight").sizes(),
                (std::vector<int64_t>{rank, weight.size(1)}));
      EXPECT_EQ(lora.get(prefix + "lora_B.weight").sizes(),
                (std::vector<int64_t>{weight.size(0), rank}));
    }
}

// Wan2.1_VAE.pth has 194 tensors whatever the widths: the count is fixed by WanVAE_'s layer
// structure (dim_mult of 4 levels, 2 res blocks), and the generator keeps that structure.
TEST(FixtureFiles, WanVaeHasTheWan21TensorCount) {
  LONGLIVE_REQUIRE_FIXTURE("wanvae");
  const WeightStore vae = WeightStore::open(fixture("wanvae_weights.safetensors"));
  const auto config = nlohmann::json::parse(vae.metadata().at("config"));
  ASSERT_EQ(config.at("dim_mult").size(), 4u);
  ASSERT_EQ(config.at("num_res_blocks").get<int>(), 2);
  EXPECT_EQ(vae.size(), 194u);
}

TEST(FixtureFiles, InspectDescribesDitWeights) {
  const WeightStore w = WeightStore::open(fixture("dit_weights.safetensors"));
  const auto d = io::describe_weights(w, "dit");
  EXPECT_EQ(d["count"].get<size_t>(), w.size());
  const std::string table = io::format_weights_table(d);
  EXPECT_NE(table.find(fmt::format("total: {} tensors", w.size())), std::string::npos) << table;
  const auto patch = w.get("patch_embedding.weight").sizes();
  EXPECT_NE(table.find(fmt::format("[{}]", fmt::join(patch, ", "))), std::string::npos) << table;
}

}  // namespace
}  // namespace longlive::test
