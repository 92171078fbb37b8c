// LongLive's LoRA merged at load: merged weights and the adapted block against the reference.
#include <gtest/gtest.h>

#include "dit_fixture.h"
#include "longlive/error.h"

namespace longlive::test {
namespace {

TEST(DitLora, MergedWeightsMatchPeftMergeAndUnload) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore lora = WeightStore::open(fixture("dit_lora.safetensors"));
  const WeightStore io = WeightStore::open(fixture("dit_lora_io.safetensors"));
  const double alpha = std::stod(lora.metadata().at("alpha"));
  const WeightStore merged = merge_lora(base, lora, alpha);
  int checked = 0;
  for (const auto& name : io.names()) {
    if (name.rfind("merged.", 0) != 0) continue;
    const std::string target = name.substr(7);
    EXPECT_LT(max_abs_diff(merged.get(target), io.get(name)), 1e-5) << target;
    EXPECT_GT(max_abs_diff(base.get(target), io.get(name)), 1e-5) << target << " was not changed";
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(DitLora, BlockWithMergedLoraMatchesReference) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const WeightStore lora = WeightStore::open(fixture("dit_lora.safetensors"));
  const WeightStore io = WeightStore::open(fixture("dit_lora_io.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("dit_stream.safetensors"));
  GeneratorOptions options = options_from_stream(stream);  // model config and schedule
  options.lora_alpha = std::stod(lora.metadata().at("alpha"));
  const auto& noise = io.get("noise");
  options.latent_height = noise.size(3);
  options.latent_width = noise.size(4);
  StreamGenerator generator(base, options, &lora);
  generator.start(io.get("prompt.A"), 0);
  generator.set_noise_source(
      std::make_unique<RecordedNoise>(io, "lora.", options.frames_per_block));
  BlockTrace trace;
  const at::Tensor out = generator.next_block(&trace);
  for (size_t s = 0; s < trace.step_flows.size(); ++s) {
    const std::string step = "lora.b0.s" + std::to_string(s) + ".";
    EXPECT_LT(max_abs_diff(trace.step_x0[s], io.get(step + "x0_pred")), 1e-4) << step;
  }
  EXPECT_LT(max_abs_diff(out, io.get("output_latents_merged_weights")), 1e-4);
  EXPECT_LT(max_abs_diff(out, io.get("output_latents")), 1e-4);  // unmerged run: 1.6e-6 apart
}

TEST(DitLora, RankMismatchIsNamed) {
  LONGLIVE_REQUIRE_FIXTURE("lora");
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  WeightStore lora = WeightStore::open(fixture("dit_lora.safetensors"));
  const std::string a = "base_model.model.blocks.1.ffn.0.lora_A.weight";
  const std::string b = "base_model.model.blocks.1.ffn.0.lora_B.weight";
  const at::Tensor a_t = lora.get(a);  // copies of the handles: add() replaces the entries
  const at::Tensor b_t = lora.get(b);
  lora.add(a, at::cat({a_t, a_t}, 0));
  lora.add(b, at::cat({b_t, b_t}, 1));
  try {
    merge_lora(base, lora, 0);
    FAIL() << "expected WeightError";
  } catch (const WeightError& e) {
    EXPECT_NE(std::string(e.what()).find("rank mismatch"), std::string::npos) << e.what();
    const std::string doubled = "rank " + std::to_string(2 * a_t.size(0));
    EXPECT_NE(std::string(e.what()).find(doubled), std::string::npos) << e.what();
  }
}

TEST(DitLora, LoraNotFittingTheBaseWeightIsNamed) {
  const WeightStore base = WeightStore::open(fixture("dit_weights.safetensors"));
  const int64_t out = base.get("blocks.0.self_attn.q.weight").size(0);
  const int64_t in = base.get("blocks.0.self_attn.q.weight").size(1);
  WeightStore lora;  // lora_A's input width is one short of the base weight's
  lora.add("base_model.model.blocks.0.self_attn.q.lora_A.weight", at::zeros({4, in - 1}));
  lora.add("base_model.model.blocks.0.self_attn.q.lora_B.weight", at::zeros({out, 4}));
  try {
    merge_lora(base, lora, 0);
    FAIL() << "expected WeightError";
  } catch (const WeightError& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.self_attn.q"), std::string::npos) << e.what();
    const std::string shape = "[4, " + std::to_string(in - 1) + "]";
    EXPECT_NE(std::string(e.what()).find(shape), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longlive::test
