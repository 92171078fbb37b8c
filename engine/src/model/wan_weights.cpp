#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <map>
#include <regex>

#include "longlive/error.h"
#include "longlive/wan_model.h"

namespace longlive {

WanConfig WanConfig::wan_1_3b() { return WanConfig{}; }

WanConfig WanConfig::tiny() {
  WanConfig c;
  c.dim = 64;
  c.ffn_dim = 128;
  c.num_heads = 2;
  c.num_layers = 2;
  c.text_dim = 64;
  c.text_len = 32;
  return c;
}

void WanConfig::validate() const {
  auto fail = [](const std::string& what) { throw ConfigError("DiT config: " + what); };
  if (dim <= 0 || num_heads <= 0 || dim % num_heads != 0)
    fail(fmt::format("dim {} must be a positive multiple of num_heads {}", dim, num_heads));
  if (head_dim() % 2 != 0 || head_dim() < 6)
    fail(fmt::format("head dim {} must be even and at least 6 (3-axis RoPE)", head_dim()));
  if (num_layers <= 0 || ffn_dim <= 0 || text_dim <= 0 || text_len <= 0 || freq_dim <= 0 ||
      freq_dim % 2 != 0)
    fail("layers, ffn_dim, text_dim, text_len and (even) freq_dim must be positive");
  for (auto p : patch)
    if (p <= 0) fail("patch sizes must be positive");
}

WanConfig WanConfig::infer(const WeightStore& weights, int64_t num_heads, int64_t text_len) {
  WanConfig c;
  const at::Tensor& patch = weights.get("patch_embedding.weight");
  if (patch.dim() != 5) {
    throw WeightError(fmt::format("{}: patch_embedding.weight has {} dims, expected 5 (Conv3d)",
                                  weights.source_of("patch_embedding.weight"), patch.dim()));
  }
  c.dim = patch.size(0);
  c.in_channels = patch.size(1);
  c.patch = {patch.size(2), patch.size(3), patch.size(4)};
  c.text_dim = weights.get("text_embedding.0.weight").size(1);
  c.freq_dim = weights.get("time_embedding.0.weight").size(1);
  c.ffn_dim = weights.get("blocks.0.ffn.0.weight").size(0);
  c.out_channels = weights.get("head.head.weight").size(0) / (c.patch[0] * c.patch[1] * c.patch[2]);
  int64_t layers = 0;
  while (weights.contains(fmt::format("blocks.{}.modulation", layers))) ++layers;
  c.num_layers = layers;
  c.num_heads = num_heads;
  c.text_len = text_len;
  c.cross_attn_norm = weights.contains("blocks.0.norm3.weight");
  c.qk_norm = weights.contains("blocks.0.self_attn.norm_q.weight");
  c.validate();
  return c;
}

WeightStore make_random_wan_weights(const WanConfig& config, uint64_t seed, at::ScalarType dtype) {
  config.validate();
  auto gen = at::detail::createCPUGenerator(seed);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  WeightStore store;
  const std::string origin = fmt::format("<random weights, seed {}>", seed);
  auto add = [&](const std::string& name, at::Tensor t) { store.add(name, t.to(dtype), origin); };
  auto weight = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    add(name, at::randn(shape, gen, opts) / std::sqrt(static_cast<double>(fan_in)));
  };
  auto bias = [&](const std::string& name, int64_t n) {
    add(name, 0.05 * at::randn({n}, gen, opts));
  };
  auto gain = [&](const std::string& name, int64_t n) {
    add(name, 1 + 0.1 * at::randn({n}, gen, opts));
  };
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    weight(name + ".weight", {out, in});
    bias(name + ".bias", out);
  };
  const int64_t d = config.dim;
  const auto& p = config.patch;
  weight("patch_embedding.weight", {d, config.in_channels, p[0], p[1], p[2]});
  bias("patch_embedding.bias", d);
  linear("text_embedding.0", d, config.text_dim);
  linear("text_embedding.2", d, d);
  linear("time_embedding.0", d, config.freq_dim);
  linear("time_embedding.2", d, d);
  linear("time_projection.1", 6 * d, d);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string n = fmt::format("blocks.{}.", i);
    add(n + "modulation", at::randn({1, 6, d}, gen, opts) / std::sqrt(static_cast<double>(d)));
    for (const char* attn : {"self_attn", "cross_attn"}) {
      for (const char* proj : {"q", "k", "v", "o"}) linear(n + attn + "." + proj, d, d);
      gain(n + attn + ".norm_q.weight", d);
      gain(n + attn + ".norm_k.weight", d);
    }
    if (config.cross_attn_norm) {
      gain(n + "norm3.weight", d);
      bias(n + "norm3.bias", d);
    }
    linear(n + "ffn.0", config.ffn_dim, d);
    linear(n + "ffn.2", d, config.ffn_dim);
  }
  add("head.modulation", at::randn({1, 2, d}, gen, opts) / std::sqrt(static_cast<double>(d)));
  linear("head.head", config.out_channels * p[0] * p[1] * p[2], d);
  return store;
}

