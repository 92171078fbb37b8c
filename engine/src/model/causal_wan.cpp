#include "model/causal_wan.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/env.h"
#include "longlive/error.h"
#include "longlive/profiler.h"
#include "model/lora_side_path.h"
#include "model/ops.h"
#include "parallel/rank_group.h"
#include "runtime/fa3_attention.h"
#include "runtime/fp8_attention.h"
#include "runtime/fused_ops.h"
#include "runtime/side_stream.h"

namespace longlive {
namespace {

constexpr double kRopeTheta = 10000.0;
constexpr int64_t kRopeTableLength = 1024;  // height/width positions (frames are unbounded)

// RoPE inverse frequencies for one axis that owns `channels` channels (channels / 2 pairs).
at::Tensor rope_inverse_frequencies(int64_t channels) {
  const at::Tensor exponents =
      at::arange(0, channels, 2, at::kDouble).div(static_cast<double>(channels));
  return at::pow(kRopeTheta, exponents).reciprocal();
}

// y plus the style LoRAs' delta of the linear `slot` of `layer` on its input x (y without one).
at::Tensor with_lora(const at::Tensor& y, const at::Tensor& x, const LoraSidePath* lora,
                     size_t layer, LoraSlot slot) {
  return lora ? lora->add(y, x, layer, slot) : y;
}

// Whether the VACE blocks attend in FP8 where the DiT does (fp8_attention, FA3 on sm_90);
// LONGLIVE_VACE_FP8_ATTENTION=0 keeps them in 16 bits (to compare).
bool vace_fp8_attention() { return !env_is("LONGLIVE_VACE_FP8_ATTENTION", "0"); }

// Whether the LayerNorm kernel writes an FP8 linear's input already quantised (QKV, cross q
// and FFN inputs, row-wise scales in the same launch: the same bits as a quantisation pass);
// LONGLIVE_FP8_NORM_QUANT=0 runs the separate pass (to compare on the GPU box).
bool fp8_norm_quant() { return !env_is("LONGLIVE_FP8_NORM_QUANT", "0"); }

// Whether the attention output projections (self-attention's o, cross-attention's o) get FP8
// copies under fp8_linears. Their inputs come straight from attention, so FP8 costs a
// quantisation pass that a square [dim, dim] GEMM does not win back (docs/benchmarks.md);
// LONGLIVE_FP8_OUT_PROJECTIONS=1 quantises them too (to compare).
bool fp8_out_projections() { return env_is("LONGLIVE_FP8_OUT_PROJECTIONS", "1"); }

// Whether a VACE block's output (its hint's input) is written by the next block's first norm
// (the default) or by a pass of its own after each block (LONGLIVE_VACE_SETTLE=pass, to compare:
// the same bits). Read at each forward.
bool vace_settle_in_next_norm() { return !env_is("LONGLIVE_VACE_SETTLE", "pass"); }

// Where the fused loop runs the VACE blocks: on a side stream beside the layers (a CUDA device,
// no region timing under way), unless LONGLIVE_VACE_STREAM is "serial" (one stream, to
// compare); "high" gives the side stream the higher priority (an A/B for the GPU box).
enum class VaceStream { serial, side, side_high_priority };
VaceStream vace_stream(const at::Device& device) {
  if (!SideStream::usable(device) || RegionProfiler::active() != nullptr) return VaceStream::serial;
  if (env_is("LONGLIVE_VACE_STREAM", "serial")) return VaceStream::serial;
  return env_is("LONGLIVE_VACE_STREAM", "high") ? VaceStream::side_high_priority : VaceStream::side;
}

}  // namespace

std::shared_ptr<const CausalWanModel> CausalWanModel::sharded(
    std::shared_ptr<RankGroup> ranks) const {
  if (!ranks) throw Error("CausalWanModel::sharded: no rank group");
  auto copy = std::make_shared<CausalWanModel>(*this);  // tensors are shared handles
  copy->ranks_ = std::move(ranks);
  return copy;
}

std::shared_ptr<const CausalWanModel> CausalWanModel::sharing_weights(
    const DitRuntime& runtime) const {
  auto copy = std::make_shared<CausalWanModel>(*this);  // tensors are shared handles
  copy->runtime_ = runtime;
  const bool sixteen_bit = dtype_ == at::kBFloat16 || dtype_ == at::kHalf;
  copy->fused_ = runtime.fused_kernels && device_.is_cuda() &&
                 fused::available(at::empty({0}, at::TensorOptions().device(device_))) &&
                 sixteen_bit && config_.qk_norm && config_.cross_attn_norm && config_.dim <= 2048;
  copy->fp8_ = runtime.fp8_linears && copy->fused_;
  copy->fp8_attention_ = runtime.fp8_attention && copy->fused_ && fp8_attention::available();
  if (copy->fp8_ != fp8_) {
    // FP8 linears on: quantise the shared 16-bit matrices on the device (what a load does, from
    // the same values, without a host copy); off: drop the FP8 copies, keep the shared rest.
    for (Block& b : copy->blocks_) b.set_fp8(copy->fp8_);
    for (Block& b : copy->vace_blocks_) b.set_fp8(copy->fp8_);
    copy->set_vace_projection_fp8();
  }
  return copy;
}

std::shared_ptr<const CausalWanModel> CausalWanModel::with_vace(const WeightStore& vace) const {
  auto copy = std::make_shared<CausalWanModel>(*this);  // DiT tensors are shared handles
  const VaceLayout layout = infer_vace_layout(vace, config_);
  const int64_t d = config_.dim;
  const auto& p = config_.patch;
  const std::string& pre = layout.prefix;
  auto w = [&](const std::string& name, at::IntArrayRef shape) {
    return vace.require(pre + name, shape).to(device_, dtype_).contiguous();
  };
  copy->vace_layout_ = layout;
  copy->vace_blocks_.clear();
  copy->vace_after_w_.clear();
  copy->vace_after_b_.clear();
  copy->vace_patch_w_ = w("vace_patch_embedding.weight", {d, layout.in_channels, p[0], p[1], p[2]});
  copy->vace_patch_b_ = w("vace_patch_embedding.bias", {d});
  copy->vace_before_w_ = w("vace_blocks.0.before_proj.weight", {d, d});
  copy->vace_before_b_ = w("vace_blocks.0.before_proj.bias", {d});
  copy->hint_of_layer_.assign(static_cast<size_t>(config_.num_layers), -1);
  for (int64_t i = 0; i < layout.blocks(); ++i) {
    const std::string n = fmt::format("vace_blocks.{}.", i);
    // The DiT's layer loop runs them: FP8 copies when the DiT has FP8 linears.
    copy->vace_blocks_.push_back(load_block(vace, pre + n, fp8_));
    copy->vace_after_w_.push_back(w(n + "after_proj.weight", {d, d}));
    copy->vace_after_b_.push_back(w(n + "after_proj.bias", {d}));
    copy->hint_of_layer_[static_cast<size_t>(layout.layers[i])] = i;
  }
  copy->set_vace_projection_fp8();
  return copy;
}

void CausalWanModel::set_vace_projection_fp8() {
  auto quantized = [&](const at::Tensor& w) {
    return fp8_ && w.defined() ? ops::quantize_weight_fp8(w) : ops::Fp8Weight{};
  };
  vace_before8_ = quantized(vace_before_w_);
  vace_after8_.clear();
  for (const at::Tensor& w : vace_after_w_) vace_after8_.push_back(quantized(w));
}

CausalWanModel::CausalWanModel(const WeightStore& weights, const WanConfig& config,
                               at::Device device, at::ScalarType dtype, const DitRuntime& runtime)
    : config_(config), device_(device), dtype_(dtype), runtime_(runtime) {
  config_.validate();
  const bool sixteen_bit = dtype == at::kBFloat16 || dtype == at::kHalf;
  fused_ = runtime.fused_kernels && device.is_cuda() &&
           fused::available(at::empty({0}, at::TensorOptions().device(device))) && sixteen_bit &&
           config.qk_norm && config.cross_attn_norm && config.dim <= 2048;
  fp8_ = runtime.fp8_linears && fused_;  // FP8 GEMMs ride on the fused layer loop
  fp8_attention_ = runtime.fp8_attention && fused_ && fp8_attention::available();
  const int64_t d = config.dim;
  const auto& p = config.patch;
  const int64_t patch_out = config.out_channels * p[0] * p[1] * p[2];
  auto load = [&](const std::string& name, at::IntArrayRef shape, at::ScalarType as) {
    return weights.require(name, shape).to(device, as).contiguous();
  };
  auto w = [&](const std::string& name, at::IntArrayRef shape) { return load(name, shape, dtype); };
  auto f32 = [&](const std::string& name, at::IntArrayRef shape) {
    return load(name, shape, at::kFloat);
  };

  patch_w_ = w("patch_embedding.weight", {d, config.in_channels, p[0], p[1], p[2]});
  patch_b_ = w("patch_embedding.bias", {d});
  text0_w_ = w("text_embedding.0.weight", {d, config.text_dim});
  text0_b_ = w("text_embedding.0.bias", {d});
  text2_w_ = w("text_embedding.2.weight", {d, d});
  text2_b_ = w("text_embedding.2.bias", {d});
  // The time MLP is tiny and feeds every modulation: keep it in float32.
  time0_w_ = f32("time_embedding.0.weight", {d, config.freq_dim});
  time0_b_ = f32("time_embedding.0.bias", {d});
  time2_w_ = f32("time_embedding.2.weight", {d, d});
  time2_b_ = f32("time_embedding.2.bias", {d});
  proj_w_ = f32("time_projection.1.weight", {6 * d, d});
  proj_b_ = f32("time_projection.1.bias", {6 * d});
  head_modulation_ = f32("head.modulation", {1, 2, d});
  head_w_ = w("head.head.weight", {patch_out, d});
  head_b_ = w("head.head.bias", {patch_out});

  for (int64_t i = 0; i < config.num_layers; ++i)
    blocks_.push_back(load_block(weights, fmt::format("blocks.{}.", i), fp8_));
  hint_of_layer_.assign(static_cast<size_t>(config.num_layers), -1);

  // Head dim d splits into d - 4*(d/6) frame channels and 2*(d/6) each for height and width.
  const int64_t hd = config.head_dim();
  const int64_t hw_channels = 2 * (hd / 6);
  const auto cpu_double = at::TensorOptions().dtype(at::kDouble);
  inv_freq_frame_ = rope_inverse_frequencies(hd - 2 * hw_channels).to(device);
  const at::Tensor positions = at::arange(kRopeTableLength, cpu_double);
  const at::Tensor hw_inv = rope_inverse_frequencies(hw_channels);
  angles_h_ = at::outer(positions, hw_inv).to(device);
  angles_w_ = angles_h_;
}

CausalWanModel::Block CausalWanModel::load_block(const WeightStore& weights, const std::string& n,
                                                 bool fp8) const {
  const int64_t d = config_.dim;
  // Always a copy, even where .to() could return the store's own tensor (float32 on the CPU):
  // merge_style_loras changes these in place and must not reach the factory's host weights.
  auto w = [&](const std::string& name, at::IntArrayRef shape) {
    return weights.require(name, shape)
        .to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true)
        .contiguous();
  };
  auto f32 = [&](const std::string& name, at::IntArrayRef shape) {
    return weights.require(name, shape).to(device_, at::kFloat).contiguous();
  };
  Block b;
  b.modulation = f32(n + "modulation", {1, 6, d});
  b.qkv_w = at::cat({w(n + "self_attn.q.weight", {d, d}), w(n + "self_attn.k.weight", {d, d}),
                     w(n + "self_attn.v.weight", {d, d})});
  b.qkv_b = at::cat({w(n + "self_attn.q.bias", {d}), w(n + "self_attn.k.bias", {d}),
                     w(n + "self_attn.v.bias", {d})});
  b.q_w = b.qkv_w.narrow(0, 0, d);
  b.k_w = b.qkv_w.narrow(0, d, d);
  b.v_w = b.qkv_w.narrow(0, 2 * d, d);
  b.q_b = b.qkv_b.narrow(0, 0, d);
  b.k_b = b.qkv_b.narrow(0, d, d);
  b.v_b = b.qkv_b.narrow(0, 2 * d, d);
  b.o_w = w(n + "self_attn.o.weight", {d, d});
  b.o_b = w(n + "self_attn.o.bias", {d});
  b.norm_q = w(n + "self_attn.norm_q.weight", {d});
  b.norm_k = w(n + "self_attn.norm_k.weight", {d});
  if (config_.cross_attn_norm) {
    b.norm3_w = f32(n + "norm3.weight", {d});
    b.norm3_b = f32(n + "norm3.bias", {d});
  }
  b.cq_w = w(n + "cross_attn.q.weight", {d, d});
  b.cq_b = w(n + "cross_attn.q.bias", {d});
  b.ck_w = w(n + "cross_attn.k.weight", {d, d});
  b.ck_b = w(n + "cross_attn.k.bias", {d});
  b.cv_w = w(n + "cross_attn.v.weight", {d, d});
  b.cv_b = w(n + "cross_attn.v.bias", {d});
  b.co_w = w(n + "cross_attn.o.weight", {d, d});
  b.co_b = w(n + "cross_attn.o.bias", {d});
  b.cnorm_q = w(n + "cross_attn.norm_q.weight", {d});
  b.cnorm_k = w(n + "cross_attn.norm_k.weight", {d});
  b.ffn0_w = w(n + "ffn.0.weight", {config_.ffn_dim, d});
  b.ffn0_b = w(n + "ffn.0.bias", {config_.ffn_dim});
  b.ffn2_w = w(n + "ffn.2.weight", {d, config_.ffn_dim});
  b.ffn2_b = w(n + "ffn.2.bias", {d});
  b.set_fp8(fp8);
  return b;
}

