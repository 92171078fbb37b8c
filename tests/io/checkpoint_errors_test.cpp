// Corrupt and mismatched checkpoints give errors naming the file, tensor and the problem.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "io/safetensors.h"
#include "longlive/error.h"
#include "longlive/weights.h"

namespace longlive::test {
namespace {

std::filesystem::path write_raw(const std::string& name, const std::string& header,
                                size_t data_bytes, int64_t declared_length = -1) {
  const auto path = temp_dir("st") / name;
  std::ofstream out(path, std::ios::binary);
  const uint64_t len =
      declared_length >= 0 ? static_cast<uint64_t>(declared_length) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
  return path;
}

template <typename E>
std::string error_opening(const std::filesystem::path& path) {
  try {
    WeightStore::open(path);
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "opened " << path;
  return {};
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

TEST(SafetensorsErrors, TruncatedFile) {
  const auto path = temp_dir("st") / "short.safetensors";
  std::ofstream(path, std::ios::binary) << "abc";
  const auto msg = error_opening<FormatError>(path);
  expect_contains(msg, "short.safetensors");
  expect_contains(msg, "truncated");
}

TEST(SafetensorsErrors, HeaderLengthLargerThanFile) {
  const auto msg = error_opening<FormatError>(write_raw("long.safetensors", "{}", 0, 1 << 20));
  expect_contains(msg, "header length 1048576 exceeds");
}

TEST(SafetensorsErrors, InvalidJson) {
  expect_contains(error_opening<FormatError>(write_raw("json.safetensors", "{\"a\": [", 0)),
                  "not valid JSON");
}

TEST(SafetensorsErrors, UnknownDtype) {
  const auto msg = error_opening<FormatError>(write_raw(
      "dtype.safetensors", R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}})", 2));
  expect_contains(msg, "tensor 'w' has unknown dtype 'Q4'");
}

TEST(SafetensorsErrors, OverlappingOffsets) {
  const auto msg = error_opening<FormatError>(
      write_raw("overlap.safetensors",
                R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                12));
  expect_contains(msg, "overlap");
  expect_contains(msg, "'a'");
}

TEST(SafetensorsErrors, OffsetsOutOfBounds) {
  const auto msg = error_opening<FormatError>(write_raw(
      "oob.safetensors", R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8));
  expect_contains(msg, "tensor 'a' data_offsets [0, 16) lie outside the 8 data bytes");
}

TEST(SafetensorsErrors, ShapeDoesNotMatchByteRange) {
  const auto msg = error_opening<FormatError>(
      write_raw("shape.safetensors",
                R"({"a": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [0, 8]}})", 8));
  expect_contains(msg, "tensor 'a' spans 8 bytes but shape [3, 2] of BF16 needs 12");
}

// Found by fuzz_safetensors_file: a BOOL byte other than 0/1 reached ATen's kernels (undefined
// behaviour; a copy changed the value).
TEST(SafetensorsErrors, BoolTensorWithByteOtherThanZeroOrOne) {
  const std::string header = R"({"ok":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},)"
                             R"("flags":{"dtype":"BOOL","shape":[3],"data_offsets":[2,5]}})";
  const auto path = temp_dir("st") / "bool.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((header.size() >> (8 * i)) & 0xff));
    out << header << std::string("\x01\x00\x01\x31\x00", 5);
  }
  const auto msg = error_opening<FormatError>(path);
  expect_contains(msg, "bool.safetensors");
  expect_contains(msg, "tensor 'flags' is BOOL but its byte 1 holds 49");
}

TEST(SafetensorsErrors, MissingFile) {
  expect_contains(error_opening<IoError>("/nonexistent/model.safetensors"),
                  "/nonexistent/model.safetensors");
}

TEST(WeightStoreErrors, MissingTensorAndWrongShapeOrDtypeOnRequire) {
  const WeightStore w = WeightStore::open(fixture("dit_weights.safetensors"));
  const auto config = nlohmann::json::parse(w.metadata().at("config"));
  const int64_t dim = config.at("dim"), layers = config.at("num_layers");
  const std::string past_last = fmt::format("blocks.{}.ffn.0.weight", layers);
  try {
    w.get(past_last);
    FAIL();
  } catch (const WeightError& e) {
    expect_contains(e.what(), "'" + past_last + "' not found");
    expect_contains(e.what(), "dit_weights.safetensors");
  }
  try {
    w.require("head.modulation", {1, 3, dim});
    FAIL();
  } catch (const WeightError& e) {
    expect_contains(e.what(), fmt::format("dit_weights.safetensors: tensor 'head.modulation' has "
                                          "shape [1, 2, {0}], expected [1, 3, {0}]",
                                          dim));
  }
  try {
    w.require("head.modulation", {1, 2, dim}, at::kBFloat16);
    FAIL();
  } catch (const WeightError& e) {
    expect_contains(e.what(), "dtype Float, expected BFloat16");
  }
}

TEST(WeightStoreErrors, NonCheckpointGivenAsPt) {
  const auto path = temp_dir("pt") / "notes.pt";
  std::ofstream(path) << "just text";
  expect_contains(error_opening<FormatError>(path), "notes.pt: not a readable PyTorch checkpoint");
}

TEST(SafetensorsRoundTrip, WriterOutputReadsBackZeroCopyWithMetadata) {
  const auto path = temp_dir("rt") / "x.safetensors";
  const at::Tensor a = at::randn({3, 5});
  const at::Tensor b = at::arange(7, at::kLong);
  const at::Tensor c = at::randn({2, 2}).to(at::kBFloat16);
  save_safetensors(path, {{"a", a}, {"b", b}, {"c", c}}, {{"note", "hi"}});
  const WeightStore s = WeightStore::open(path);
  EXPECT_TRUE(at::equal(s.get("a"), a));
  EXPECT_TRUE(at::equal(s.get("b"), b));
  EXPECT_TRUE(at::equal(s.get("c"), c));
  EXPECT_EQ(s.metadata().at("note"), "hi");
}

TEST(ShardedSafetensors, IndexJoinsShardsAndNamesMissingTensors) {
  const auto dir = temp_dir("shard");
  save_safetensors(dir / "m-00001.safetensors", {{"x", at::ones({2})}});
  save_safetensors(dir / "m-00002.safetensors", {{"y", at::zeros({3})}});
  std::ofstream(dir / "m.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"x": "m-00001.safetensors", "y": "m-00002.safetensors"}})";
  const WeightStore s = WeightStore::open(dir / "m.safetensors.index.json");
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.get("y").size(0), 3);
  std::ofstream(dir / "bad.safetensors.index.json")
      << R"({"weight_map": {"x": "m-00001.safetensors", "z": "m-00001.safetensors"}})";
  try {
    WeightStore::open(dir / "bad.safetensors.index.json");
    FAIL();
  } catch (const WeightError& e) {
    expect_contains(e.what(), "tensor 'z' is listed in the index but missing");
  }
}

}  // namespace
}  // namespace longlive::test
