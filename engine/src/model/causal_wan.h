#pragma once
#include <functional>
#include <memory>
#include <optional>
// The causal Wan2.1 DiT of LongLive: patch embedding, sinusoidal time embedding with 6-way adaLN
// modulation per block, self-attention with RMSNorm q/k and 3-axis RoPE over a KV cache,
// cross-attention on the text, GELU(tanh) FFN, modulated head. Config-driven; weights by their
// original names.
#include <ATen/ATen.h>

#include <utility>
#include <vector>

#include "cache/cross_attn_cache.h"
#include "cache/kv_cache.h"
#include "longlive/style_lora.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"
#include "model/lora_side_path.h"
#include "model/ops.h"
#include "model/vace.h"
#include "runtime/fused_ops.h"
#include "runtime/side_stream.h"

namespace longlive {

class RankGroup;

class CausalWanModel {
 public:
  // Checks every tensor's name and shape and moves the weights to `device` in `dtype`
  // (norm gains and modulation tables stay float32).
  // `runtime` picks the fast paths (fused kernels, FP8 linears, attention backend); paths that
  // cannot run on this device/dtype fall back to plain ATen (see uses_fused_kernels()).
  CausalWanModel(const WeightStore& weights, const WanConfig& config, at::Device device,
                 at::ScalarType dtype, const DitRuntime& runtime = {});

  // The same device weights under other layer-loop choices (fused kernels, attention backend, FP8
  // attention, FP8 linears), without copying them: a preset change that only flips those keeps
  // the DiT. Turning FP8 linears on quantises the shared matrices on the device (as a load would);
  // turning them off drops the FP8 copies.
  std::shared_ptr<const CausalWanModel> sharing_weights(const DitRuntime& runtime) const;

  // The same DiT with VACE hint blocks (see model/vace.h), sharing the DiT's weights. Every
  // tensor is checked by name and shape against this DiT (WeightError naming the file, the
  // tensor, the expected and actual shape). The VACE blocks run on the DiT's layer loop (fused
  // kernels, FP8 copies of their matrices when the DiT has FP8 linears).
  std::shared_ptr<const CausalWanModel> with_vace(const WeightStore& vace) const;
  bool has_vace() const { return !vace_blocks_.empty(); }

  // The same DiT as one rank of a sequence-parallel group (docs/multi-gpu.md), sharing the
  // weights: each forward computes this rank's token rows (RowShard) of every layer, all-gathers
  // the block's K/V before attention (every rank keeps the whole KV cache) and the output rows at
  // the end, so every rank returns the full flow. Every rank must make the same calls in the same
  // order, each from its own thread. The plain layer loop runs (the fused loop writes K/V
  // straight into the cache, before the gather); VACE hints are computed whole on every rank.
  std::shared_ptr<const CausalWanModel> sharded(std::shared_ptr<RankGroup> ranks) const;
  const RankGroup* ranks() const { return ranks_.get(); }
  // The group itself, to shard another DiT over the same ranks (a preset change).
  const std::shared_ptr<RankGroup>& rank_group() const { return ranks_; }
  const VaceLayout& vace_layout() const { return vace_layout_; }

  // "Bake" (docs/performing.md): adds strength * alpha / rank * up @ down of every style LoRA with
  // a nonzero strength to the DiT layers' matrices, summed per matrix in float32 on the device
  // and stored back in place in the matrix's dtype; the FP8 copies of the changed matrices are
  // re-quantised in place from the merged 16-bit values (what a load of merged weights would
  // give). The tensors keep their storage, so captured CUDA graphs stay valid. Though const (no
  // tensor is replaced), it changes the values every model sharing these weights sees
  // (sharing_weights, with_vace): SessionFactory::bake_style_loras keeps such models out of its
  // cache. VACE blocks are not adapted (nor are they by the side path). Returns the number of
  // matrices changed.
  int64_t merge_style_loras(const std::vector<ActiveStyleLora>& loras) const;

  // Identifies the device tensors of the DiT's layers: equal for models sharing them.
  const void* weights_id() const {
    return blocks_.empty() ? nullptr : blocks_.front().qkv_w.const_data_ptr();
  }

