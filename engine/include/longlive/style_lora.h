#pragma once
// Style LoRAs: community Wan2.1-1.3B LoRAs loaded beside the DiT and played as faders. They are
// not merged into the weights: the DiT adds a low-rank side path y += s * (x A^T) B^T to each
// adapted linear, s = strength * alpha / rank, so a fader move costs nothing but a new scale at
// the next block (LongLive's own LoRA is still merged at load; see merge_lora in wan_model.h).
//
// Accepted key formats (mapped to our module names, `blocks.N.<module>`):
//   PEFT / LongLive      base_model.model.blocks.N.self_attn.q.lora_A.weight, lora_B (+ .alpha)
//   diffusers (Wan)      transformer.blocks.N.attn1.to_q.lora_A.weight ... attn2 = cross_attn,
//                        to_out.0 = o, ffn.net.0.proj = ffn.0, ffn.net.2 = ffn.2
//   ComfyUI              diffusion_model.blocks.N.self_attn.q.lora_A.weight / lora_down / .alpha
//   kohya / musubi       lora_unet_blocks_N_self_attn_q.lora_down.weight, lora_up, .alpha
// Adapted modules: self_attn.{q,k,v,o}, cross_attn.{q,k,v,o}, ffn.0, ffn.2 of every block.
// Every other key (embeddings, head, text encoder, DoRA scales, full diffs) is reported by name
// in StyleLora::unmapped and left out.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive {

// Fader range of a style LoRA (the studio's slider, OSC and MIDI clamp to nothing: out of range
// is an error).
constexpr double kMaxLoraStrength = 1.5;

// One adapted linear: W' = W + strength * alpha / rank * up @ down.
struct StyleLoraModule {
  std::string target;  // our module name, e.g. "blocks.3.self_attn.q"
  at::Tensor down;     // [rank, in] (lora_A / lora_down), float32 on the CPU
  at::Tensor up;       // [out, rank] (lora_B / lora_up), float32 on the CPU
  double alpha = 0;    // the file's alpha (or rank when it has none)
  int64_t rank() const { return down.size(0); }
  double scale() const { return alpha / static_cast<double>(rank()); }
};

struct StyleLora {
  std::string name;                      // what faders, OSC addresses and timeline events call it
  std::string source;                    // file it came from
  std::string format;                    // peft, diffusers, comfyui or kohya (the first key's)
  std::vector<StyleLoraModule> modules;  // sorted by target
  // Keys that were left out, each "key: reason".
  std::vector<std::string> unmapped;
  // Whether it adapts cross_attn.k/v: those act on the text, so the text K/V are rebuilt when its
  // strength changes.
  bool touches_text_kv() const;
};

// Maps a LoRA's tensors to our modules. alpha: the file's per-module `.alpha` when present, else
// `default_alpha` when > 0, else a metadata "alpha"/"lora_alpha"/"ss_network_alpha", else the
// rank. Throws WeightError naming the key when a tensor does not fit the DiT of `config` (shape,
// block index), and when nothing maps at all (naming the first keys). Unmapped keys are logged.
StyleLora map_style_lora(const WeightStore& file, const WanConfig& config, std::string name,
                         double default_alpha = 0);
// Reads a .safetensors (or .pt) LoRA and maps it; the name is the file's stem.
StyleLora load_style_lora(const std::filesystem::path& path, const WanConfig& config,
                          double default_alpha = 0);

// Our module name for one LoRA tensor key, with what the tensor is ("down", "up", "alpha"), or an
// empty target when the key is not a block-linear LoRA tensor (reason says why).
struct LoraKey {
  std::string target;  // "blocks.N.<module>" or empty
  std::string part;    // down, up, alpha
  std::string format;  // peft, diffusers, comfyui, kohya
  std::string reason;  // why it does not map (empty when it does)
};
LoraKey map_lora_key(const std::string& key);

// A style LoRA at a fader strength (0 = off).
struct ActiveStyleLora {
  std::shared_ptr<const StyleLora> lora;
  double strength = 0;
};

// "Bake": `base` with every LoRA merged at its strength, W += strength * alpha / rank * up @ down
// (in float32, stored back in each weight's dtype). Untouched tensors are shared, not copied.
WeightStore bake_style_loras(const WeightStore& base, const std::vector<ActiveStyleLora>& loras);

}  // namespace longlive