void CausalWanModel::Block::set_fp8(bool on) {
  auto quantized = [on](const at::Tensor& w) {
    return on ? ops::quantize_weight_fp8(w) : ops::Fp8Weight{};
  };
  const bool out_projections = on && fp8_out_projections();
  qkv8 = quantized(qkv_w);
  o8 = out_projections ? quantized(o_w) : ops::Fp8Weight{};
  cq8 = quantized(cq_w);
  co8 = out_projections ? quantized(co_w) : ops::Fp8Weight{};
  ffn0_8 = quantized(ffn0_w);
  ffn2_8 = quantized(ffn2_w);
}

CausalWanModel::Block::SlotWeights CausalWanModel::Block::slot(LoraSlot slot) const {
  // One row per LoraSlot, in the enum's order (checked below): the members a slot adapts.
  struct Row {
    LoraSlot slot;
    at::Tensor Block::*matrix;
    ops::Fp8Weight Block::*fp8;  // null: no FP8 copy
    at::Tensor Block::*fp8_source;
  };
  static constexpr std::array<Row, kLoraSlots> kTable = {{
      {LoraSlot::self_q, &Block::q_w, &Block::qkv8, &Block::qkv_w},
      {LoraSlot::self_k, &Block::k_w, &Block::qkv8, &Block::qkv_w},
      {LoraSlot::self_v, &Block::v_w, &Block::qkv8, &Block::qkv_w},
      {LoraSlot::self_o, &Block::o_w, &Block::o8, &Block::o_w},
      {LoraSlot::cross_q, &Block::cq_w, &Block::cq8, &Block::cq_w},
      // The text K/V run once per prompt, in 16 bits: no FP8 copies.
      {LoraSlot::cross_k, &Block::ck_w, nullptr, nullptr},
      {LoraSlot::cross_v, &Block::cv_w, nullptr, nullptr},
      {LoraSlot::cross_o, &Block::co_w, &Block::co8, &Block::co_w},
      {LoraSlot::ffn0, &Block::ffn0_w, &Block::ffn0_8, &Block::ffn0_w},
      {LoraSlot::ffn2, &Block::ffn2_w, &Block::ffn2_8, &Block::ffn2_w},
  }};
  static_assert(
      [] {
        for (size_t i = 0; i < kTable.size(); ++i)
          if (static_cast<size_t>(kTable[i].slot) != i) return false;
        return true;
      }(),
      "the slot table's rows follow LoraSlot's order");
  const auto i = static_cast<size_t>(slot);
  if (i >= kTable.size()) throw Error("unknown LoRA slot");
  const Row& row = kTable[i];
  SlotWeights w{&(this->*row.matrix)};
  if (row.fp8 && (this->*row.fp8).defined()) {
    w.fp8 = &(this->*row.fp8);
    w.fp8_source = &(this->*row.fp8_source);
  }
  return w;
}