  const WanConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const DitRuntime& runtime() const { return runtime_; }
  // Whether forward() runs the fused CUDA kernels (requested, CUDA build and device, 16-bit).
  bool uses_fused_kernels() const { return fused_; }
  bool uses_fp8_linears() const { return fp8_; }
  // Whether self-attention runs cuDNN's FP8 kernel when the KV cache stores float8_e4m3fn
  // (requested, fused loop, a build with cudnn-frontend, Hopper or newer).
  bool uses_fp8_attention() const { return fp8_attention_; }

  // Embeds the prompt ([1, L <= text_len, text_dim]) and fills the per-layer text K/V (the DiT's
  // layers, then the VACE blocks' when attached; the style LoRAs' side path on the DiT layers'
  // cross_attn.k/v when given).
  void build_cross_cache(const at::Tensor& prompt_embeds, CrossAttnCache& cache,
                         const LoraSidePath* lora = nullptr) const;

  // One forward over frames [start_frame, start_frame + F).
  //   latents: [1, F, C, H, W] (pipeline layout), timesteps: [1, F] (any real dtype).
  // Writes K/V as planned and returns the flow prediction [1, F, C, H, W] in float32.
  // Same as run(prepare(...)) without VACE. `lora`: the style LoRAs' side path (null: none).
  // `kv_only`: ForwardArgs::kv_only (the K/V are written, nothing is returned).
  at::Tensor forward(const at::Tensor& latents, const at::Tensor& timesteps, KvCache& kv,
                     const KvCache::Plan& plan, const CrossAttnCache& cross,
                     const LoraSidePath* lora = nullptr, bool kv_only = false) const;

  // The device inputs of a forward that depend on host values (which frames run, their
  // positions): everything run() reads besides the weights and the caches.
  struct ForwardArgs {
    at::Tensor latents;    // [1, F', C, H, W] float32: the frames the plan writes (F' <= F)
    at::Tensor timesteps;  // [F'] float32
    at::Tensor cos, sin;   // RoPE tables of the frames' absolute positions [F' h w, 1, pairs]
    // Style LoRAs added to the block linears (model/lora_side_path.h); null: none. A CUDA graph
    // reads its stacks and scales in place (the graph key has LoraSidePath::id()).
    const LoraSidePath* lora = nullptr;
    // VACE (denoising steps only; requires has_vace()), all device tensors, so a CUDA graph
    // replays them with new values:
    //   vace_context defined: the hints are computed from it (and also written into vace_hints
    //     when that is defined: the buffer a later step reuses, or a trace reads); with
    //     vace_embedded defined, the context's embedding is written there too;
    //   vace_context undefined, vace_embedded defined: the hints are computed from that
    //     embedding (an earlier step's of the same context: the later steps of a block);
    //   vace_context and vace_embedded undefined, vace_hints defined: those hints are added as
    //     they are (reuse).
    at::Tensor vace_context;   // [C, F', H, W] float32, F' <= F (see vace_start())
    at::Tensor vace_embedded;  // [1, S, dim] float32: before_proj of the embedded context
    at::Tensor vace_hints;     // [blocks, S, dim] in hint_dtype(); a buffer the caller keeps
    at::Tensor vace_scale;     // [1] float32: hint_N is added as scale * hint_N
    // Only the K/V this forward writes are wanted (the context pass, a re-cache): the last layer
    // stops right after writing its K/V, the head is skipped and run() returns an undefined
    // tensor. The cache ends exactly as after a full forward.
    bool kv_only = false;
    bool has_vace() const {
      return vace_context.defined() || vace_embedded.defined() || vace_hints.defined();
    }
    // Whether this call runs the VACE blocks (rather than adding reused hints).
    bool computes_vace_hints() const { return vace_context.defined() || vace_embedded.defined(); }
  };
  // Validates the input and builds the arguments on the device.
  ForwardArgs prepare(const at::Tensor& latents, const at::Tensor& timesteps,
                      const KvCache::Plan& plan) const;
  // The forward proper. Every host value it depends on is in the plan (cache slots written and
  // attended) and in the shapes, so one CUDA graph per plan replays it with new `args` (see
  // pipeline/dit_graphs.h). Returns the flow [1, F', C, H, W] float32.
  // With VACE args, the hints are computed first (once per call; or taken from args.vace_hints)
  // and layer vace_layout().layers[N] adds scale * hint_N to its output.
  at::Tensor run(const ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
                 const CrossAttnCache& cross) const;
  // The dtype VACE hints are produced in (the after_proj output: the compute dtype).
  at::ScalarType hint_dtype() const { return dtype_; }

