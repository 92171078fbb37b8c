// Style LoRA key mapping, loading and baking (see longlive/style_lora.h).
#include "longlive/style_lora.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <regex>
#include <string_view>

#include "longlive/error.h"
#include "longlive/log.h"
#include "model/lora_side_path.h"

namespace longlive {
namespace {

constexpr const char* kCovered =
    "the side path covers the blocks' self_attn/cross_attn q, k, v, o and ffn.0, ffn.2";

// Module names inside a block, in every spelling we accept -> ours.
constexpr std::array<std::pair<std::string_view, std::string_view>, 30> kModules = {{
    {"self_attn.q", "self_attn.q"},
    {"self_attn.k", "self_attn.k"},
    {"self_attn.v", "self_attn.v"},
    {"self_attn.o", "self_attn.o"},
    {"cross_attn.q", "cross_attn.q"},
    {"cross_attn.k", "cross_attn.k"},
    {"cross_attn.v", "cross_attn.v"},
    {"cross_attn.o", "cross_attn.o"},
    {"ffn.0", "ffn.0"},
    {"ffn.2", "ffn.2"},
    // diffusers' WanTransformer3DModel
    {"attn1.to_q", "self_attn.q"},
    {"attn1.to_k", "self_attn.k"},
    {"attn1.to_v", "self_attn.v"},
    {"attn1.to_out.0", "self_attn.o"},
    {"attn2.to_q", "cross_attn.q"},
    {"attn2.to_k", "cross_attn.k"},
    {"attn2.to_v", "cross_attn.v"},
    {"attn2.to_out.0", "cross_attn.o"},
    {"ffn.net.0.proj", "ffn.0"},
    {"ffn.net.2", "ffn.2"},
    // kohya spells the same with underscores (after blocks_N_)
    {"self_attn_q", "self_attn.q"},
    {"self_attn_k", "self_attn.k"},
    {"self_attn_v", "self_attn.v"},
    {"self_attn_o", "self_attn.o"},
    {"cross_attn_q", "cross_attn.q"},
    {"cross_attn_k", "cross_attn.k"},
    {"cross_attn_v", "cross_attn.v"},
    {"cross_attn_o", "cross_attn.o"},
    {"ffn_0", "ffn.0"},
    {"ffn_2", "ffn.2"},
}};
// kohya forms of the diffusers names
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kKohyaDiffusers = {{
    {"attn1_to_q", "self_attn.q"},
    {"attn1_to_k", "self_attn.k"},
    {"attn1_to_v", "self_attn.v"},
    {"attn1_to_out_0", "self_attn.o"},
    {"attn2_to_q", "cross_attn.q"},
    {"attn2_to_k", "cross_attn.k"},
    {"attn2_to_v", "cross_attn.v"},
    {"attn2_to_out_0", "cross_attn.o"},
    {"ffn_net_0_proj", "ffn.0"},
    {"ffn_net_2", "ffn.2"},
}};

std::optional<std::string_view> our_module(std::string_view name) {
  for (const auto& [theirs, ours] : kModules)
    if (name == theirs) return ours;
  for (const auto& [theirs, ours] : kKohyaDiffusers)
    if (name == theirs) return ours;
  return std::nullopt;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

// Splits "<module>.<suffix>" into the module and what the tensor is.
struct Suffix {
  std::string_view module;
  std::string part;  // down, up, alpha, or empty (unknown suffix)
  std::string_view suffix;
};
Suffix split_suffix(std::string_view key) {
  constexpr std::array<std::pair<std::string_view, std::string_view>, 8> kSuffixes = {{
      {".lora_A.weight", "down"},
      {".lora_B.weight", "up"},
      {".lora_A.default.weight", "down"},
      {".lora_B.default.weight", "up"},
      {".lora_down.weight", "down"},
      {".lora_up.weight", "up"},
      {".alpha", "alpha"},
      {".lora_alpha", "alpha"},
  }};
  for (const auto& [suffix, part] : kSuffixes)
    if (key.size() > suffix.size() && key.ends_with(suffix))
      return {key.substr(0, key.size() - suffix.size()), std::string(part), suffix};
  const size_t dot = key.rfind('.');
  return {key, {}, dot == std::string_view::npos ? std::string_view() : key.substr(dot)};
}

std::optional<double> parse_double(const std::string& text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A 2-D matrix from a LoRA tensor; 1x1 conv shapes [r, in, 1, 1] are accepted as [r, in].
std::optional<at::Tensor> as_matrix(const at::Tensor& t) {
  at::Tensor m = t;
  while (m.dim() > 2 && m.size(-1) == 1) m = m.squeeze(-1);
  if (m.dim() != 2) return std::nullopt;
  return m.to(at::kFloat).contiguous();
}

std::pair<int64_t, int64_t> in_out(const std::string& module, const WanConfig& c) {
  if (module == "ffn.0") return {c.dim, c.ffn_dim};
  if (module == "ffn.2") return {c.ffn_dim, c.dim};
  return {c.dim, c.dim};
}

}  // namespace

LoraKey map_lora_key(const std::string& key) {
  LoraKey out;
  std::string_view k = key;
  if (starts_with(k, "lora_te")) {
    out.format = "kohya";
    out.reason = "a text-encoder LoRA (the umT5 encoder runs unadapted)";
    return out;
  }
  const Suffix s = split_suffix(k);
  if (s.part.empty()) {
    out.reason = fmt::format(
        "'{}' is not a LoRA tensor suffix (lora_A/lora_B/lora_down/lora_up/alpha; "
        "DoRA, LoHa, LoKr and full diffs are not supported)",
        s.suffix.empty() ? key : std::string(s.suffix));
    return out;
  }
  out.part = s.part;
  std::string_view module = s.module;
  std::optional<std::string_view> ours;
  std::string block;
  if (starts_with(module, "lora_unet_")) {
    out.format = "kohya";
    module.remove_prefix(10);
    static const std::regex kBlock(R"(^blocks_(\d+)_(.+)$)");
    std::match_results<std::string_view::const_iterator> m;
    if (std::regex_match(module.begin(), module.end(), m, kBlock)) {
      block = m[1].str();
      ours = our_module(std::string_view(&*m[2].first, static_cast<size_t>(m[2].length())));
    }
  } else {
    // The prefixes each tool puts before the Wan2.1 module names.
    constexpr std::array<std::pair<std::string_view, std::string_view>, 5> kPrefixes = {{
        {"base_model.model.", "peft"},
        {"model.diffusion_model.", "comfyui"},
        {"diffusion_model.", "comfyui"},
        {"transformer.", "diffusers"},
        {"model.", "peft"},
    }};
    out.format = "peft";
    for (const auto& [prefix, format] : kPrefixes) {
      if (starts_with(module, prefix)) {
        module.remove_prefix(prefix.size());
        out.format = format;
        break;
      }
    }
    static const std::regex kBlock(R"(^blocks\.(\d+)\.(.+)$)");
    std::match_results<std::string_view::const_iterator> m;
    if (std::regex_match(module.begin(), module.end(), m, kBlock)) {
      block = m[1].str();
      const std::string_view inner(&*m[2].first, static_cast<size_t>(m[2].length()));
      ours = our_module(inner);
      if (ours && inner.starts_with("attn") && out.format == "peft") out.format = "diffusers";
    }
  }
  if (!ours) {
    out.reason = fmt::format("adapts '{}', not a DiT block linear ({})", module, kCovered);
    return out;
  }
  out.target = fmt::format("blocks.{}.{}", block, *ours);
  return out;
}

bool StyleLora::touches_text_kv() const {
  return std::any_of(modules.begin(), modules.end(), [](const StyleLoraModule& m) {
    return m.target.ends_with(".cross_attn.k") || m.target.ends_with(".cross_attn.v");
  });
}

StyleLora map_style_lora(const WeightStore& file, const WanConfig& config, std::string name,
                         double default_alpha) {
  StyleLora lora;
  lora.name = std::move(name);
  lora.source = file.describe_sources();
  struct Parts {
    std::string down_key, up_key, alpha_key;
    std::optional<at::Tensor> down, up;
    std::optional<double> alpha;
  };
  std::map<std::string, Parts> by_target;
  for (const auto& key : file.names()) {
    const LoraKey mapped = map_lora_key(key);
    if (lora.format.empty() && !mapped.format.empty()) lora.format = mapped.format;
    if (mapped.target.empty()) {
      lora.unmapped.push_back(fmt::format("{}: {}", key, mapped.reason));
      continue;
    }
    const int64_t block = std::stoll(mapped.target.substr(7));
    if (block >= config.num_layers)
      throw WeightError(
          fmt::format("{}: '{}' adapts block {}, but the DiT has {} blocks (a LoRA "
                      "for another model?)",
                      file.source_of(key), key, block, config.num_layers));
    Parts& p = by_target[mapped.target];
    const at::Tensor& t = file.get(key);
    if (mapped.part == "alpha") {
      if (t.numel() != 1)
        throw WeightError(fmt::format("{}: '{}' should hold one number (alpha), has shape [{}]",
                                      file.source_of(key), key, fmt::join(t.sizes(), ", ")));
      p.alpha = t.to(at::kDouble).item<double>();
      p.alpha_key = key;
      continue;
    }
    auto matrix = as_matrix(t);
    if (!matrix)
      throw WeightError(fmt::format("{}: '{}' has shape [{}], expected a matrix",
                                    file.source_of(key), key, fmt::join(t.sizes(), ", ")));
    (mapped.part == "down" ? p.down : p.up) = *matrix;
    (mapped.part == "down" ? p.down_key : p.up_key) = key;
  }

  std::optional<double> metadata_alpha;
  for (const char* k : {"alpha", "lora_alpha", "ss_network_alpha"}) {
    const auto it = file.metadata().find(k);
    if (it == file.metadata().end()) continue;
    if ((metadata_alpha = parse_double(it->second))) break;
  }
  for (auto& [target, p] : by_target) {
    if (!p.down || !p.up) {
      // Name every key of the incomplete module: the user looks for them in the file.
      for (const std::string* k : {&p.down_key, &p.up_key, &p.alpha_key})
        if (!k->empty())
          lora.unmapped.push_back(
              fmt::format("{}: '{}' has no {} matrix", *k, target,
                          p.down ? "up (lora_B/lora_up)" : "down (lora_A/lora_down)"));
      continue;
    }
    const std::string module = target.substr(target.find('.', 7) + 1);
    const auto [in, out] = in_out(module, config);
    const int64_t rank = p.down->size(0);
    if (p.down->size(1) != in || p.up->size(0) != out || p.up->size(1) != rank || rank < 1)
      throw WeightError(fmt::format(
          "{}: '{}' [{}] and '{}' [{}] do not fit {} (expected down [rank, {}] and up [{}, "
          "rank]; a LoRA for another model size?)",
          lora.source, p.down_key, fmt::join(p.down->sizes(), ", "), p.up_key,
          fmt::join(p.up->sizes(), ", "), target, in, out));
    StyleLoraModule m;
    m.target = target;
    m.down = *p.down;
    m.up = *p.up;
    m.alpha = p.alpha             ? *p.alpha
              : default_alpha > 0 ? default_alpha
              : metadata_alpha    ? *metadata_alpha
                                  : static_cast<double>(rank);
    if (!std::isfinite(m.alpha))
      throw WeightError(fmt::format("{}: alpha of '{}' is {}", lora.source, target, m.alpha));
    lora.modules.push_back(std::move(m));
  }
  if (lora.modules.empty()) {
    const size_t shown = std::min<size_t>(lora.unmapped.size(), 5);
    throw WeightError(fmt::format(
        "{}: no tensor maps to the DiT ({} keys; {}); e.g. {}", lora.source, file.size(), kCovered,
        fmt::join(lora.unmapped.begin(), lora.unmapped.begin() + static_cast<ptrdiff_t>(shown),
                  "; ")));
  }
  if (!lora.unmapped.empty())
    log::warn("style LoRA '{}' ({}): {} of {} keys left out: {}", lora.name, lora.source,
              lora.unmapped.size(), file.size(), fmt::join(lora.unmapped, "; "));
  return lora;
}

StyleLora load_style_lora(const std::filesystem::path& path, const WanConfig& config,
                          double default_alpha) {
  if (!std::filesystem::is_regular_file(path))
    throw IoError(fmt::format("style LoRA '{}' is not a file", path.string()));
  return map_style_lora(WeightStore::open(path), config, path.stem().string(), default_alpha);
}

std::map<std::string, at::Tensor> style_lora_deltas(const std::vector<ActiveStyleLora>& loras,
                                                    at::Device device) {
  const auto f32 = at::TensorOptions().device(device).dtype(at::kFloat);
  std::map<std::string, at::Tensor> deltas;
  for (const auto& active : loras) {
    if (!active.lora || active.strength == 0) continue;
    for (const auto& m : active.lora->modules) {
      at::Tensor delta = at::matmul(m.up.to(f32), m.down.to(f32)).mul_(active.strength * m.scale());
      auto [it, fresh] = deltas.try_emplace(m.target, delta);
      if (!fresh) it->second.add_(delta);
    }
  }
  return deltas;
}

WeightStore bake_style_loras(const WeightStore& base, const std::vector<ActiveStyleLora>& loras) {
  WeightStore baked = base;
  for (const auto& [target, delta] : style_lora_deltas(loras, at::kCPU)) {
    const std::string name = target + ".weight";
    const at::Tensor& w = base.get(name);
    if (w.sizes() != delta.sizes())
      throw WeightError(fmt::format("{}: '{}' is [{}], the LoRA delta [{}]", base.source_of(name),
                                    name, fmt::join(w.sizes(), ", "),
                                    fmt::join(delta.sizes(), ", ")));
    baked.add(name, (w.to(at::kFloat) + delta).to(w.scalar_type()),
              base.source_of(name) + " + baked style LoRAs");
  }
  return baked;
}

}  // namespace longlive