int64_t CausalWanModel::merge_style_loras(const std::vector<ActiveStyleLora>& loras) const {
  std::vector<std::string> names;  // for the errors: the deltas are summed over the LoRAs
  for (const auto& l : loras)
    if (l.lora && l.strength != 0) names.push_back(l.lora->name);
  const std::string baking = fmt::format("{}", fmt::join(names, "', '"));
  std::map<std::pair<size_t, LoraSlot>, at::Tensor> deltas;
  for (auto& [target, delta] : style_lora_deltas(loras, device_)) {
    const LoraTarget t = parse_lora_target(target, blocks_.size(), baking);
    const at::Tensor& w = *blocks_[t.layer].slot(t.slot).matrix;
    if (delta.sizes() != w.sizes())
      throw WeightError(
          fmt::format("style LoRA '{}': the delta of {} is [{}], the DiT's matrix "
                      "is [{}]",
                      baking, target, fmt::join(delta.sizes(), ", "), fmt::join(w.sizes(), ", ")));
    deltas.emplace(std::pair{t.layer, t.slot}, std::move(delta));
  }
  std::map<const ops::Fp8Weight*, const at::Tensor*> source;
  for (const auto& [where, delta] : deltas) {
    const Block::SlotWeights slot = blocks_[where.first].slot(where.second);
    const at::Tensor& w = *slot.matrix;
    w.copy_(w.to(at::kFloat).add_(delta));  // in place: same storage, graphs stay valid
    if (slot.fp8) source[slot.fp8] = slot.fp8_source;
  }
  for (const auto& [w8, from] : source) {
    const ops::Fp8Weight merged = ops::quantize_weight_fp8(*from);
    w8->q.copy_(merged.q);
    w8->scale.copy_(merged.scale);
  }
  return static_cast<int64_t>(deltas.size());
}

KvCacheShape CausalWanModel::kv_shape(int64_t latent_height, int64_t latent_width,
                                      int64_t sink_frames, int64_t window_frames) const {
  KvCacheShape shape;
  shape.layers = config_.num_layers;
  shape.heads = config_.num_heads;
  shape.head_dim = config_.head_dim();
  shape.tokens_per_frame = (latent_height / config_.patch[1]) * (latent_width / config_.patch[2]);
  shape.sink_frames = sink_frames;
  shape.window_frames = window_frames;
  return shape;
}

at::Tensor CausalWanModel::rope_cos_sin(int64_t start_frame, int64_t frames, int64_t h, int64_t w,
                                        bool sine) const {
  // Frame angles are computed for the absolute frame index directly (float64), so positions past
  // the reference's 1024-entry table keep working and stay exact (see generator.h).
  const at::Tensor frame_pos = at::arange(start_frame, start_frame + frames,
                                          at::TensorOptions().dtype(at::kDouble).device(device_));
  const at::Tensor af = at::outer(frame_pos, inv_freq_frame_);  // [F, pf]
  const at::Tensor ah = angles_h_.narrow(0, 0, h);              // [h, ph]
  const at::Tensor aw = angles_w_.narrow(0, 0, w);              // [w, pw]
  const at::Tensor grid = at::cat({af.view({frames, 1, 1, -1}).expand({frames, h, w, af.size(1)}),
                                   ah.view({1, h, 1, -1}).expand({frames, h, w, ah.size(1)}),
                                   aw.view({1, 1, w, -1}).expand({frames, h, w, aw.size(1)})},
                                  -1);
  const at::Tensor angles = grid.reshape({frames * h * w, 1, -1});
  return sine ? at::sin(angles) : at::cos(angles);
}

void CausalWanModel::build_cross_cache(const at::Tensor& prompt_embeds, CrossAttnCache& cache,
                                       const LoraSidePath* lora) const {
  if (prompt_embeds.dim() != 3 || prompt_embeds.size(0) != 1 ||
      prompt_embeds.size(2) != config_.text_dim || prompt_embeds.size(1) > config_.text_len ||
      prompt_embeds.size(1) < 1) {
    throw ConfigError(fmt::format(
        "prompt embeddings have shape [{}], expected [1, L, {}] with 1 <= L <= {} (text_dim and "
        "text_len of the DiT)",
        fmt::join(prompt_embeds.sizes(), ", "), config_.text_dim, config_.text_len));
  }
  at::Tensor context = prompt_embeds.to(device_, dtype_);
  if (context.size(1) < config_.text_len) {
    context = at::constant_pad_nd(context, {0, 0, 0, config_.text_len - context.size(1)});
  }
  context =
      ops::linear(ops::gelu_tanh(ops::linear(context, text0_w_, text0_b_)), text2_w_, text2_b_);
  const int64_t n = config_.num_heads;
  const int64_t hd = config_.head_dim();
  // A cache of the same shape is overwritten in place, so its tensors keep their addresses
  // (captured CUDA graphs read them; see pipeline/dit_graphs.h).
  const size_t layers = blocks_.size() + vace_blocks_.size();
  const bool in_place = !blocks_.empty() && cache.k.size() == layers &&
                        cache.k[0].device() == device_ && cache.k[0].scalar_type() == dtype_ &&
                        cache.k[0].sizes() == at::IntArrayRef({1, n, config_.text_len, hd});
  if (!in_place) cache.clear();
  for (size_t i = 0; i < layers; ++i) {
    const Block& b = i < blocks_.size() ? blocks_[i] : vace_blocks_[i - blocks_.size()];
    // Style LoRAs target the DiT's layers only, not the VACE blocks.
    const LoraSidePath* side = i < blocks_.size() ? lora : nullptr;
    at::Tensor k =
        with_lora(ops::linear(context, b.ck_w, b.ck_b), context, side, i, LoraSlot::cross_k);
    if (config_.qk_norm) k = ops::rms_norm(k, b.cnorm_k, config_.eps);
    const at::Tensor v =
        with_lora(ops::linear(context, b.cv_w, b.cv_b), context, side, i, LoraSlot::cross_v);
    const at::Tensor k_heads = k.view({1, -1, n, hd}).transpose(1, 2);
    const at::Tensor v_heads = v.view({1, -1, n, hd}).transpose(1, 2);
    if (in_place) {
      cache.k[i].copy_(k_heads);
      cache.v[i].copy_(v_heads);
    } else {
      cache.k.push_back(k_heads.contiguous());
      cache.v.push_back(v_heads.contiguous());
    }
  }
}

at::Tensor CausalWanModel::self_attention(const Block& b, int64_t layer, const at::Tensor& x,
                                          const at::Tensor& cos, const at::Tensor& sin, KvCache* kv,
                                          const KvCache::Plan* plan, const LoraSidePath* lora,
                                          int64_t gather_total, bool kv_only) const {
  const auto l = static_cast<size_t>(layer);
  const int64_t n = config_.num_heads;
  const int64_t hd = config_.head_dim();
  const int64_t seq = x.size(1);
  at::Tensor q, k, v;
  {
    const ProfileScope scope("gemm");
    q = with_lora(ops::linear(x, b.q_w, b.q_b), x, lora, l, LoraSlot::self_q);
    k = with_lora(ops::linear(x, b.k_w, b.k_b), x, lora, l, LoraSlot::self_k);
    v = with_lora(ops::linear(x, b.v_w, b.v_b), x, lora, l, LoraSlot::self_v).view({1, seq, n, hd});
  }
  {
    const ProfileScope scope("rms_rope");
    if (config_.qk_norm) {
      q = ops::rms_norm(q, b.norm_q, config_.eps);
      k = ops::rms_norm(k, b.norm_k, config_.eps);
    }
    q = ops::apply_rope(q.view({1, seq, n, hd}), cos, sin);
    k = ops::apply_rope(k.view({1, seq, n, hd}), cos, sin);
  }
  at::Tensor out;
  if (kv == nullptr) {
    if (ranks_ && gather_total > 0) {
      // A sharded VACE block: this rank's queries against every rank's keys and values.
      const ProfileScope scope("all_gather");
      k = ranks_->all_gather_rows(k, 1, gather_total);
      v = ranks_->all_gather_rows(v, 1, gather_total);
    }
    const ProfileScope scope("self_attention");
    out =
        ops::attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), runtime_.attention);
  } else {
    if (ranks_) {
      // Sequence parallel: the cache (the same on every rank) takes the whole block's K/V.
      const ProfileScope scope("all_gather");
      const int64_t total = (plan->num_frames - plan->first_written) * kv->shape().tokens_per_frame;
      k = ranks_->all_gather_rows(k, 1, total);
      v = ranks_->all_gather_rows(v, 1, total);
    }
    {
      const ProfileScope scope("kv_write");
      kv->write(layer, *plan, k.transpose(1, 2), v.transpose(1, 2),
                k.size(1) / kv->shape().tokens_per_frame);
    }
    if (kv_only) return {};
    const ProfileScope scope("self_attention");
    out = ops::attention(q.transpose(1, 2), kv->keys(layer, *plan), kv->values(layer, *plan),
                         runtime_.attention);
  }
  const ProfileScope scope("gemm");
  const at::Tensor attended = out.transpose(1, 2).reshape({1, seq, n * hd});
  return with_lora(ops::linear(attended, b.o_w, b.o_b), attended, lora, l, LoraSlot::self_o);
}