  // The residual stream of the layer loop: x (float32; the fused loop updates it in place, the
  // plain loop replaces it) and, in the fused loop, the last FFN output with its gate and a VACE
  // hint with its scale, not yet added (the next norm kernel adds them).
  struct FusedResidual {
    // What is not yet added, taken out by the norm kernel that adds it.
    struct Pending {
      at::Tensor ffn, gate, hint, hint_scale;
      void add_to(fused::NormInputs& in) const;  // points `in` at these tensors
    };
    at::Tensor x;
    Pending pending;
    Pending take() { return std::exchange(pending, {}); }
    // VACE: when defined, the next block's first norm also writes x after its adds here (the
    // block before's output, in the compute dtype), then calls `after_first_norm` (its hint).
    at::Tensor settled;
    std::function<void()> after_first_norm;
  };
  // The embedded input of a forward: the residual stream x [1, S, dim] float32, the blocks' and
  // the head's modulation, the frame count and the patch grid.
  struct Embedded {
    at::Tensor x, e0, head_mod;
    int64_t frames = 0, f = 0, h = 0, w = 0;
  };
  // A forward stopped between two layers (run_first_part), to be finished by run_rest.
  struct Midway {
    Embedded in;
    FusedResidual r;
    at::Tensor hints;  // the call's VACE hints (all written by the end of the first part)
    size_t next_layer = 0;
    bool stopped = false;  // kv_only: the last layer's K/V were written, nothing is left
  };
  // Whether a forward can run in two parts (the whole model on one device): between them the
  // host decides whether the rest is wanted (a block given up mid-step; StreamGenerator and
  // pipeline/dit_graphs.h). run() is the two parts with the split after the last layer.
  bool runs_in_parts() const { return !ranks_; }
  // The embedding, the VACE blocks (joined by the end of this part) and layers [0, split).
  Midway run_first_part(const ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
                        const CrossAttnCache& cross, size_t split) const;
  // The layers from midway.next_layer on and the head: what run() returns.
  at::Tensor run_rest(Midway& midway, const ForwardArgs& args, KvCache& kv,
                      const KvCache::Plan& plan, const CrossAttnCache& cross) const;
  // Both parts, `stop` asked between them: nullopt when it says the rest is not wanted.
  std::optional<at::Tensor> run_unless(const ForwardArgs& args, KvCache& kv,
                                       const KvCache::Plan& plan, const CrossAttnCache& cross,
                                       size_t split, const std::function<bool()>& stop) const;
  size_t layers() const { return blocks_.size(); }

  KvCacheShape kv_shape(int64_t latent_height, int64_t latent_width, int64_t sink_frames,
                        int64_t window_frames) const;

 private:
  struct Block {
    at::Tensor modulation;  // [1, 6, dim] float32
    // q/k/v weights are row slices of one [3 dim, dim] matrix, so the fused path runs one GEMM.
    at::Tensor qkv_w, qkv_b;
    at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, norm_q, norm_k;
    ops::Fp8Weight qkv8, o8, cq8, co8, ffn0_8, ffn2_8;  // FP8 copies (fp8_linears only)
    void set_fp8(bool on);  // makes (from the 16-bit matrices) or drops the FP8 copies
    at::Tensor norm3_w, norm3_b;
    at::Tensor cq_w, cq_b, ck_w, ck_b, cv_w, cv_b, co_w, co_b, cnorm_q, cnorm_k;
    at::Tensor ffn0_w, ffn0_b, ffn2_w, ffn2_b;
    // What a style-LoRA slot adapts: its matrix (q/k/v: row slices of qkv_w), and the FP8 copy
    // that holds it with the matrix that copy is quantised from (null when the slot has none, and
    // fp8 also when the copy is not made: fp8_linears off).
    struct SlotWeights {
      const at::Tensor* matrix = nullptr;
      const ops::Fp8Weight* fp8 = nullptr;
      const at::Tensor* fp8_source = nullptr;
    };
    SlotWeights slot(LoraSlot slot) const;  // from kSlotTable (causal_wan.cpp)
  };

