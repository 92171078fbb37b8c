// Every golden fixture file loads with the documented tensor names, shapes and dtypes.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "longlive/inspect.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

TEST(FixtureFiles, EveryFileLoadsAndHasMetadataOrTensors) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fixtures_dir())) {
    if (entry.path().extension() != ".safetensors") continue;
    const WeightStore store = WeightStore::open(entry.path());
    EXPECT_GT(store.size(), 0u) << entry.path();
    for (const auto& name : store.names()) EXPECT_TRUE(store.get(name).defined()) << name;
    ++files;
  }
  EXPECT_GE(files, 14);
}

TEST(FixtureFiles, DitWeightsHaveTheWanNamesAndShapes) {
  const WeightStore w = WeightStore::open(fixture("dit_weights.safetensors"));
  EXPECT_EQ(w.size(), 69u);
  const int64_t dim = w.get("patch_embedding.weight").size(0);
  EXPECT_EQ(w.get("patch_embedding.weight").sizes(), (std::vector<int64_t>{dim, 16, 1, 2, 2}));
  EXPECT_EQ(w.get("time_projection.1.weight").sizes(), (std::vector<int64_t>{6 * dim, dim}));
  EXPECT_EQ(w.get("blocks.0.modulation").sizes(), (std::vector<int64_t>{1, 6, dim}));
  EXPECT_EQ(w.get("head.modulation").sizes(), (std::vector<int64_t>{1, 2, dim}));
  EXPECT_EQ(w.get("head.head.weight").sizes(), (std::vector<int64_t>{64, dim}));
  for (const char* n :
       {"self_attn.norm_q.weight", "cross_attn.norm_k.weight", "norm3.bias", "ffn.2.weight"})
    EXPECT_TRUE(w.contains(std::string("blocks.1.") + n)) << n;
  EXPECT_EQ(w.get("blocks.0.ffn.0.weight").scalar_type(), at::kFloat);
}

TEST(FixtureFiles, TaehvPartsAreHalfPrecisionDecoderTensors) {
  WeightStore all;
  for (int part = 0; part < 4; ++part)
    all.merge(WeightStore::open(
        fixture("taehv_decoder_weights.part" + std::to_string(part) + ".safetensors")));
  EXPECT_TRUE(all.contains("decoder.1.weight"));
  EXPECT_TRUE(all.contains("decoder.3.conv.0.weight"));
  EXPECT_TRUE(all.contains("decoder.7.conv.weight"));
  EXPECT_TRUE(all.contains("decoder.22.weight"));
  for (const auto& name : all.names()) {
    EXPECT_EQ(name.rfind("decoder.", 0), 0u) << name;
    EXPECT_EQ(all.get(name).scalar_type(), at::kHalf) << name;
  }
}

TEST(FixtureFiles, Umt5AndLoraAndVaeNames) {
  const WeightStore t5 = WeightStore::open(fixture("umt5_weights.safetensors"));
  EXPECT_EQ(t5.get("token_embedding.weight").dim(), 2);
  EXPECT_TRUE(t5.contains("blocks.0.pos_embedding.embedding.weight"));
  EXPECT_TRUE(t5.contains("blocks.1.ffn.gate.0.weight"));
  const WeightStore lora = WeightStore::open(fixture("dit_lora.safetensors"));
  EXPECT_EQ(lora.size(), 40u);
  EXPECT_TRUE(lora.contains("base_model.model.blocks.0.cross_attn.k.lora_A.weight"));
  const WeightStore vae = WeightStore::open(fixture("wanvae_weights.safetensors"));
  EXPECT_EQ(vae.size(), 194u);
  const WeightStore io = WeightStore::open(fixture("umt5_io.safetensors"));
  EXPECT_EQ(io.get("input_ids").scalar_type(), at::kLong);
}

TEST(FixtureFiles, InspectDescribesDitWeights) {
  const auto d = io::describe_weights(WeightStore::open(fixture("dit_weights.safetensors")), "dit");
  EXPECT_EQ(d["count"].get<int>(), 69);
  const std::string table = io::format_weights_table(d);
  EXPECT_NE(table.find("total: 69 tensors"), std::string::npos) << table;
  EXPECT_NE(table.find("[64, 16, 1, 2, 2]"), std::string::npos);
}

}  // namespace
}  // namespace longlive::test
