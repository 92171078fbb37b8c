#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "longlive/error.h"
#include "longlive/preset.h"

namespace longlive::test {
namespace {

const std::filesystem::path kPresetDir =
    std::filesystem::path(LONGLIVE_TEST_SOURCE_DIR) / "presets";

std::string error_of(const std::string& json) {
  try {
    parse_preset(json, "bad.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << json;
  return {};
}

TEST(Presets, EveryShippedPresetLoadsInSpeedOrder) {
  const auto presets = load_presets(kPresetDir);
  std::vector<std::string> names;
  for (const auto& p : presets) {
    names.push_back(p.name);
    EXPECT_FALSE(p.description.empty()) << p.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"quality", "balanced", "speed", "turbo", "turbo_fp8",
                                             "ultra", "low_memory"}));
  EXPECT_EQ(presets[0].decoder, DecoderKind::wan);
  EXPECT_EQ(presets[4].dtype, ComputeDType::fp8);
  EXPECT_EQ(presets[6].kv_dtype, KvDType::int8);
  EXPECT_FALSE(presets[3].quality_preserving);
  // VACE inputs through TAEHV's encoder in ultra only; the reference's Wan VAE elsewhere.
  for (const auto& p : presets)
    EXPECT_EQ(p.input_encoder, p.name == "ultra" ? InputEncoderKind::taehv : InputEncoderKind::wan)
        << p.name;
}

TEST(Presets, RoundTripThroughJson) {
  for (const auto& p : load_presets(kPresetDir)) {
    const Preset again = parse_preset(to_json(p).dump(), "roundtrip");
    EXPECT_EQ(to_json(again), to_json(p)) << p.name;
  }
}

TEST(Presets, DefaultsFillMissingFieldsAndNameComesFromTheFile) {
  const auto dir = temp_dir("preset");
  std::ofstream(dir / "mine.json") << R"({"denoising_steps": [1000, 500]})";
  const Preset p = load_preset(dir / "mine.json");
  EXPECT_EQ(p.name, "mine");
  EXPECT_EQ(p.local_attn_frames, 12);
  EXPECT_EQ(p.denoising_steps, (std::vector<double>{1000, 500}));
  EXPECT_THROW(find_preset(dir, "nope"), ConfigError);
}

TEST(Presets, ErrorsNameFileFieldAndAllowedValues) {
  struct Case {
    std::string json, expected;
  };
  const std::vector<Case> cases = {
      {R"({"colour": 1})", "unknown field 'colour'"},
      {R"({"cuda_graphs": "yes"})", "'cuda_graphs': expected true or false"},
      {R"({"denoising_steps": [1000, 1000]})", "strictly decreasing"},
      {R"({"denoising_steps": [1200, 500]})", "outside (0, 1000]"},
      {R"({"denoising_steps": []})", "non-empty list"},
      {R"({"denoising_steps": [1000, 0]})", "outside (0, 1000]"},
      {R"({"local_attn_frames": 3, "sink_frames": 3})", "must hold the sink"},
      {R"({"height": 470})", "'height': 470 is not a multiple of 16"},
      {R"({"width": 4096})", "'width': 4096 is outside [16, 2048]"},
      {R"({"dtype": "int4"})", "'int4' is not one of bf16, fp16, fp32, fp8"},
      {R"({"decoder": "vae"})", "'vae' is not one of taehv, wan"},
      {R"({"input_encoder": "tae"})", "'input_encoder': 'tae' is not one of wan, taehv"},
      {R"({"frames_per_block": 1.5})", "expected an integer"},
      {R"([1, 2])", "must be a JSON object"},
      {R"({"name": )", "not valid JSON"},
  };
  for (const auto& c : cases) {
    const std::string msg = error_of(c.json);
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << "for " << c.json << ": " << msg;
  }
}

TEST(Presets, MissingFolderAndFileAreIoErrors) {
  EXPECT_THROW(load_presets("/nonexistent/presets"), IoError);
  EXPECT_THROW(load_preset("/nonexistent/x.json"), IoError);
}

}  // namespace
}  // namespace longlive::test