  Block load_block(const WeightStore& weights, const std::string& prefix, bool fp8) const;
  at::Tensor rope_cos_sin(int64_t start_frame, int64_t frames, int64_t h, int64_t w,
                          bool sine) const;
  // sharded(): this rank's rows of a call of `total` tokens, and the frame of each row
  // (modulation is per frame; a rank's rows may start and end inside a frame).
  struct RankRows {
    int64_t begin = 0, count = 0, total = 0;
    at::Tensor frame_of_row;  // [count] int64 on the device
    at::Tensor mine(const at::Tensor& t, int64_t dim) const { return t.narrow(dim, begin, count); }
  };
  RankRows rank_rows(int64_t total, int64_t tokens_per_frame) const;
  // kv == nullptr: attention over the call's own tokens only (VACE blocks have no cache); on a
  // sharded model x holds this rank's rows of `gather_total` tokens, and every rank's K/V are
  // gathered first. `kv_only`: returns an undefined tensor once the K/V are in the cache.
  at::Tensor self_attention(const Block& b, int64_t layer, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin, KvCache* kv,
                            const KvCache::Plan* plan, const LoraSidePath* lora,
                            int64_t gather_total = 0, bool kv_only = false) const;
  // One block on the fused kernels (FP8 linears when the block has FP8 copies): `layer` indexes
  // the KV cache and the style LoRAs; kv == nullptr: self-attention over the block's own tokens
  // (VACE blocks). Leaves the FFN output pending in r; with `kv_only`, returns once the block's
  // K/V are in the cache (r is then of no further use).
  void fused_block(const Block& b, FusedResidual& r, const at::Tensor& e0, const at::Tensor& cos,
                   const at::Tensor& sin, KvCache* kv, const KvCache::Plan* plan, int64_t layer,
                   const CrossAttnCache& cross, size_t cross_index, int64_t frames,
                   const LoraSidePath* lora, bool kv_only = false) const;
  // One block, plain ATen ops: x [1, S, dim] float32 -> x after the FFN residual. `layer` indexes
  // the KV cache (when given) and the style LoRAs (when given), `cross_index` the text K/V.
  // `gather_total`: see self_attention (sharded VACE blocks). `kv_only`: returns an undefined
  // tensor once the block's K/V are in the cache.
  at::Tensor plain_block(const Block& b, at::Tensor x, const at::Tensor& e0, const at::Tensor& cos,
                         const at::Tensor& sin, KvCache* kv, const KvCache::Plan* plan,
                         int64_t layer, const CrossAttnCache& cross, size_t cross_index,
                         int64_t frames, const LoraSidePath* lora, int64_t gather_total = 0,
                         bool kv_only = false) const;
  // What the VACE blocks of one call start from: block 0's input (the embedded context mixed
  // into the DiT's input), the RoPE tables of the call's own frames, and the hint buffer.
  struct VaceStart {
    at::Tensor c, cos, sin, hints;
  };
  // The hints of one call: [blocks, S, dim] in hint_dtype(), written into args.vace_hints when
  // defined. x: the patch-embedded input [1, S, dim] float32. With `shard` (sharded()) only this
  // rank's rows are computed (the blocks gather K/V for their self-attention): [blocks, rows,
  // dim], written into those rows of the buffer when defined. vace_start() runs the embedding
  // (or takes args.vace_embedded's) on the current stream; vace_blocks() the blocks, recording a
  // mark on `side` after each hint when given (fused path only: the blocks then run on the side
  // stream, beside the layers).
  VaceStart vace_start(const at::Tensor& x, const ForwardArgs& args, int64_t frames, int64_t h,
                       int64_t w, const RankRows* shard) const;
  // before_proj of the patch-embedded context, zero-padded or cut to `seq` tokens: [1, S or
  // this rank's rows, dim] float32, written into `out` (those rows) when defined.
  at::Tensor vace_embedding(const at::Tensor& context, int64_t seq, int64_t h, int64_t w,
                            const at::Tensor& out, const RankRows* shard) const;
  void vace_blocks(VaceStart& start, const at::Tensor& e0, const CrossAttnCache& cross,
                   int64_t frames, const RankRows* shard, SideStream* side) const;
  // The transformer blocks and the head's modulated norm: [1, S, dim] float32 -> [1, S, dim]
  // ready for the head projection. Plain ATen ops, or the fused kernels. `kv_only`: the last
  // layer stops after its K/V and the result is undefined (ForwardArgs::kv_only).
  at::Tensor plain_layers(at::Tensor x, const at::Tensor& e0, const at::Tensor& head_mod,
                          const at::Tensor& cos, const at::Tensor& sin, KvCache& kv,
                          const KvCache::Plan& plan, const CrossAttnCache& cross, int64_t frames,
                          const at::Tensor& hints, const at::Tensor& hint_scale,
                          const LoraSidePath* lora, bool kv_only = false) const;
  // Layers [from, to) of the plain loop on x (replaced as it goes); false when `kv_only` stopped
  // the last layer after its K/V.
  bool plain_layer_range(at::Tensor& x, size_t from, size_t to, const at::Tensor& e0,
                         const at::Tensor& cos, const at::Tensor& sin, KvCache& kv,
                         const KvCache::Plan& plan, const CrossAttnCache& cross, int64_t frames,
                         const at::Tensor& hints, const at::Tensor& hint_scale,
                         const LoraSidePath* lora, bool kv_only) const;
  at::Tensor plain_head_norm(const at::Tensor& x, const at::Tensor& head_mod, int64_t frames) const;
  // Layers [from, to) of the fused-kernel loop (same maths as the plain loop) on r; false when
  // `kv_only` stopped the last layer after its K/V (ForwardArgs::kv_only). `hints_on`: the side
  // stream writing the hints (mark N = hint N), waited for before each use.
  bool fused_layer_range(FusedResidual& r, size_t from, size_t to, const at::Tensor& e0,
                         const at::Tensor& cos, const at::Tensor& sin, KvCache& kv,
                         const KvCache::Plan& plan, const CrossAttnCache& cross, int64_t frames,
                         const at::Tensor& hints, const at::Tensor& hint_scale,
                         const LoraSidePath* lora, bool kv_only, const SideStream* hints_on) const;
  // The head's modulated norm over r (its pending adds first): ready for the head projection.
  at::Tensor fused_head_norm(FusedResidual& r, const at::Tensor& head_mod, int64_t frames) const;
  Embedded embed(const ForwardArgs& args, const CrossAttnCache& cross) const;
  // The head projection (one device) and the unpatchify of the layers' output.
  at::Tensor finish(at::Tensor out, const Embedded& in) const;
  // args.vace_hints checked against the call's `seq` tokens (a rank's rows of them).
  at::Tensor reused_hints(const ForwardArgs& args, int64_t seq, const RankRows* shard) const;
  // sharded(): this rank's rows of plain_layers() and the head, then every rank's rows gathered:
  // x [1, S, dim] float32 (the whole block) -> the head's output [1, S, C*patch] float32.
  // `hints`: this rank's rows already.
  at::Tensor sharded_layers(const at::Tensor& x, const at::Tensor& e0, const at::Tensor& head_mod,
                            const ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
                            const CrossAttnCache& cross, const at::Tensor& hints,
                            const RankRows& shard) const;
  at::Tensor project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                     const ops::Fp8Weight& w8) const;
  // project() written into `out` (contiguous, [..., N], the compute dtype): no copy.
  void project_into(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                    const ops::Fp8Weight& w8, const at::Tensor& out) const;
  // (Re)makes the FP8 copies of the VACE projections when fp8_ is on, drops them otherwise.
  void set_vace_projection_fp8();

