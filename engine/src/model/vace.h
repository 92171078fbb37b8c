#pragma once
// VACE (Wan2.1-VACE): hint blocks beside the causal DiT. A VACE block is a DiT block without KV
// cache, run on the patch-embedded VACE context (encoded control frames + masks, 96 channels);
// each block emits a hint that is added, scaled, to the output of one DiT layer.
//
// The weights are read by their original names, from the VACE-only module
// (`Wan2_1-VACE_module_1_3B_bf16.safetensors`) or from the `vace_*` tensors of a full
// `Wan2.1-VACE-1.3B/diffusion_pytorch_model.safetensors` (optionally under a prefix):
//   vace_patch_embedding.{weight,bias}   Conv3d in_channels -> dim, the DiT's patch
//   vace_blocks.N.*                      a DiT block's tensors (`blocks.N.*` names)
//   vace_blocks.N.after_proj.*           dim -> dim, the hint
//   vace_blocks.0.before_proj.*          dim -> dim, mixes the context with the DiT's input
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "longlive/vace.h"  // make_random_vace_weights
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive {

struct VaceLayout {
  std::string prefix;           // before `vace_patch_embedding.weight` ("" for the module file)
  int64_t in_channels = 0;      // 96 for Wan2.1-VACE
  std::vector<int64_t> layers;  // DiT layer that receives hint N, ascending

  int64_t blocks() const { return static_cast<int64_t>(layers.size()); }
};

// Finds the VACE tensors in `weights` and the DiT layers their hints go to. The files do not
// store the layer map: `vace_layers` in the safetensors metadata when present, otherwise it is
// derived from the block count, as Wan2.1-VACE lays it out: N blocks for L DiT layers sit at
// layers 0, L/N, 2 L/N, ... (15 blocks on 30 layers: 0, 2, ..., 28; 8 on 40: 0, 5, ..., 35).
// Throws WeightError naming the file when there are no VACE tensors, the block numbers have a
// gap, or the count does not divide the layers; ConfigError for a bad metadata map.
VaceLayout infer_vace_layout(const WeightStore& weights, const WanConfig& dit);

// Whether `weights` holds VACE tensors at all (any name containing `vace_patch_embedding.weight`).
bool has_vace_weights(const WeightStore& weights);

}  // namespace longlive
