#pragma once
// The causal Wan2.1 DiT of LongLive: patch embedding, sinusoidal time embedding with 6-way adaLN
// modulation per block, self-attention with RMSNorm q/k and 3-axis RoPE over a KV cache,
// cross-attention on the text, GELU(tanh) FFN, modulated head. Config-driven; weights by their
// original names.
#include <ATen/ATen.h>

#include <vector>

#include "cache/cross_attn_cache.h"
#include "cache/kv_cache.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace longlive {

class CausalWanModel {
 public:
  // Checks every tensor's name and shape and moves the weights to `device` in `dtype`
  // (norm gains and modulation tables stay float32).
  CausalWanModel(const WeightStore& weights, const WanConfig& config, at::Device device,
                 at::ScalarType dtype);

  const WanConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

  // Embeds the prompt ([1, L <= text_len, text_dim]) and fills the per-layer text K/V.
  void build_cross_cache(const at::Tensor& prompt_embeds, CrossAttnCache& cache) const;

  // One forward over frames [start_frame, start_frame + F).
  //   latents: [1, F, C, H, W] (pipeline layout), timesteps: [1, F] (any real dtype).
  // Writes K/V as planned and returns the flow prediction [1, F, C, H, W] in float32.
  at::Tensor forward(const at::Tensor& latents, const at::Tensor& timesteps, KvCache& kv,
                     const KvCache::Plan& plan, const CrossAttnCache& cross) const;

  KvCacheShape kv_shape(int64_t latent_height, int64_t latent_width, int64_t sink_frames,
                        int64_t window_frames) const;

 private:
  struct Block {
    at::Tensor modulation;  // [1, 6, dim] float32
    at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, norm_q, norm_k;
    at::Tensor norm3_w, norm3_b;
    at::Tensor cq_w, cq_b, ck_w, ck_b, cv_w, cv_b, co_w, co_b, cnorm_q, cnorm_k;
    at::Tensor ffn0_w, ffn0_b, ffn2_w, ffn2_b;
  };

  at::Tensor rope_cos_sin(int64_t start_frame, int64_t frames, int64_t h, int64_t w,
                          bool sine) const;
  at::Tensor self_attention(const Block& b, int64_t layer, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin, KvCache& kv,
                            const KvCache::Plan& plan) const;

  WanConfig config_;
  at::Device device_;
  at::ScalarType dtype_;
  at::Tensor patch_w_, patch_b_;
  at::Tensor text0_w_, text0_b_, text2_w_, text2_b_;
  at::Tensor time0_w_, time0_b_, time2_w_, time2_b_;
  at::Tensor proj_w_, proj_b_;
  at::Tensor head_modulation_, head_w_, head_b_;
  std::vector<Block> blocks_;
  // RoPE inverse frequencies per axis (float64) and the fixed height/width angle tables.
  at::Tensor inv_freq_frame_;
  at::Tensor angles_h_, angles_w_;  // [max_len, pairs] float64
};

}  // namespace longlive
