// PyTorch zip checkpoints: a real torch.save file and LibTorch's own serializer, nested dicts.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

const std::filesystem::path kData =
    std::filesystem::path(LONGLIVE_TEST_SOURCE_DIR) / "tests" / "data";

TEST(TorchCheckpoint, TorchSaveFileLoadsWithExactValues) {
  const WeightStore expected = WeightStore::open(kData / "nested_checkpoint_expected.safetensors");
  const WeightStore all = WeightStore::open(kData / "nested_checkpoint.pt");
  EXPECT_EQ(all.size(), expected.size());  // the int and string entries are not tensors
  for (const auto& name : expected.names()) {
    ASSERT_TRUE(all.contains(name)) << name;
    EXPECT_EQ(all.get(name).scalar_type(), expected.get(name).scalar_type()) << name;
    EXPECT_TRUE(at::equal(all.get(name), expected.get(name))) << name;
  }
}

TEST(TorchCheckpoint, DictKeySelectsGeneratorAndPrefixStrips) {
  const WeightStore gen = WeightStore::open(kData / "nested_checkpoint.pt", "generator");
  EXPECT_TRUE(gen.contains("model.patch_embedding.bias"));
  EXPECT_FALSE(gen.contains("base_model.model.blocks.0.ffn.0.lora_A.weight"));
  const WeightStore stripped = gen.strip_prefix("model.");
  EXPECT_TRUE(stripped.contains("blocks.0.self_attn.q.weight"));
  EXPECT_EQ(stripped.get("patch_embedding.bias").scalar_type(), at::kBFloat16);
  EXPECT_THROW(WeightStore::open(kData / "nested_checkpoint.pt", "generator_ema"), WeightError);
}

TEST(TorchCheckpoint, LibTorchPickleSaveRoundTripsNestedDicts) {
  c10::Dict<std::string, at::Tensor> inner;
  inner.insert("w", at::randn({2, 3}));
  inner.insert("b", at::arange(4, at::kLong));
  c10::impl::GenericDict outer(c10::StringType::get(), c10::AnyType::get());
  outer.insert("generator", inner);
  outer.insert("epoch", 7);
  const std::vector<char> bytes = torch::jit::pickle_save(outer);
  const auto path = temp_dir("pickle") / "saved.pt";
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const WeightStore s = WeightStore::open(path);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(at::equal(s.get("generator.w"), inner.at("w")));
  EXPECT_TRUE(at::equal(s.get("generator.b"), inner.at("b")));
}

}  // namespace
}  // namespace longlive::test