at::Tensor CausalWanModel::forward(const at::Tensor& latents, const at::Tensor& timesteps,
                                   KvCache& kv, const KvCache::Plan& plan,
                                   const CrossAttnCache& cross, const LoraSidePath* lora,
                                   bool kv_only) const {
  ForwardArgs args = prepare(latents, timesteps, plan);
  args.lora = lora;
  args.kv_only = kv_only;
  return run(args, kv, plan, cross);
}

CausalWanModel::ForwardArgs CausalWanModel::prepare(const at::Tensor& latents,
                                                    const at::Tensor& timesteps,
                                                    const KvCache::Plan& plan) const {
  if (latents.dim() != 5 || latents.size(0) != 1 || latents.size(1) != plan.num_frames ||
      latents.size(2) != config_.in_channels) {
    throw ConfigError(fmt::format("DiT input has shape [{}], expected [1, {}, {}, H, W]",
                                  fmt::join(latents.sizes(), ", "), plan.num_frames,
                                  config_.in_channels));
  }
  const auto& p = config_.patch;
  if (latents.size(3) % p[1] != 0 || latents.size(4) % p[2] != 0) {
    throw ConfigError(fmt::format("DiT input {}x{} is not a multiple of the patch {}x{}",
                                  latents.size(3), latents.size(4), p[1], p[2]));
  }
  // Frames whose K/V the plan drops (global-sink re-cache) do not influence anything: skip them.
  const int64_t frames = plan.num_frames - plan.first_written;
  ForwardArgs args;
  args.latents = latents.narrow(1, plan.first_written, frames).to(device_, at::kFloat).contiguous();
  args.timesteps = timesteps.reshape({-1})
                       .narrow(0, plan.first_written, frames)
                       .to(device_, at::kFloat)
                       .contiguous();
  // RoPE tables for this forward's absolute positions, shared by every layer. float64 in the
  // exact fp32 path (as the reference); float32 when the matrices run in 16 bits.
  const int64_t rope_start = plan.start_frame + plan.first_written;
  const int64_t h = latents.size(3) / p[1], w = latents.size(4) / p[2];
  args.cos = rope_cos_sin(rope_start, frames, h, w, false);
  args.sin = rope_cos_sin(rope_start, frames, h, w, true);
  if (dtype_ != at::kFloat && dtype_ != at::kDouble) {
    args.cos = args.cos.to(at::kFloat);
    args.sin = args.sin.to(at::kFloat);
  }
  return args;
}

CausalWanModel::Embedded CausalWanModel::embed(const ForwardArgs& args,
                                               const CrossAttnCache& cross) const {
  if (cross.empty())
    throw Error("DiT forward without text conditioning (cross-attention cache empty)");
  const bool vace = args.has_vace();
  if (vace && !has_vace())
    throw Error("DiT forward with a VACE context, but no VACE weights are loaded");
  if (vace && cross.k.size() != blocks_.size() + vace_blocks_.size())
    throw Error("DiT forward with VACE: the text K/V were built without the VACE blocks");
  if (vace && !args.vace_scale.defined()) throw Error("DiT forward with VACE: no hint scale given");
  const auto& p = config_.patch;
  Embedded in;
  in.frames = args.latents.size(1);

  const ProfileScope embed_scope("embed");
  // Patch embedding: [1, F, C, H, W] -> [1, C, F, H, W] -> conv -> [1, S, dim]
  at::Tensor x = at::conv3d(args.latents.permute({0, 2, 1, 3, 4}).to(dtype_), patch_w_, patch_b_,
                            {p[0], p[1], p[2]});
  in.f = x.size(2), in.h = x.size(3), in.w = x.size(4);
  in.x = x.flatten(2).transpose(1, 2).to(at::kFloat);  // residual stream in float32

  // Sinusoidal timestep embedding (float64, [cos, sin]) -> time MLP -> 6-way modulation.
  const int64_t half = config_.freq_dim / 2;
  const at::Tensor positions = args.timesteps.to(at::kDouble);
  const at::Tensor freqs =
      at::pow(10000.0, -at::arange(half, positions.options()).div(static_cast<double>(half)));
  const at::Tensor sinusoid = at::outer(positions, freqs);
  const at::Tensor temb = at::cat({at::cos(sinusoid), at::sin(sinusoid)}, 1).to(at::kFloat);
  const at::Tensor e =
      ops::linear(at::silu(ops::linear(temb, time0_w_, time0_b_)), time2_w_, time2_b_);
  in.e0 = ops::linear(at::silu(e), proj_w_, proj_b_).view({1, in.frames, 6, config_.dim});

  // Head: 2-way modulation from the time embedding (before the projection).
  in.head_mod = head_modulation_.unsqueeze(1) + e.view({1, in.frames, 1, config_.dim});
  return in;
}

at::Tensor CausalWanModel::finish(at::Tensor out, const Embedded& in) const {
  if (!out.defined()) return out;  // kv_only: the cache writes were the point
  if (!ranks_) {
    const ProfileScope head_scope("head");
    out = ops::linear(out, head_w_, head_b_).to(at::kFloat);
  }

  // Unpatchify: [1, F*h*w, C*pt*ph*pw] -> [1, F*pt, C, h*ph, w*pw] (pipeline layout)
  const auto& p = config_.patch;
  const int64_t c = config_.out_channels;
  return out.view({in.f, in.h, in.w, p[0], p[1], p[2], c})
      .permute({0, 3, 6, 1, 4, 2, 5})
      .reshape({1, in.f * p[0], c, in.h * p[1], in.w * p[2]});
}

at::Tensor CausalWanModel::run(const ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
                               const CrossAttnCache& cross) const {
  if (runs_in_parts()) {
    Midway midway = run_first_part(args, kv, plan, cross, blocks_.size());
    return run_rest(midway, args, kv, plan, cross);
  }
  // sharded(): every rank its rows.
  const Embedded in = embed(args, cross);
  const RankRows shard = rank_rows(in.x.size(1), in.h * in.w);
  at::Tensor hints;
  if (args.computes_vace_hints()) {
    VaceStart vace_in = vace_start(in.x, args, in.frames, in.h, in.w, &shard);
    hints = vace_in.hints;
    vace_blocks(vace_in, in.e0, cross, in.frames, &shard, nullptr);
  } else if (args.vace_hints.defined()) {
    hints = reused_hints(args, in.x.size(1), &shard);
  }
  return finish(sharded_layers(in.x, in.e0, in.head_mod, args, kv, plan, cross, hints, shard), in);
}

at::Tensor CausalWanModel::reused_hints(const ForwardArgs& args, int64_t seq,
                                        const RankRows* shard) const {
  const std::vector<int64_t> expected = {vace_layout_.blocks(), seq, config_.dim};
  if (args.vace_hints.sizes() != at::IntArrayRef(expected))
    throw ConfigError(fmt::format("VACE hints have shape [{}], expected [{}]",
                                  fmt::join(args.vace_hints.sizes(), ", "),
                                  fmt::join(expected, ", ")));
  // Reused from an earlier step (a sharded rank wrote and reads only its rows).
  return shard ? shard->mine(args.vace_hints, 1) : args.vace_hints;
}

CausalWanModel::Midway CausalWanModel::run_first_part(const ForwardArgs& args, KvCache& kv,
                                                      const KvCache::Plan& plan,
                                                      const CrossAttnCache& cross,
                                                      size_t split) const {
  if (!runs_in_parts()) throw Error("a DiT forward in parts needs the whole model on one device");
  split = std::min(split, blocks_.size());
  Midway m;
  m.in = embed(args, cross);
  // With the fused loop, the VACE blocks run on a side stream beside the DiT's layers (they need
  // only the embedded input), each hint waited for where it is added. Not while regions are
  // timed (their events would mix the two streams' work), nor with LONGLIVE_VACE_STREAM=serial.
  // `vace_in` is declared before `side`: what the side stream reads lives until its join, at the
  // end of this part (a forward in parts: every hint is there for the rest).
  std::optional<VaceStart> vace_in;
  std::unique_ptr<SideStream> side;
  if (args.computes_vace_hints()) {
    vace_in = vace_start(m.in.x, args, m.in.frames, m.in.h, m.in.w, nullptr);
    m.hints = vace_in->hints;
    if (const VaceStream where = vace_stream(device_); fused_ && where != VaceStream::serial) {
      side = std::make_unique<SideStream>(device_, where == VaceStream::side_high_priority);
      side->run([&] { vace_blocks(*vace_in, m.in.e0, cross, m.in.frames, nullptr, side.get()); });
    } else {
      vace_blocks(*vace_in, m.in.e0, cross, m.in.frames, nullptr, nullptr);
    }
  } else if (args.vace_hints.defined()) {
    m.hints = reused_hints(args, m.in.x.size(1), nullptr);
  }
  if (fused_) {
    m.r.x = m.in.x.contiguous();
    m.stopped =
        !fused_layer_range(m.r, 0, split, m.in.e0, args.cos, args.sin, kv, plan, cross, m.in.frames,
                           m.hints, args.vace_scale, args.lora, args.kv_only, side.get());
  } else {
    m.r.x = m.in.x;
    m.stopped = !plain_layer_range(m.r.x, 0, split, m.in.e0, args.cos, args.sin, kv, plan, cross,
                                   m.in.frames, m.hints, args.vace_scale, args.lora, args.kv_only);
  }
  m.in.x = at::Tensor();  // read by now; r.x carries the stream (kept for the rest: its memory)
  m.next_layer = split;
  return m;
}

