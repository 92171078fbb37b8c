#include "model/lora_side_path.h"

#include <fmt/format.h>

#include <atomic>
#include <map>
#include <string_view>

#include "longlive/error.h"

namespace longlive {
namespace {

std::optional<LoraSlot> slot_of(std::string_view module) {
  constexpr std::pair<std::string_view, LoraSlot> kSlots[] = {
      {"self_attn.q", LoraSlot::self_q},   {"self_attn.k", LoraSlot::self_k},
      {"self_attn.v", LoraSlot::self_v},   {"self_attn.o", LoraSlot::self_o},
      {"cross_attn.q", LoraSlot::cross_q}, {"cross_attn.k", LoraSlot::cross_k},
      {"cross_attn.v", LoraSlot::cross_v}, {"cross_attn.o", LoraSlot::cross_o},
      {"ffn.0", LoraSlot::ffn0},           {"ffn.2", LoraSlot::ffn2},
  };
  for (const auto& [name, slot] : kSlots)
    if (module == name) return slot;
  return std::nullopt;
}

}  // namespace

LoraTarget parse_lora_target(const std::string& target, size_t layers,
                             const std::string& lora_name) {
  // target = "blocks.N.<module>", validated by map_style_lora against a config.
  constexpr std::string_view kPrefix = "blocks.";
  const size_t dot = target.find('.', kPrefix.size());
  std::optional<LoraSlot> slot;
  size_t layer = layers;
  if (target.starts_with(kPrefix) && dot != std::string::npos) {
    slot = slot_of(std::string_view(target).substr(dot + 1));
    const std::string index = target.substr(kPrefix.size(), dot - kPrefix.size());
    if (!index.empty() && index.find_first_not_of("0123456789") == std::string::npos)
      layer = std::stoul(index);
  }
  if (!slot || layer >= layers)
    throw WeightError(fmt::format("style LoRA '{}': '{}' is not a linear of this {}-block DiT",
                                  lora_name, target, layers));
  return {layer, *slot};
}

at::Tensor LoraDelta::operator()(const at::Tensor& x) const {
  return at::linear(at::linear(x.to(down.scalar_type()), down) * scale, up);
}

std::vector<std::shared_ptr<const StyleLora>> LoraSidePath::active(
    const std::vector<ActiveStyleLora>& loras) {
  std::vector<std::shared_ptr<const StyleLora>> out;
  for (const auto& l : loras)
    if (l.lora && l.strength != 0) out.push_back(l.lora);
  return out;
}

LoraSidePath::LoraSidePath(const std::vector<ActiveStyleLora>& loras, const WanConfig& config,
                           at::Device device, at::ScalarType dtype)
    : layers_(static_cast<size_t>(config.num_layers)), adapters_(active(loras)) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id.fetch_add(1);
  // Per linear: the (adapter, module) pairs to stack, in adapter order.
  std::map<std::pair<size_t, LoraSlot>, std::vector<std::pair<size_t, const StyleLoraModule*>>>
      parts;
  for (size_t a = 0; a < adapters_.size(); ++a) {
    for (const auto& m : adapters_[a]->modules) {
      const auto [layer, slot] = parse_lora_target(m.target, layers_.size(), adapters_[a]->name);
      parts[{layer, slot}].emplace_back(a, &m);
      touches_text_kv_ = touches_text_kv_ || slot == LoraSlot::cross_k || slot == LoraSlot::cross_v;
    }
  }
  int64_t total = 0;
  for (const auto& [where, list] : parts)
    for (const auto& [a, m] : list) {
      segments_.push_back({total, m->rank(), a, m->scale()});
      total += m->rank();
    }
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  scales_ = at::zeros({total}, options);
  int64_t offset = 0;
  for (const auto& [where, list] : parts) {
    std::vector<at::Tensor> downs, ups;
    for (const auto& [a, m] : list) {
      downs.push_back(m->down);
      ups.push_back(m->up);
    }
    LoraDelta d;
    d.down = at::cat(downs, 0).to(options).contiguous();
    d.up = at::cat(ups, 1).to(options).contiguous();
    d.scale = scales_.narrow(0, offset, d.down.size(0));
    offset += d.down.size(0);
    bytes_ += (d.down.numel() + d.up.numel()) * d.down.element_size();
    layers_[where.first][static_cast<size_t>(where.second)] = std::move(d);
  }
  set_strengths(loras);
}

bool LoraSidePath::same_adapters(const std::vector<ActiveStyleLora>& loras) const {
  return active(loras) == adapters_;
}

void LoraSidePath::set_strengths(const std::vector<ActiveStyleLora>& loras) {
  if (!same_adapters(loras))
    throw Error("LoraSidePath::set_strengths: another set of active LoRAs (rebuild instead)");
  std::vector<double> strength;
  for (const auto& l : loras)
    if (l.lora && l.strength != 0) strength.push_back(l.strength);
  if (segments_.empty()) return;
  // Built in float64 on the host and rounded once to the DiT's dtype.
  at::Tensor host = at::empty({scales_.size(0)}, at::kDouble);
  double* values = host.data_ptr<double>();
  for (const auto& s : segments_)
    for (int64_t r = 0; r < s.rows; ++r) values[s.offset + r] = strength[s.adapter] * s.scale;
  scales_.copy_(host.to(scales_.scalar_type()));
}

at::Tensor LoraSidePath::add(const at::Tensor& y, const at::Tensor& x, size_t layer,
                             LoraSlot slot) const {
  const LoraDelta* d = find(layer, slot);
  return d ? y + (*d)(x).to(y.scalar_type()) : y;
}

}  // namespace longlive
