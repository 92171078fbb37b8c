#include "model/vace.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "longlive/error.h"

namespace longlive {
namespace {

constexpr std::string_view kPatchName = "vace_patch_embedding.weight";

std::string find_prefix(const WeightStore& weights) {
  for (const auto& name : weights.names()) {
    if (name.size() >= kPatchName.size() &&
        name.compare(name.size() - kPatchName.size(), kPatchName.size(), kPatchName) == 0)
      return name.substr(0, name.size() - kPatchName.size());
  }
  throw WeightError(
      fmt::format("{}: no VACE tensors (expected '{}', as in "
                  "Wan2_1-VACE_module_1_3B_bf16.safetensors)",
                  weights.describe_sources(), kPatchName));
}

std::vector<int64_t> layers_from_metadata(const std::string& text, int64_t blocks,
                                          const WanConfig& dit, const std::string& source) {
  std::vector<int64_t> layers;
  try {
    layers = nlohmann::json::parse(text).get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(
        fmt::format("{}: metadata 'vace_layers' is not a list of integers: {}", source, e.what()));
  }
  if (static_cast<int64_t>(layers.size()) != blocks)
    throw ConfigError(fmt::format("{}: metadata 'vace_layers' lists {} layers for {} VACE blocks",
                                  source, layers.size(), blocks));
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= dit.num_layers || (i > 0 && layers[i] <= layers[i - 1]))
      throw ConfigError(fmt::format(
          "{}: metadata 'vace_layers' [{}] must be ascending layers of the {}-layer DiT", source,
          fmt::join(layers, ", "), dit.num_layers));
  }
  return layers;
}

}  // namespace

bool has_vace_weights(const WeightStore& weights) {
  for (const auto& name : weights.names())
    if (name.find(kPatchName) != std::string::npos) return true;
  return false;
}

WeightStore make_random_vace_weights(const WanConfig& dit, int64_t in_channels, uint64_t seed,
                                     int64_t stride) {
  if (stride < 1 || in_channels < 1)
    throw ConfigError("random VACE weights: stride and channels must be positive");
  WanConfig blocks = dit;
  blocks.num_layers = (dit.num_layers + stride - 1) / stride;
  // The block tensors are a DiT's; the rest of that DiT is dropped.
  const WeightStore base = make_random_wan_weights(blocks, seed);
  WeightStore store;
  const std::string origin = fmt::format("<random VACE weights, seed {}>", seed);
  for (const auto& name : base.names())
    if (name.rfind("blocks.", 0) == 0) store.add("vace_" + name, base.get(name), origin);
  auto gen = at::detail::createCPUGenerator(seed + 1);
  const int64_t d = dit.dim;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    store.add(name + ".weight", at::randn({out, in}, gen) / std::sqrt(static_cast<double>(in)),
              origin);
    store.add(name + ".bias", 0.05 * at::randn({out}, gen), origin);
  };
  const auto& p = dit.patch;
  const int64_t fan_in = in_channels * p[0] * p[1] * p[2];
  store.add(
      "vace_patch_embedding.weight",
      at::randn({d, in_channels, p[0], p[1], p[2]}, gen) / std::sqrt(static_cast<double>(fan_in)),
      origin);
  store.add("vace_patch_embedding.bias", 0.05 * at::randn({d}, gen), origin);
  linear("vace_blocks.0.before_proj", d, d);
  std::vector<int64_t> layers;
  for (int64_t i = 0; i < blocks.num_layers; ++i) {
    linear(fmt::format("vace_blocks.{}.after_proj", i), d, d);
    layers.push_back(i * stride);
  }
  store.add_metadata({{"vace_layers", fmt::format("[{}]", fmt::join(layers, ", "))}});
  return store;
}

VaceLayout infer_vace_layout(const WeightStore& weights, const WanConfig& dit) {
  VaceLayout layout;
  layout.prefix = find_prefix(weights);
  const std::string patch_name = layout.prefix + std::string(kPatchName);
  const std::string source = weights.source_of(patch_name);
  const at::Tensor& patch = weights.get(patch_name);
  if (patch.dim() != 5)
    throw WeightError(fmt::format("{}: '{}' has shape [{}], expected [dim, channels, {}, {}, {}]",
                                  source, patch_name, fmt::join(patch.sizes(), ", "), dit.patch[0],
                                  dit.patch[1], dit.patch[2]));
  layout.in_channels = patch.size(1);

  int64_t blocks = 0;
  while (weights.contains(fmt::format("{}vace_blocks.{}.modulation", layout.prefix, blocks)))
    ++blocks;
  // A gap (block 3 missing while 4 exists) would silently drop hints: name it.
  for (const auto& name : weights.names()) {
    const std::string head = layout.prefix + "vace_blocks.";
    if (name.rfind(head, 0) != 0) continue;
    const int64_t index = std::stoll(name.substr(head.size()));
    if (index >= blocks)
      throw WeightError(fmt::format("{}: '{}' exists but 'vace_blocks.{}.modulation' is missing",
                                    source, name, blocks));
  }
  if (blocks == 0)
    throw WeightError(
        fmt::format("{}: '{}' is there but no 'vace_blocks.0.*' tensors", source, patch_name));

  if (const auto it = weights.metadata().find("vace_layers"); it != weights.metadata().end()) {
    layout.layers = layers_from_metadata(it->second, blocks, dit, source);
  } else {
    if (blocks > dit.num_layers || dit.num_layers % blocks != 0)
      throw WeightError(fmt::format(
          "{}: {} VACE blocks do not fit the {}-layer DiT (Wan2.1-VACE puts N blocks at every "
          "L/N-th layer; this checkpoint belongs to another model size)",
          source, blocks, dit.num_layers));
    const int64_t stride = dit.num_layers / blocks;
    for (int64_t i = 0; i < blocks; ++i) layout.layers.push_back(i * stride);
  }
  return layout;
}

}  // namespace longlive