at::Tensor CausalWanModel::run_rest(Midway& m, const ForwardArgs& args, KvCache& kv,
                                    const KvCache::Plan& plan, const CrossAttnCache& cross) const {
  if (m.stopped) return {};  // kv_only: the last layer's K/V are written: nothing else is read
  const size_t from = std::exchange(m.next_layer, blocks_.size());
  if (!fused_) {
    if (!plain_layer_range(m.r.x, from, blocks_.size(), m.in.e0, args.cos, args.sin, kv, plan,
                           cross, m.in.frames, m.hints, args.vace_scale, args.lora, args.kv_only))
      return {};
    return finish(plain_head_norm(m.r.x, m.in.head_mod, m.in.frames), m.in);
  }
  if (!fused_layer_range(m.r, from, blocks_.size(), m.in.e0, args.cos, args.sin, kv, plan, cross,
                         m.in.frames, m.hints, args.vace_scale, args.lora, args.kv_only, nullptr))
    return {};
  return finish(fused_head_norm(m.r, m.in.head_mod, m.in.frames), m.in);
}

std::optional<at::Tensor> CausalWanModel::run_unless(const ForwardArgs& args, KvCache& kv,
                                                     const KvCache::Plan& plan,
                                                     const CrossAttnCache& cross, size_t split,
                                                     const std::function<bool()>& stop) const {
  Midway midway = run_first_part(args, kv, plan, cross, split);
  if (stop()) return std::nullopt;
  return run_rest(midway, args, kv, plan, cross);
}

at::Tensor CausalWanModel::plain_block(const Block& b, at::Tensor x, const at::Tensor& e0,
                                       const at::Tensor& cos, const at::Tensor& sin, KvCache* kv,
                                       const KvCache::Plan* plan, int64_t layer,
                                       const CrossAttnCache& cross, size_t cross_index,
                                       int64_t frames, const LoraSidePath* lora,
                                       int64_t gather_total, bool kv_only) const {
  const int64_t seq = x.size(1);
  const auto l = static_cast<size_t>(layer);  // LoRA slots (lora is null for VACE blocks)
  at::Tensor mod, hidden, normed, q, attended, y;
  auto chunk = [&](int64_t i) { return mod.narrow(2, i, 1); };
  {
    const ProfileScope scope("norm_modulate");
    mod = b.modulation.unsqueeze(1) + e0;  // [1, F, 6, dim]
    hidden = ops::layer_norm_modulate(x, chunk(0), chunk(1), frames, config_.eps);
  }
  y = self_attention(b, layer, hidden, cos, sin, kv, plan, lora, gather_total, kv_only);
  if (!y.defined()) return y;  // kv_only
  {
    const ProfileScope scope("norm_modulate");
    x = ops::gated_residual(x, y, chunk(2), frames);
    normed =
        config_.cross_attn_norm ? ops::layer_norm_affine(x, b.norm3_w, b.norm3_b, config_.eps) : x;
  }
  {
    const ProfileScope scope("gemm");
    q = with_lora(ops::linear(normed, b.cq_w, b.cq_b), normed, lora, l, LoraSlot::cross_q);
  }
  {
    const ProfileScope scope("rms_rope");
    if (config_.qk_norm) q = ops::rms_norm(q, b.cnorm_q, config_.eps);
    q = q.view({1, seq, config_.num_heads, config_.head_dim()}).transpose(1, 2);
  }
  {
    const ProfileScope scope("cross_attention");
    attended = ops::attention(q, cross.k[cross_index], cross.v[cross_index], runtime_.attention);
  }
  {
    const ProfileScope scope("gemm");
    const at::Tensor heads = attended.transpose(1, 2).reshape({1, seq, config_.dim});
    y = with_lora(ops::linear(heads, b.co_w, b.co_b), heads, lora, l, LoraSlot::cross_o);
  }
  {
    const ProfileScope scope("norm_modulate");
    x = x + y.to(at::kFloat);
    hidden = ops::layer_norm_modulate(x, chunk(3), chunk(4), frames, config_.eps);
  }
  {
    const ProfileScope scope("gemm");
    const at::Tensor inner = ops::gelu_tanh(
        with_lora(ops::linear(hidden, b.ffn0_w, b.ffn0_b), hidden, lora, l, LoraSlot::ffn0));
    y = with_lora(ops::linear(inner, b.ffn2_w, b.ffn2_b), inner, lora, l, LoraSlot::ffn2);
  }
  const ProfileScope scope("norm_modulate");
  return ops::gated_residual(x, y, chunk(5), frames);
}

// VACE hints of one call. The context is embedded and zero-padded to the call's tokens (a
// reference image alone is one latent frame), mixed into the DiT's embedded input by block 0's
// before_proj, then every VACE block runs as a DiT block without cache: self-attention over the
// call's own tokens, RoPE frames counted from 0, the same timestep modulation, the text through
// its own cross-attention K/V. Each block's after_proj gives its hint.
CausalWanModel::VaceStart CausalWanModel::vace_start(const at::Tensor& x, const ForwardArgs& args,
                                                     int64_t frames, int64_t h, int64_t w,
                                                     const RankRows* shard) const {
  const int64_t seq = x.size(1);
  const int64_t blocks = vace_layout_.blocks();
  const at::Tensor& out = args.vace_hints;
  if (out.defined() && (out.sizes() != at::IntArrayRef({blocks, seq, config_.dim}) ||
                        out.scalar_type() != dtype_ || out.device() != device_))
    throw Error(fmt::format("VACE hint buffer has shape [{}] {}, expected [{}, {}, {}] {}",
                            fmt::join(out.sizes(), ", "), c10::toString(out.scalar_type()), blocks,
                            seq, config_.dim, c10::toString(dtype_)));
  const at::Tensor& embedded = args.vace_embedded;
  if (embedded.defined() && (embedded.sizes() != at::IntArrayRef({1, seq, config_.dim}) ||
                             embedded.scalar_type() != at::kFloat || embedded.device() != device_))
    throw Error(fmt::format("VACE embedding buffer has shape [{}] {}, expected [1, {}, {}] Float",
                            fmt::join(embedded.sizes(), ", "),
                            c10::toString(embedded.scalar_type()), seq, config_.dim));
  // A sharded rank runs its rows of the blocks (row-wise maths; the self-attention gathers K/V):
  // its RoPE rows, its rows of the hints.
  const int64_t rows = shard ? shard->count : seq;
  VaceStart start;
  const ProfileScope scope("vace");
  // The context's embedding depends on the context alone: computed by the block's first step
  // (and kept in args.vace_embedded), read there by its later steps.
  const at::Tensor e = args.vace_context.defined()
                           ? vace_embedding(args.vace_context, seq, h, w, embedded, shard)
                           : (shard ? shard->mine(embedded, 1) : embedded);
  start.c = (shard ? shard->mine(x, 1) : x) + e;
  start.cos = rope_cos_sin(0, frames, h, w, false);
  start.sin = rope_cos_sin(0, frames, h, w, true);
  if (shard) {
    start.cos = shard->mine(start.cos, 0);
    start.sin = shard->mine(start.sin, 0);
  }
  if (dtype_ != at::kFloat && dtype_ != at::kDouble) {
    start.cos = start.cos.to(at::kFloat);
    start.sin = start.sin.to(at::kFloat);
  }
  start.hints = out.defined() ? (shard ? shard->mine(out, 1) : out)
                              : at::empty({blocks, rows, config_.dim},
                                          at::TensorOptions().dtype(dtype_).device(device_));
  return start;
}

