#pragma once
// Configuration of the causal Wan2.1 DiT and helpers to build its weights.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

#include "longlive/weights.h"

namespace longlive {

struct WanConfig {
  int64_t dim = 1536;
  int64_t ffn_dim = 8960;
  int64_t num_heads = 12;
  int64_t num_layers = 30;
  int64_t freq_dim = 256;
  int64_t text_dim = 4096;
  int64_t text_len = 512;
  int64_t in_channels = 16;
  int64_t out_channels = 16;
  std::array<int64_t, 3> patch = {1, 2, 2};  // (frames, height, width)
  double eps = 1e-6;
  bool qk_norm = true;
  bool cross_attn_norm = true;

  int64_t head_dim() const { return dim / num_heads; }

  static WanConfig wan_1_3b();
  // The configuration of the golden fixtures (dim 64, 2 heads, 2 layers, text 64 x 32).
  static WanConfig tiny();
  // Reads every size from the tensor shapes of a checkpoint; heads and text_len cannot be read
  // from shapes and are given. Throws WeightError naming the missing tensor.
  static WanConfig infer(const WeightStore& weights, int64_t num_heads, int64_t text_len);
  // Checks internal consistency (dim divisible by heads, even head dim, ...); throws ConfigError.
  void validate() const;
};

// Which scaled-dot-product attention kernel the DiT asks for on CUDA. automatic: FlashAttention-3
// for bf16 with head_dim 128 on sm_90 in builds configured with LONGLIVE_FA3_DIR
// (runtime/fa3_attention.h), else cuDNN for 16-bit inputs with head_dim <= 128 (1.8x
// flash-attention-2 at the steady 480x832 shape on H100), else ATen's own choice. Any explicit
// backend that cannot run a shape falls back to ATen's choice.
enum class AttentionBackend { automatic, cudnn, flash, efficient, math };

// How the DiT runs on the device (never changes results beyond rounding; GPU tests bound it).
struct DitRuntime {
  bool fused_kernels = false;  // fused LayerNorm+modulation, RMSNorm+RoPE, QKV GEMM, GELU epilogue
  bool fp8_linears = false;    // FP8 e4m3 GEMMs with row-wise scales (weights quantised at load)
  AttentionBackend attention = AttentionBackend::automatic;
  // cuDNN FP8 attention for self-attention (needs fused_kernels, a build with cudnn-frontend and
  // an FP8 KV cache, which StreamGenerator then allocates); bf16 attention otherwise.
  bool fp8_attention = false;
  // Replay each forward from a CUDA graph captured per KV plan (pipeline/dit_graphs.h).
  bool cuda_graphs = false;
};
AttentionBackend parse_attention_backend(const std::string& name);  // ConfigError if unknown
std::string to_string(AttentionBackend backend);

// Deterministic random weights under the original Wan2.1 tensor names (tests, the studio's test
// mode, benchmarks with `--random`). Scales follow the fixtures: weights N(0,1)/sqrt(fan_in).
WeightStore make_random_wan_weights(const WanConfig& config, uint64_t seed,
                                    at::ScalarType dtype = at::kFloat);

// Loads LongLive's LoRA (PEFT names `base_model.model.blocks.N.<module>.lora_{A,B}.weight`) and
// merges it into `base`: W += alpha / rank * B @ A. alpha <= 0 means alpha = rank. Returns the
// merged store (base tensors not touched by the LoRA are shared, not copied).
WeightStore merge_lora(const WeightStore& base, const WeightStore& lora, double alpha);

}  // namespace longlive
