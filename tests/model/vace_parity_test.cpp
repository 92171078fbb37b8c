// Parity of the VACE-conditioned stream with the reference run recorded in vace_stream.safetensors
// (LongLive v1.0's causal DiT wrapped by Scope's causal VACE): every denoising call, the hints of
// each block's first step, the re-cache after the prompt switch (no VACE there) and the returned
// latents, with the per-block VACE plan of the metadata (conditioning, reference only, none).
// Plus loading: the layer map, and clear errors for weights that do not fit.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <map>

#include "dit_fixture.h"
#include "error_message.h"
#include "longlive/error.h"
#include "model/causal_wan.h"
#include "model/vace.h"

namespace longlive::test {
namespace {

constexpr double kTolerance = 1e-4;

struct BlockPlan {
  std::string kind;
  double scale = 0;
};

std::map<int64_t, BlockPlan> vace_plan(const WeightStore& stream) {
  std::map<int64_t, BlockPlan> plan;
  for (const auto& entry : metadata_json(stream, "plan"))
    plan[entry.at("block")] = {entry.at("kind"), entry.at("scale")};
  return plan;
}

// A copy of a store without its safetensors metadata (the real module files have none).
WeightStore without_metadata(const WeightStore& store) {
  WeightStore copy;
  for (const auto& name : store.names()) copy.add(name, store.get(name), store.source_of(name));
  return copy;
}

std::vector<int64_t> recorded_layers(const WeightStore& module) {
  return metadata_json(module, "vace_layers").get<std::vector<int64_t>>();
}

// The module as the real files come (no metadata: the layer map follows from the block count)
// when that map is the one the fixture records; otherwise with its metadata, which then names the
// layers (a fixture may place VACE blocks where no block count implies them).
WeightStore module_as_shipped(const WeightStore& module, const WanConfig& dit) {
  const WeightStore bare = without_metadata(module);
  try {
    if (infer_vace_layout(bare, dit).layers == recorded_layers(module)) return bare;
  } catch (const WeightError&) {
    // the block count does not divide the layers: the map needs the metadata
  }
  return module;
}

struct VaceRun {
  int64_t checked_calls = 0;
  int64_t checked_hints = 0;
  int64_t vace_blocks = 0;
};

// Replays the recorded calls. with_vace = false runs the same stream with no VACE input at all
// (VACE weights still loaded) and compares with output_latents_without_vace.
VaceRun run_vace_stream(bool with_vace) {
  const WeightStore weights = WeightStore::open(fixture("vace_dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("vace_stream.safetensors"));
  const GeneratorOptions options = options_from_stream(stream);
  const WeightStore module =
      module_as_shipped(WeightStore::open(fixture("vace_module.safetensors")), options.model);
  StreamGenerator generator(weights, options, nullptr, &module);
  EXPECT_TRUE(generator.vace_available());
  const auto calls = metadata_json(stream, "calls");
  const auto plan = vace_plan(stream);
  const int64_t steps = static_cast<int64_t>(options.denoising_steps.size());
  auto prompt = [&](const std::string& name) { return stream.get("prompt." + name); };

  VaceRun run;
  std::vector<at::Tensor> outputs;
  bool started = false;
  for (const auto& call : calls) {
    const std::string name = call.at("name");
    const std::string kind = call.at("kind");
    if (kind == "recache") {
      generator.switch_prompt(prompt(call.at("prompt")));
      BlockTrace trace;
      EXPECT_TRUE(generator.apply_pending_switch(&trace));
      EXPECT_TRUE(trace.step_hints.empty());
      if (!with_vace) continue;  // recorded for the VACE run only
      const at::Tensor ref = stream.get(name + ".flow_pred");
      const int64_t ran = trace.recache_flow.size(1);
      EXPECT_LT(max_abs_diff(trace.recache_flow, ref.narrow(1, ref.size(1) - ran, ran)), kTolerance)
          << name;
      ++run.checked_calls;
      continue;
    }
    if (name.size() < 3 || name.substr(name.size() - 3) != ".s0") continue;
    const std::string block_name = name.substr(0, name.find('.'));
    const int64_t block = std::stoll(block_name.substr(1));
    if (!started) {
      generator.start(prompt(call.at("prompt")), 0);
      generator.set_noise_source(
          std::make_unique<RecordedNoise>(stream, "", options.frames_per_block));
      started = true;
    }
    const bool block_has_vace = with_vace && call.contains("vace");
    if (block_has_vace) {
      const auto& v = call.at("vace");
      EXPECT_EQ(plan.at(block).kind, v.at("kind").get<std::string>());
      generator.set_vace(VaceInput{stream.get(v.at("context")), v.at("scale").get<double>()});
      ++run.vace_blocks;
    } else {
      generator.set_vace(std::nullopt);
    }
    BlockTrace trace;
    outputs.push_back(generator.next_block(&trace));
    EXPECT_EQ(static_cast<int64_t>(trace.step_flows.size()), steps);
    if (static_cast<int64_t>(trace.step_flows.size()) != steps) return run;
    EXPECT_EQ(trace.step_hints.size(), block_has_vace ? static_cast<size_t>(steps) : 0u);
    if (!with_vace) continue;
    for (int64_t s = 0; s < steps; ++s) {
      const std::string step = block_name + ".s" + std::to_string(s) + ".";
      EXPECT_LT(max_abs_diff(trace.step_inputs[s], stream.get(step + "x_in")), kTolerance) << step;
      EXPECT_LT(max_abs_diff(trace.step_flows[s], stream.get(step + "flow_pred")), kTolerance)
          << step;
      EXPECT_LT(max_abs_diff(trace.step_x0[s], stream.get(step + "x0_pred")), kTolerance) << step;
      ++run.checked_calls;
    }
    const std::string hints = block_name + ".s0.hints";
    EXPECT_EQ(stream.contains(hints), block_has_vace) << hints;
    if (block_has_vace && stream.contains(hints)) {
      EXPECT_EQ(trace.step_hints[0].sizes(), stream.get(hints).sizes()) << hints;
      EXPECT_LT(max_abs_diff(trace.step_hints[0], stream.get(hints)), kTolerance) << hints;
      ++run.checked_hints;
    }
  }
  const at::Tensor all = at::cat(outputs, 1);
  const std::string expected = with_vace ? "output_latents" : "output_latents_without_vace";
  EXPECT_LT(max_abs_diff(all, stream.get(expected)), kTolerance) << expected;
  EXPECT_EQ(generator.frames_generated(), stream.get(expected).size(1));
  return run;
}

TEST(VaceParity, EveryCallHintsAndLatentsMatchTheReference) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const VaceRun run = run_vace_stream(true);
  EXPECT_GT(run.checked_calls, 0);
  EXPECT_GT(run.checked_hints, 0);
  EXPECT_GT(run.vace_blocks, 0);
}

TEST(VaceParity, NoVaceInputMatchesTheRunWithoutVace) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const VaceRun run = run_vace_stream(false);
  EXPECT_EQ(run.vace_blocks, 0);
}

TEST(VaceLoading, LayerMapComesFromTheMetadataOrTheBlockCount) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const WeightStore module = WeightStore::open(fixture("vace_module.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("vace_stream.safetensors"));
  const WanConfig dit = config_from_metadata(metadata_json(stream, "config"));
  const std::vector<int64_t> recorded = recorded_layers(module);
  const VaceLayout layout = infer_vace_layout(module, dit);
  EXPECT_EQ(layout.layers, recorded);
  EXPECT_EQ(layout.in_channels, std::stoll(module.metadata().at("vace_in_dim")));
  EXPECT_EQ(layout.prefix, "");

  // Without metadata (the real files), N blocks on L layers sit at 0, L/N, 2 L/N, ... as in
  // Wan2.1-VACE; a block count that does not divide the layers is refused, naming both.
  const int64_t blocks = static_cast<int64_t>(recorded.size());
  const WeightStore bare = without_metadata(module);
  if (dit.num_layers % blocks == 0) {
    const VaceLayout derived = infer_vace_layout(bare, dit);
    ASSERT_EQ(derived.blocks(), blocks);
    for (int64_t i = 0; i < blocks; ++i)
      EXPECT_EQ(derived.layers[i], i * (dit.num_layers / blocks));
    EXPECT_EQ(derived.in_channels, layout.in_channels);
  } else {
    const std::string msg = message_of<WeightError>([&] { (void)infer_vace_layout(bare, dit); });
    EXPECT_NE(msg.find("VACE blocks do not fit"), std::string::npos) << msg;
  }

  // The vace_* tensors inside a full VACE model (here under a prefix, as a wrapper would store
  // them) are found the same way.
  WeightStore prefixed;
  for (const auto& name : module.names()) prefixed.add("model." + name, module.get(name));
  prefixed.add_metadata(module.metadata());
  const VaceLayout nested = infer_vace_layout(prefixed, dit);
  EXPECT_EQ(nested.prefix, "model.");
  EXPECT_EQ(nested.layers, recorded);
}

TEST(VaceLoading, WeightsThatDoNotFitAreRejectedByName) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const WeightStore weights = WeightStore::open(fixture("vace_dit_weights.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("vace_stream.safetensors"));
  const GeneratorOptions options = options_from_stream(stream);
  const WeightStore file = WeightStore::open(fixture("vace_module.safetensors"));
  const WeightStore module = module_as_shipped(file, options.model);
  const int64_t blocks = static_cast<int64_t>(recorded_layers(file).size());
  const CausalWanModel dit(weights, options.model, at::kCPU, at::kFloat);

  // A tensor of another shape: the message names it and both shapes.
  WeightStore bad = module;
  const std::string name = fmt::format("vace_blocks.{}.after_proj.weight", blocks - 1);
  const int64_t d = options.model.dim;
  bad.add(name, at::zeros({d, d / 2}), "bad.safetensors");
  std::string msg = message_of<WeightError>([&] { (void)dit.with_vace(bad); });
  EXPECT_NE(msg.find(name), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("[{}, {}]", d, d)), std::string::npos) << msg;

  // A missing tensor is named.
  WeightStore missing;
  for (const auto& n : module.names())
    if (n != "vace_blocks.0.before_proj.bias") missing.add(n, module.get(n));
  missing.add_metadata(module.metadata());
  msg = message_of<WeightError>([&] { (void)dit.with_vace(missing); });
  EXPECT_NE(msg.find("vace_blocks.0.before_proj.bias"), std::string::npos) << msg;

  // No VACE tensors at all (the DiT file given as the VACE file).
  msg = message_of<WeightError>([&] { (void)dit.with_vace(weights); });
  EXPECT_NE(msg.find("vace_patch_embedding.weight"), std::string::npos) << msg;

  // A block count that does not divide the DiT's layers (weights of another model size): one
  // layer more than blocks (any layer count fits a single block).
  if (blocks > 1) {
    WanConfig other = options.model;
    other.num_layers = blocks + 1;
    msg =
        message_of<WeightError>([&] { (void)infer_vace_layout(without_metadata(module), other); });
    EXPECT_NE(msg.find("VACE blocks do not fit"), std::string::npos) << msg;
  }
}

TEST(VaceInputs, BadContextOrMissingWeightsGiveClearErrors) {
  LONGLIVE_REQUIRE_FIXTURE("vace");
  const WeightStore weights = WeightStore::open(fixture("vace_dit_weights.safetensors"));
  const WeightStore module = WeightStore::open(fixture("vace_module.safetensors"));
  const WeightStore stream = WeightStore::open(fixture("vace_stream.safetensors"));
  const GeneratorOptions options = options_from_stream(stream);
  const at::Tensor context = stream.get("vace_context.b0");

  StreamGenerator plain(weights, options);
  EXPECT_FALSE(plain.vace_available());
  const std::string msg = message_of<Error>([&] { plain.set_vace(VaceInput{context, 1.0}); });
  EXPECT_NE(msg.find("no VACE weights"), std::string::npos) << msg;
  plain.set_vace(std::nullopt);  // clearing is always fine

  StreamGenerator generator(weights, options, nullptr, &module);
  EXPECT_THROW(generator.set_vace(VaceInput{context.narrow(0, 0, 32), 1.0}), ConfigError);
  EXPECT_THROW(generator.set_vace(VaceInput{context.narrow(2, 0, 2), 1.0}), ConfigError);
  EXPECT_THROW(generator.set_vace(VaceInput{at::Tensor(), 1.0}), ConfigError);
  generator.set_vace(VaceInput{context, 1.0});
  EXPECT_TRUE(generator.vace().has_value());
}

}  // namespace
}  // namespace longlive::test