at::Tensor CausalWanModel::vace_embedding(const at::Tensor& context, int64_t seq, int64_t h,
                                          int64_t w, const at::Tensor& out,
                                          const RankRows* shard) const {
  const auto& p = config_.patch;
  if (context.dim() != 4 || context.size(0) != vace_layout_.in_channels || context.size(1) < 1 ||
      context.size(2) != h * p[1] || context.size(3) != w * p[2]) {
    throw ConfigError(fmt::format(
        "VACE context has shape [{}], expected [{}, F, {}, {}] (channels, latent frames, latent "
        "height and width)",
        fmt::join(context.sizes(), ", "), vace_layout_.in_channels, h * p[1], w * p[2]));
  }
  at::Tensor c = at::conv3d(context.unsqueeze(0).to(device_, dtype_), vace_patch_w_, vace_patch_b_,
                            {p[0], p[1], p[2]});
  c = c.flatten(2).transpose(1, 2).to(at::kFloat);  // [1, S', dim]
  // Fewer tokens (reference images only) are zero-padded; more (references in front of a full
  // block of frames) are cut to the call's tokens, dropping the last frames, as the reference
  // (Scope's causal VACE) does.
  if (c.size(1) < seq) c = at::constant_pad_nd(c, {0, 0, 0, seq - c.size(1)});
  if (c.size(1) > seq) c = c.narrow(1, 0, seq);
  if (shard) c = shard->mine(c, 1);
  const at::Tensor projected = project(c, vace_before_w_, vace_before_b_, vace_before8_);
  if (!out.defined()) return projected.to(at::kFloat);
  // The float32 cast written straight into the caller's buffer (the same values as .to()).
  const at::Tensor mine = shard ? shard->mine(out, 1) : out;
  mine.copy_(projected);
  return mine;
}

void CausalWanModel::vace_blocks(VaceStart& start, const at::Tensor& e0,
                                 const CrossAttnCache& cross, int64_t frames, const RankRows* shard,
                                 SideStream* side) const {
  const int64_t rows = start.hints.size(1);
  // The fused kernels attend the call's own tokens only: a sharded rank runs the plain blocks,
  // each row with its frame's modulation.
  const bool fused = fused_ && !shard;
  const at::Tensor e0_rows = shard ? e0.index_select(1, shard->frame_of_row) : e0;
  const int64_t row_frames = shard ? rows : frames;
  FusedResidual r;
  if (fused) r.x = start.c.contiguous();
  // Block i's hint: after_proj of its output (in the compute dtype) straight into the hint
  // buffer, then the mark the DiT's layer waits for.
  auto emit_hint = [&](size_t i, const at::Tensor& output) {
    {
      const ProfileScope scope("gemm");
      project_into(output, vace_after_w_[i], vace_after_b_[i],
                   i < vace_after8_.size() ? vace_after8_[i] : ops::Fp8Weight{},
                   start.hints[static_cast<int64_t>(i)]);
    }
    if (side) side->mark();
  };
  const bool settle_in_next_norm = vace_settle_in_next_norm();
  at::Tensor c = start.c;
  for (size_t i = 0; i < vace_blocks_.size(); ++i) {
    const size_t cross_index = blocks_.size() + i;
    if (!fused) {
      c = plain_block(vace_blocks_[i], c, e0_rows, start.cos, start.sin, nullptr, nullptr, -1,
                      cross, cross_index, row_frames, nullptr, shard ? shard->total : 0);
      emit_hint(i, c);
      continue;
    }
    // The hint reads a block's output: its pending FFN residual added to x, in the compute
    // dtype. This block's first norm adds the one before's anyway, so it also writes that
    // output (FusedResidual::settled), and the hint goes right after. The first block settles in
    // a pass of its own (hint 0 is the one the DiT's first layer waits for: with it waiting for
    // block 1's first norm too, turbo_fp8's VACE gained little on an H100), and so does the last
    // (LONGLIVE_VACE_SETTLE=pass: every block, as before).
    if (i > 1 && settle_in_next_norm) {
      r.settled = at::empty({1, rows, config_.dim}, r.x.options().dtype(dtype_));
      r.after_first_norm = [&emit_hint, i, output = r.settled] { emit_hint(i - 1, output); };
    }
    fused_block(vace_blocks_[i], r, e0, start.cos, start.sin, nullptr, nullptr, -1, cross,
                cross_index, frames, nullptr);
    if (i == 0 || i + 1 == vace_blocks_.size() || !settle_in_next_norm) {
      fused::NormInputs settle{.frames = frames, .normalise = false};
      const FusedResidual::Pending pending = r.take();
      pending.add_to(settle);
      {
        const ProfileScope scope("norm_modulate");
        c = fused::norm_modulate(r.x, settle, config_.eps, dtype_);
      }
      emit_hint(i, c);
    }
  }
}

at::Tensor CausalWanModel::plain_layers(at::Tensor x, const at::Tensor& e0,
                                        const at::Tensor& head_mod, const at::Tensor& cos,
                                        const at::Tensor& sin, KvCache& kv,
                                        const KvCache::Plan& plan, const CrossAttnCache& cross,
                                        int64_t frames, const at::Tensor& hints,
                                        const at::Tensor& hint_scale, const LoraSidePath* lora,
                                        bool kv_only) const {
  if (!plain_layer_range(x, 0, blocks_.size(), e0, cos, sin, kv, plan, cross, frames, hints,
                         hint_scale, lora, kv_only))
    return {};
  return plain_head_norm(x, head_mod, frames);
}

bool CausalWanModel::plain_layer_range(at::Tensor& x, size_t from, size_t to, const at::Tensor& e0,
                                       const at::Tensor& cos, const at::Tensor& sin, KvCache& kv,
                                       const KvCache::Plan& plan, const CrossAttnCache& cross,
                                       int64_t frames, const at::Tensor& hints,
                                       const at::Tensor& hint_scale, const LoraSidePath* lora,
                                       bool kv_only) const {
  for (size_t layer = from; layer < to; ++layer) {
    const bool stop = kv_only && layer + 1 == blocks_.size();
    x = plain_block(blocks_[layer], x, e0, cos, sin, &kv, &plan, static_cast<int64_t>(layer), cross,
                    layer, frames, lora, 0, stop);
    if (stop) return false;  // the last layer's K/V are written: nothing else is read
    const int64_t hint = hint_of_layer_[layer];
    if (hints.defined() && hint >= 0) x = x + hints[hint] * hint_scale;
  }
  return true;
}

at::Tensor CausalWanModel::plain_head_norm(const at::Tensor& x, const at::Tensor& head_mod,
                                           int64_t frames) const {
  const ProfileScope scope("norm_modulate");
  return ops::layer_norm_modulate(x, head_mod.narrow(2, 0, 1), head_mod.narrow(2, 1, 1), frames,
                                  config_.eps);
}

CausalWanModel::RankRows CausalWanModel::rank_rows(int64_t total, int64_t tokens_per_frame) const {
  const RowShard rows = ranks_->shard(total);
  RankRows shard{.begin = rows.begin, .count = rows.count, .total = total, .frame_of_row = {}};
  shard.frame_of_row = at::arange(rows.begin, rows.begin + rows.count,
                                  at::TensorOptions().dtype(at::kLong).device(device_))
                           .div(tokens_per_frame, "floor");
  return shard;
}

at::Tensor CausalWanModel::sharded_layers(const at::Tensor& x, const at::Tensor& e0,
                                          const at::Tensor& head_mod, const ForwardArgs& args,
                                          KvCache& kv, const KvCache::Plan& plan,
                                          const CrossAttnCache& cross, const at::Tensor& hints,
                                          const RankRows& shard) const {
  // Every row gets its frame's modulation (the plain ops then see one-token "frames").
  // kv_only is the same on every rank (each runs the same generator), so all skip the gather.
  at::Tensor out =
      plain_layers(shard.mine(x, 1).contiguous(), e0.index_select(1, shard.frame_of_row),
                   head_mod.index_select(1, shard.frame_of_row), shard.mine(args.cos, 0),
                   shard.mine(args.sin, 0), kv, plan, cross, shard.count, hints, args.vace_scale,
                   args.lora, args.kv_only);
  if (!out.defined()) return out;
  {
    const ProfileScope scope("head");
    out = ops::linear(out, head_w_, head_b_).to(at::kFloat);
  }
  const ProfileScope scope("all_gather");
  return ranks_->all_gather_rows(out, 1, shard.total);
}