  WanConfig config_;
  at::Device device_;
  at::ScalarType dtype_;
  DitRuntime runtime_;
  bool fused_ = false;
  bool fp8_ = false;
  bool fp8_attention_ = false;
  std::shared_ptr<RankGroup> ranks_;  // sharded(): this rank's group; null: the whole block here
  at::Tensor patch_w_, patch_b_;
  at::Tensor text0_w_, text0_b_, text2_w_, text2_b_;
  at::Tensor time0_w_, time0_b_, time2_w_, time2_b_;
  at::Tensor proj_w_, proj_b_;
  at::Tensor head_modulation_, head_w_, head_b_;
  std::vector<Block> blocks_;
  // VACE (with_vace()): blocks, their projections, the context's patch embedding, and for each
  // DiT layer the hint it receives (-1: none).
  VaceLayout vace_layout_;
  std::vector<Block> vace_blocks_;
  std::vector<at::Tensor> vace_after_w_, vace_after_b_;
  std::vector<ops::Fp8Weight> vace_after8_;  // FP8 copies (fp8_linears only)
  at::Tensor vace_before_w_, vace_before_b_, vace_patch_w_, vace_patch_b_;
  ops::Fp8Weight vace_before8_;
  std::vector<int64_t> hint_of_layer_;
  // RoPE inverse frequencies per axis (float64) and the fixed height/width angle tables.
  at::Tensor inv_freq_frame_;
  at::Tensor angles_h_, angles_w_;  // [max_len, pairs] float64
};

}  // namespace longlive
