#pragma once
// The style LoRAs' low-rank side path on the device: for each adapted linear of the DiT the
// active adapters' down matrices are stacked into one [R, in] matrix and their up matrices into
// one [out, R], so the extra work per linear is two thin GEMMs whatever the number of LoRAs:
//   y += ((x down^T) * scale) up^T,   scale[r] = strength * alpha / rank of the row's adapter.
// A fader move rewrites `scale` in place (one small host-to-device copy); only a change of which
// adapters are active (a strength to or from 0, a LoRA added) rebuilds the stacks.
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "longlive/style_lora.h"
#include "longlive/wan_model.h"

namespace longlive {

// The adapted linears of a block, in the order the side path stores them.
enum class LoraSlot : int {
  self_q,
  self_k,
  self_v,
  self_o,
  cross_q,
  cross_k,
  cross_v,
  cross_o,
  ffn0,
  ffn2,
};
constexpr size_t kLoraSlots = 10;

// Where a style-LoRA module acts: "blocks.N.<module>" -> (N, slot). WeightError naming the LoRA
// and the target when it is not a block linear of a DiT with `layers` blocks.
struct LoraTarget {
  size_t layer = 0;
  LoraSlot slot = LoraSlot::self_q;
};
LoraTarget parse_lora_target(const std::string& target, size_t layers,
                             const std::string& lora_name);

// What a bake adds (bake_style_loras on the host, CausalWanModel::merge_style_loras on the device):
// strength * alpha / rank * up @ down of every LoRA with a nonzero strength, in float32 on
// `device`, summed per adapted matrix (keyed by its target, "blocks.3.self_attn.q"), so each
// weight is rounded to its dtype once.
std::map<std::string, at::Tensor> style_lora_deltas(const std::vector<ActiveStyleLora>& loras,
                                                    at::Device device);

struct LoraDelta {
  at::Tensor down;   // [R, in] in the DiT's dtype on its device
  at::Tensor up;     // [out, R]
  at::Tensor scale;  // [R], a view into LoraSidePath's scale buffer
  // s * (x down^T) up^T in the DiT's dtype; x: [..., in].
  at::Tensor operator()(const at::Tensor& x) const;
};

class LoraSidePath {
 public:
  // The adapters of `loras` with a nonzero strength, for a DiT of `config` on device/dtype.
  LoraSidePath(const std::vector<ActiveStyleLora>& loras, const WanConfig& config,
               at::Device device, at::ScalarType dtype);

  // Whether `loras` activates exactly this side path's adapters (then set_strengths() suffices).
  bool same_adapters(const std::vector<ActiveStyleLora>& loras) const;
  // New strengths for the same adapters (Error otherwise): rewrites the scales in place.
  void set_strengths(const std::vector<ActiveStyleLora>& loras);

  // The delta of one linear, or null when no active adapter touches it.
  const LoraDelta* find(size_t layer, LoraSlot slot) const {
    const auto& d = layers_[layer][static_cast<size_t>(slot)];
    return d ? &*d : nullptr;
  }
  bool empty() const { return adapters_.empty(); }
  bool touches_text_kv() const { return touches_text_kv_; }
  size_t bytes() const { return bytes_; }  // device memory of the stacks
  // Unique over the process (never 0): CUDA graphs captured with this side path bake in its
  // stacks' and scales' addresses, so they are keyed by it, not by the object's address (a new
  // side path may reuse a freed one's).
  uint64_t id() const { return id_; }

  // y + delta(x) when the slot is adapted, else y.
  at::Tensor add(const at::Tensor& y, const at::Tensor& x, size_t layer, LoraSlot slot) const;

 private:
  static std::vector<std::shared_ptr<const StyleLora>> active(
      const std::vector<ActiveStyleLora>& loras);

  struct Segment {
    int64_t offset = 0, rows = 0;
    size_t adapter = 0;  // index into adapters_
    double scale = 0;    // alpha / rank of the module
  };
  std::vector<std::array<std::optional<LoraDelta>, kLoraSlots>> layers_;
  std::vector<std::shared_ptr<const StyleLora>> adapters_;  // kept alive while used
  std::vector<Segment> segments_;
  at::Tensor scales_;  // every delta's scale, end to end
  bool touches_text_kv_ = false;
  size_t bytes_ = 0;
  uint64_t id_ = 0;
};

}  // namespace longlive