at::Tensor CausalWanModel::project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                                   const ops::Fp8Weight& w8) const {
  return w8.defined() ? ops::linear_fp8(x, w8, b, dtype_) : ops::linear(x, w, b);
}

void CausalWanModel::project_into(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                                  const ops::Fp8Weight& w8, const at::Tensor& out) const {
  if (!out.is_contiguous() || out.scalar_type() != dtype_ || !b.defined()) {
    out.copy_(project(x, w, b, w8).view(out.sizes()));
    return;
  }
  if (w8.defined()) {
    ops::linear_fp8_into(x, w8, b, out);
  } else {
    ops::linear_into(x, w, b, out);
  }
}

void CausalWanModel::FusedResidual::Pending::add_to(fused::NormInputs& in) const {
  if (ffn.defined()) {
    in.residual = &ffn;
    in.gate = &gate;
  }
  if (hint.defined()) {
    in.hint = &hint;
    in.hint_scale = &hint_scale;
  }
}

// One layer of the fused loop (see fused_layer_range). The previous layer's FFN output is added by
// this layer's first norm kernel; this layer's is left pending.
void CausalWanModel::fused_block(const Block& b, FusedResidual& r, const at::Tensor& e0,
                                 const at::Tensor& cos, const at::Tensor& sin, KvCache* kv,
                                 const KvCache::Plan* plan, int64_t layer,
                                 const CrossAttnCache& cross, size_t cross_index, int64_t frames,
                                 const LoraSidePath* lora, bool kv_only) const {
  const int64_t n = config_.num_heads;
  const int64_t hd = config_.head_dim();
  const int64_t d = config_.dim;
  const int64_t seq = r.x.size(1);
  const auto l = static_cast<size_t>(layer);  // LoRA slots (lora is null for VACE blocks)
  const auto sixteen = at::TensorOptions().dtype(dtype_).device(device_);
  auto norm = [&](const fused::NormInputs& in) {
    const ProfileScope scope("norm_modulate");
    return fused::norm_modulate(r.x, in, config_.eps, dtype_);
  };
  auto gemm = [&](const at::Tensor& in, const at::Tensor& w, const at::Tensor& bias,
                  const ops::Fp8Weight& w8) {
    const ProfileScope scope("gemm");
    return project(in, w, bias, w8);
  };
  at::Tensor mod;
  {
    const ProfileScope scope("norm_modulate");
    mod = (b.modulation.unsqueeze(1) + e0).contiguous();  // [1, F, 6, dim]
  }
  const at::Tensor c0 = mod.narrow(2, 0, 1), c1 = mod.narrow(2, 1, 1), c2 = mod.narrow(2, 2, 1),
                   c3 = mod.narrow(2, 3, 1), c4 = mod.narrow(2, 4, 1);

  // An FP8 linear whose input is a norm's output (and no LoRA delta reads that output) takes it
  // quantised by the norm kernel itself.
  auto quantised_by_norm = [&](const ops::Fp8Weight& w8, std::initializer_list<LoraSlot> slots) {
    // The kernel rounds through the 16-bit type; a float32 DiT with FP8 copies keeps the pass.
    if (!w8.defined() || !fp8_norm_quant() || (dtype_ != at::kBFloat16 && dtype_ != at::kHalf))
      return false;
    for (const LoraSlot slot : slots)
      if (lora && lora->find(l, slot)) return false;
    return true;
  };
  // norm(in) then the linear (w, bias, w8), the norm writing FP8 where quantised_by_norm says;
  // `normed` gets the 16-bit norm output when it is written.
  auto norm_then_linear = [&](const fused::NormInputs& in, const at::Tensor& w,
                              const at::Tensor& bias, const ops::Fp8Weight& w8, bool fp8_input,
                              at::Tensor& normed) {
    if (!fp8_input) {
      normed = norm(in);
      return gemm(normed, w, bias, w8);
    }
    std::pair<at::Tensor, at::Tensor> quantised;
    {
      const ProfileScope scope("norm_modulate");
      quantised = fused::norm_modulate_fp8(r.x, in, config_.eps, dtype_);
    }
    const ProfileScope scope("gemm");
    return ops::linear_fp8_quantized(quantised.first, quantised.second, w8, bias, dtype_);
  };

  fused::NormInputs pre{.shift = &c0, .scale = &c1, .frames = frames};
  const FusedResidual::Pending pending = r.take();
  pending.add_to(pre);
  const at::Tensor settled = std::exchange(r.settled, {});
  if (settled.defined()) pre.settled = &settled;
  at::Tensor hidden;

  // Self-attention: one QKV GEMM, q/k normalised and rotated straight out of its output.
  const at::Tensor qkv =
      norm_then_linear(
          pre, b.qkv_w, b.qkv_b, b.qkv8,
          quantised_by_norm(b.qkv8, {LoraSlot::self_q, LoraSlot::self_k, LoraSlot::self_v}), hidden)
          .view({seq, 3 * d});
  if (const auto hook = std::exchange(r.after_first_norm, {})) hook();
  if (lora) {
    const ProfileScope scope("lora");
    for (const auto& [i, slot] : {std::pair{0, LoraSlot::self_q}, std::pair{1, LoraSlot::self_k},
                                  std::pair{2, LoraSlot::self_v}})
      if (const LoraDelta* delta = lora->find(l, slot))
        qkv.narrow(1, i * d, d).add_((*delta)(hidden).view({seq, d}));
  }
  // Which kernel attends, decided from shapes before q exists: over an FP8 cache FA3's FP8
  // kernel (sm_90, the automatic backend) or cuDNN's; over the block's own tokens (VACE blocks,
  // fp8_attention; LONGLIVE_VACE_FP8_ATTENTION=0 keeps them in 16 bits) the same two; else
  // 16-bit attention. The FP8 kernels read q (and without a cache k and v) in float8_e4m3fn at
  // scale 1, written so by the RMSNorm+RoPE launch: the bits fp8_attention::quantize gives the
  // 16-bit values, without a pass of their own.
  enum class Attend { sixteen_bit, fa3_fp8, cudnn_fp8 };
  auto heads_first = [](const at::Tensor& t) { return t.unsqueeze(0).transpose(1, 2); };
  const auto fp8 = at::TensorOptions().dtype(at::kFloat8_e4m3fn).device(device_);
  const bool fa3_fp8_here = fp8_attention_ && runtime_.attention == AttentionBackend::automatic &&
                            fa3::usable_on(device_);
  at::Tensor q = at::empty({seq, n, hd}, fp8_attention_ ? fp8 : sixteen);
  Attend attend = Attend::sixteen_bit;
  // The FP8 cache's stored K/V: views of its buffers, so this block's K/V, written below, are in
  // them by the time the FP8 kernels read them.
  at::Tensor stored_keys, stored_values;
  if (kv && fp8_attention_ && kv->storage_dtype() == at::kFloat8_e4m3fn) {
    stored_keys = kv->stored_keys(layer, *plan);
    stored_values = kv->stored_values(layer, *plan);
    if (fa3_fp8_here && fa3::accepts_fp8(heads_first(q), stored_keys, stored_values))
      attend = Attend::fa3_fp8;
    else if (fp8_attention::supported(heads_first(q), stored_keys, stored_values))
      attend = Attend::cudnn_fp8;
  } else if (!kv && fp8_attention_ && vace_fp8_attention()) {
    // k and v are laid out as q. FA3's FP8 kernel where it takes them (sm_90, head dim 128),
    // else cuDNN's (sm_90+ per fp8_attention::available: Blackwell cards, builds without FA3,
    // other head dims), as over the FP8 cache.
    const at::Tensor q4 = heads_first(q);
    if (fa3_fp8_here && fa3::accepts_fp8(q4, q4, q4))
      attend = Attend::fa3_fp8;
    else if (fp8_attention::supported(q4, q4, q4))
      attend = Attend::cudnn_fp8;
  }
  if (attend == Attend::sixteen_bit && fp8_attention_) q = at::empty({seq, n, hd}, sixteen);
  const bool own_fp8 = !kv && attend != Attend::sixteen_bit;
  // With a cache, keys and values go straight into their cache slots when those are one run in
  // the compute dtype (the steady state): the key's RMSNorm+RoPE launch also copies the values,
  // no separate K/V copy.
  const int64_t frames_in_kv = kv ? seq / kv->shape().tokens_per_frame : 0;
  const at::Tensor k_slot = kv ? kv->destination(layer, *plan, frames_in_kv, false) : at::Tensor();
  const at::Tensor v_slot = kv ? kv->destination(layer, *plan, frames_in_kv, true) : at::Tensor();
  const at::Tensor k = k_slot.defined() ? k_slot : at::empty({seq, n, hd}, own_fp8 ? fp8 : sixteen);
  const at::Tensor v8 = own_fp8 ? at::empty({seq, n, hd}, fp8) : at::Tensor();
  {
    const ProfileScope scope("rms_rope");
    fused::rms_rope(qkv.narrow(1, 0, d), b.norm_q, cos, sin, q, config_.eps);
    if (k_slot.defined() || own_fp8)
      fused::rms_rope(qkv.narrow(1, d, d), b.norm_k, cos, sin, k, config_.eps,
                      qkv.narrow(1, 2 * d, d), k_slot.defined() ? v_slot : v8);
    else
      fused::rms_rope(qkv.narrow(1, d, d), b.norm_k, cos, sin, k, config_.eps);
  }
  const at::Tensor v = qkv.narrow(1, 2 * d, d).view({1, seq, n, hd});
  if (kv && !k_slot.defined()) {
    const ProfileScope scope("kv_write");
    kv->write(layer, *plan, heads_first(k), v.transpose(1, 2), frames_in_kv);
  }
  if (kv_only && kv) return;  // the K/V are in the cache; the caller reads nothing else
  at::Tensor attended;
  {
    const ProfileScope scope("self_attention");
    const at::Tensor q4 = heads_first(q);
    if (!kv) {
      // No cache (VACE blocks): attention over the block's own tokens.
      if (attend == Attend::fa3_fp8)
        attended = fa3::attention_fp8(q4, heads_first(k), heads_first(v8)).to(dtype_);
      else if (attend == Attend::cudnn_fp8)
        attended = fp8_attention::attention(q4, heads_first(k), heads_first(v8)).to(dtype_);
      else
        attended = ops::attention(q4, heads_first(k), v.transpose(1, 2), runtime_.attention);
    } else if (attend == Attend::fa3_fp8) {
      attended = fa3::attention_fp8(q4, stored_keys, stored_values).to(dtype_);
    } else if (attend == Attend::cudnn_fp8) {
      attended = fp8_attention::attention(q4, stored_keys, stored_values).to(dtype_);
    } else {
      attended =
          ops::attention(q4, kv->keys(layer, *plan), kv->values(layer, *plan), runtime_.attention);
    }
  }
  const at::Tensor heads = attended.transpose(1, 2).reshape({1, seq, d});
  const at::Tensor y = with_lora(gemm(heads, b.o_w, b.o_b, b.o8), heads, lora, l, LoraSlot::self_o);

  // x += y * gate; normed = norm3(x); cross-attention's q projection of it.
  at::Tensor normed;
  const at::Tensor cq =
      with_lora(norm_then_linear({.residual = &y,
                                  .gate = &c2,
                                  .weight = &b.norm3_w,
                                  .bias = &b.norm3_b,
                                  .frames = frames},
                                 b.cq_w, b.cq_b, b.cq8,
                                 quantised_by_norm(b.cq8, {LoraSlot::cross_q}), normed),
                normed, lora, l, LoraSlot::cross_q)
          .view({seq, d});
  const at::Tensor q_cross = at::empty({seq, n, hd}, sixteen);
  {
    const ProfileScope scope("rms_rope");
    fused::rms_rope(cq, b.cnorm_q, at::Tensor(), at::Tensor(), q_cross, config_.eps);
  }
  {
    const ProfileScope scope("cross_attention");
    attended = ops::attention(q_cross.unsqueeze(0).transpose(1, 2), cross.k[cross_index],
                              cross.v[cross_index], runtime_.attention);
  }
  const at::Tensor cross_heads = attended.transpose(1, 2).reshape({1, seq, d});
  const at::Tensor ca =
      with_lora(gemm(cross_heads, b.co_w, b.co_b, b.co8), cross_heads, lora, l, LoraSlot::cross_o);

  // x += cross; hidden = modulate(norm(x)); FFN with GELU in the first GEMM's epilogue. Its
  // output and gate stay pending for the next norm kernel.
  r.pending.gate = mod.narrow(2, 5, 1);
  const fused::NormInputs ffn_in{.residual = &ca, .shift = &c3, .scale = &c4, .frames = frames};
  if (quantised_by_norm(b.ffn0_8, {LoraSlot::ffn0, LoraSlot::ffn2})) {
    // Both FFN GEMMs in FP8, the first one's input quantised by the norm kernel and the GELU
    // inside the second one's input quantisation.
    const at::Tensor pre_act = norm_then_linear(ffn_in, b.ffn0_w, b.ffn0_b, b.ffn0_8, true, hidden);
    const ProfileScope scope("gemm");
    r.pending.ffn = ops::linear_fp8(pre_act, b.ffn2_8, b.ffn2_b, dtype_, /*gelu_input=*/true);
    return;
  }
  hidden = norm(ffn_in);
  {
    const ProfileScope scope("gemm");
    const LoraDelta* ffn0 = lora ? lora->find(l, LoraSlot::ffn0) : nullptr;
    const LoraDelta* ffn2 = lora ? lora->find(l, LoraSlot::ffn2) : nullptr;
    if (ffn0 || ffn2) {
      // The side path needs the pre-activation (ffn.0's delta goes in before the GELU) and
      // the activation itself (ffn.2's input), so the GELU runs on its own here.
      at::Tensor pre_act = b.ffn0_8.defined() ? ops::linear_fp8(hidden, b.ffn0_8, b.ffn0_b, dtype_)
                                              : ops::linear(hidden, b.ffn0_w, b.ffn0_b);
      if (ffn0) pre_act = pre_act + (*ffn0)(hidden);
      const at::Tensor act = ops::gelu_tanh(pre_act);
      r.pending.ffn = project(act, b.ffn2_w, b.ffn2_b, b.ffn2_8);
      if (ffn2) r.pending.ffn = r.pending.ffn + (*ffn2)(act);
    } else if (b.ffn0_8.defined()) {
      // GELU inside the second GEMM's input quantisation (no separate pass).
      r.pending.ffn = ops::linear_fp8(ops::linear_fp8(hidden, b.ffn0_8, b.ffn0_b, dtype_), b.ffn2_8,
                                      b.ffn2_b, dtype_, /*gelu_input=*/true);
    } else {
      r.pending.ffn =
          ops::linear(ops::linear_gelu_tanh(hidden, b.ffn0_w, b.ffn0_b), b.ffn2_w, b.ffn2_b);
    }
  }
}