WeightStore merge_lora(const WeightStore& base, const WeightStore& lora, double alpha) {
  static const std::regex kName(R"(^(?:base_model\.model\.)?(.*)\.lora_([AB])\.weight$)");
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> pairs;  // module -> (A, B)
  for (const auto& name : lora.names()) {
    std::smatch m;
    if (!std::regex_match(name, m, kName)) {
      throw WeightError(
          fmt::format("{}: '{}' is not a LoRA tensor (expected "
                      "base_model.model.<module>.lora_A.weight / lora_B.weight)",
                      lora.source_of(name), name));
    }
    auto& entry = pairs[m[1].str()];
    (m[2] == "A" ? entry.first : entry.second) = lora.get(name);
  }
  WeightStore merged = base;
  int64_t rank_seen = -1;
  for (const auto& [module, ab] : pairs) {
    const auto& [a, b] = ab;
    const std::string target = module + ".weight";
    if (!a.defined() || !b.defined()) {
      throw WeightError(fmt::format("{}: LoRA for '{}' lacks its lora_{} matrix",
                                    lora.describe_sources(), module, a.defined() ? "B" : "A"));
    }
    const at::Tensor& w = base.get(target);
    const int64_t rank = a.size(0);
    if (a.dim() != 2 || b.dim() != 2 || b.size(1) != rank || w.dim() != 2 ||
        a.size(1) != w.size(1) || b.size(0) != w.size(0)) {
      throw WeightError(fmt::format(
          "{}: LoRA for '{}' has A [{}] and B [{}], which do not fit the base weight [{}] "
          "(expected A [rank, {}] and B [{}, rank])",
          lora.describe_sources(), module, fmt::join(a.sizes(), ", "), fmt::join(b.sizes(), ", "),
          fmt::join(w.sizes(), ", "), w.size(1), w.size(0)));
    }
    if (rank_seen >= 0 && rank != rank_seen) {
      throw WeightError(fmt::format("{}: LoRA rank mismatch: '{}' has rank {}, others rank {}",
                                    lora.describe_sources(), module, rank, rank_seen));
    }
    rank_seen = rank;
    const double scale =
        (alpha > 0 ? alpha : static_cast<double>(rank)) / static_cast<double>(rank);
    const at::Tensor delta = at::matmul(b.to(at::kFloat), a.to(at::kFloat)) * scale;
    merged.add(target, (w.to(at::kFloat) + delta).to(w.scalar_type()),
               base.source_of(target) + " + LoRA");
  }
  return merged;
}

}  // namespace longlive

namespace longlive {

AttentionBackend parse_attention_backend(const std::string& name) {
  if (name == "auto" || name == "automatic") return AttentionBackend::automatic;
  if (name == "cudnn") return AttentionBackend::cudnn;
  if (name == "flash") return AttentionBackend::flash;
  if (name == "efficient") return AttentionBackend::efficient;
  if (name == "math") return AttentionBackend::math;
  throw ConfigError(fmt::format(
      "attention backend '{}' is unknown; expected auto, cudnn, flash, efficient or math", name));
}

std::string to_string(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::automatic:
      return "auto";
    case AttentionBackend::cudnn:
      return "cudnn";
    case AttentionBackend::flash:
      return "flash";
    case AttentionBackend::efficient:
      return "efficient";
    case AttentionBackend::math:
      return "math";
  }
  return "auto";
}

}  // namespace longlive