// Same maths as plain_layers with each residual add folded into the next LayerNorm: per layer
// three norm kernels, one QKV GEMM, one RMSNorm+RoPE kernel each for q and k, and the FFN's GELU
// in the GEMM epilogue. x (float32) is updated in place.
bool CausalWanModel::fused_layer_range(FusedResidual& r, size_t from, size_t to,
                                       const at::Tensor& e0, const at::Tensor& cos,
                                       const at::Tensor& sin, KvCache& kv,
                                       const KvCache::Plan& plan, const CrossAttnCache& cross,
                                       int64_t frames, const at::Tensor& hints,
                                       const at::Tensor& hint_scale, const LoraSidePath* lora,
                                       bool kv_only, const SideStream* hints_on) const {
  for (size_t layer = from; layer < to; ++layer) {
    const bool last = layer + 1 == blocks_.size();
    fused_block(blocks_[layer], r, e0, cos, sin, &kv, &plan, static_cast<int64_t>(layer), cross,
                layer, frames, lora, kv_only && last);
    if (kv_only && last) return false;  // the last layer's K/V are written: nothing else is read
    if (const int64_t hint = hint_of_layer_[layer]; hints.defined() && hint >= 0) {
      // The hint belongs after this layer's FFN residual; both stay pending for the next norm
      // kernel, which adds the hint and then the FFN output (the plain loop adds them the other
      // way round: float32 rounding apart, the same), with no pass of its own.
      if (hints_on) hints_on->wait(static_cast<size_t>(hint));
      r.pending.hint = hints[hint];
      r.pending.hint_scale = hint_scale;
    }
  }
  return true;
}

at::Tensor CausalWanModel::fused_head_norm(FusedResidual& r, const at::Tensor& head_mod,
                                           int64_t frames) const {
  const at::Tensor shift = head_mod.narrow(2, 0, 1), scale = head_mod.narrow(2, 1, 1);
  fused::NormInputs head{.shift = &shift, .scale = &scale, .frames = frames};
  const FusedResidual::Pending pending = r.take();
  pending.add_to(head);
  const ProfileScope scope("norm_modulate");
  return fused::norm_modulate(r.x, head, config_.eps, dtype_);
}

}  // namespace longlive
