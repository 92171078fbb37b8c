#include "cache/kv_cache.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/env.h"
#include "longlive/error.h"
#include "model/ops.h"

namespace longlive {

KvCache::KvCache(const KvCacheShape& shape, const at::TensorOptions& options,
                 std::optional<at::ScalarType> storage)
    : shape_(shape), compute_dtype_(options.dtype().toScalarType()) {
  const at::ScalarType dtype = storage.value_or(compute_dtype_);
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kChar &&
      dtype != at::kFloat8_e4m3fn) {
    throw ConfigError(
        fmt::format("KV cache: storage dtype {} is not supported (expected float32, float16, "
                    "bfloat16, int8 or float8_e4m3fn)",
                    c10::toString(dtype)));
  }
  if (shape.sink_frames < 0 || shape.window_frames <= shape.sink_frames) {
    throw ConfigError(
        fmt::format("KV cache: window of {} frames must be larger than the sink of {} frames",
                    shape.window_frames, shape.sink_frames));
  }
  const int64_t tokens = shape.window_frames * shape.tokens_per_frame;
  k_ = at::zeros({shape.layers, shape.heads, tokens, shape.head_dim}, options.dtype(dtype));
  v_ = at::zeros_like(k_);
  if (dtype == at::kChar) {
    k_scale_ = at::zeros({shape.layers, shape.heads, tokens, 1}, options.dtype(at::kFloat));
    v_scale_ = at::zeros_like(k_scale_);
  }
  slot_frame_.assign(static_cast<size_t>(shape.window_frames), -1);
  fp8_direct_ = !env_is("LONGLIVE_FP8_KV_DIRECT", "0");
}

void KvCache::reset() {
  std::fill(slot_frame_.begin(), slot_frame_.end(), -1);
  ring_origin_ = -1;
  const int64_t sink_tokens = sink_slots() * shape_.tokens_per_frame;
  if (sink_tokens == 0) return;
  for (const at::Tensor* buffer : {&k_, &v_, &k_scale_, &v_scale_}) {
    if (buffer->defined()) buffer->narrow(2, 0, sink_tokens).zero_();
  }
}

int64_t KvCache::ring_slot(int64_t frame) const {
  const int64_t origin = ring_origin_ >= 0 ? ring_origin_ : sink_slots();
  const int64_t ring = ring_slots();
  return sink_slots() + ((frame - origin) % ring + ring) % ring;
}

KvCache::Plan KvCache::plan(int64_t start_frame, int64_t num_frames, KvWriteKind kind,
                            bool protect_sink) const {
  Plan plan;
  plan.start_frame = start_frame;
  plan.num_frames = num_frames;
  plan.slot_of_frame.assign(static_cast<size_t>(num_frames), -1);
  const bool recache = kind == KvWriteKind::recache;
  // Frames that land in sink slots: the true first frames of the video, or, in a re-cache,
  // the first `sink` frames of the re-cached window (the reference writes the window from slot 0).
  const int64_t sink_hits = recache
                                ? std::min(num_frames, sink_slots())
                                : std::clamp(sink_slots() - start_frame, int64_t{0}, num_frames);
  // The reference's "recompute" (a call that ends at or before its pointer and starts past frame
  // 0) never writes sink slots; a re-cache under a global sink is one, a block's later calls too.
  const bool recompute = start_frame > 0 && (recache || kind == KvWriteKind::block_repeat);
  const bool keep_sink = recompute && (kind == KvWriteKind::block_repeat || protect_sink);
  for (int64_t i = 0; i < num_frames; ++i) {
    const int64_t frame = start_frame + i;
    if (i < sink_hits) {
      if (!keep_sink) plan.slot_of_frame[i] = recache ? i : frame;
    } else {
      plan.slot_of_frame[i] = ring_slot(frame);
    }
  }
  if (recache) {
    while (plan.first_written < num_frames && plan.slot_of_frame[plan.first_written] < 0)
      ++plan.first_written;
  }

  // Keys: every sink slot, then every slot that holds a frame after this forward's writes.
  auto frames_after = slot_frame_;
  for (int64_t i = 0; i < num_frames; ++i) {
    if (plan.slot_of_frame[i] >= 0) frames_after[plan.slot_of_frame[i]] = start_frame + i;
  }
  int64_t last_used = sink_slots() - 1;
  for (size_t s = 0; s < frames_after.size(); ++s) {
    if (frames_after[s] >= 0) last_used = std::max(last_used, static_cast<int64_t>(s));
  }
  for (int64_t s = sink_slots(); s <= last_used; ++s) {
    if (frames_after[s] < 0) {
      throw Error(fmt::format("KV cache: slot {} is empty below used slot {} (frames {}+{})", s,
                              last_used, start_frame, num_frames));
    }
  }
  plan.valid_tokens = (last_used + 1) * shape_.tokens_per_frame;
  return plan;
}

void KvCache::commit(const Plan& plan) {
  for (int64_t i = 0; i < plan.num_frames; ++i) {
    if (plan.slot_of_frame[i] >= 0) slot_frame_[plan.slot_of_frame[i]] = plan.start_frame + i;
  }
}

void KvCache::restore_slot_frames(std::vector<int64_t> frames) {
  if (frames.size() != slot_frame_.size())
    throw Error(fmt::format("KV cache: {} slots restored into a cache of {}", frames.size(),
                            slot_frame_.size()));
  slot_frame_ = std::move(frames);
}

at::Tensor KvCache::destination(int64_t layer, const Plan& plan, int64_t frames_in_kv,
                                bool values) const {
  const int64_t offset = plan.num_frames - frames_in_kv;
  const bool fp8_slots = fp8_direct_ && k_.scalar_type() == at::kFloat8_e4m3fn;
  if (k_scale_.defined() || (k_.scalar_type() != compute_dtype_ && !fp8_slots) ||
      frames_in_kv <= 0 || offset < 0)
    return {};
  const int64_t first = plan.slot_of_frame[offset];
  if (first < 0) return {};
  for (int64_t i = 1; i < frames_in_kv; ++i)
    if (plan.slot_of_frame[offset + i] != first + i) return {};
  const int64_t t = shape_.tokens_per_frame;
  return (values ? v_ : k_)[layer].narrow(1, first * t, frames_in_kv * t).transpose(0, 1);
}

void KvCache::write(int64_t layer, const Plan& plan, const at::Tensor& k, const at::Tensor& v,
                    int64_t frames_in_kv) {
  // k/v hold the last `frames_in_kv` frames of the forward (skipped leading frames excluded).
  const int64_t offset = plan.num_frames - frames_in_kv;
  const int64_t t = shape_.tokens_per_frame;
  // Copy runs of frames that are contiguous in both source and destination with one copy each.
  int64_t i = offset;
  while (i < plan.num_frames) {
    const int64_t slot = plan.slot_of_frame[i];
    if (slot < 0) {
      ++i;
      continue;
    }
    int64_t run = 1;
    while (i + run < plan.num_frames && plan.slot_of_frame[i + run] == slot + run) ++run;
    const int64_t src = (i - offset) * t;
    store(k_, k_scale_, layer, slot * t, k[0].narrow(1, src, run * t));
    store(v_, v_scale_, layer, slot * t, v[0].narrow(1, src, run * t));
    i += run;
  }
}

void KvCache::store(const at::Tensor& buffer, const at::Tensor& scales, int64_t layer,
                    int64_t token, const at::Tensor& src) {
  const int64_t count = src.size(1);
  at::Tensor dst = buffer[layer].narrow(1, token, count);
  if (scales.defined()) {
    ops::quantize_int8(src, dst, scales[layer].narrow(1, token, count));
  } else if (dst.scalar_type() == at::kFloat8_e4m3fn) {
    // Scale 1, saturated (FP8 attention reads these directly; see runtime/fp8_attention.h).
    dst.copy_(src.clamp(-kFp8Max, kFp8Max));
  } else {
    dst.copy_(src);
  }
}

at::Tensor KvCache::load(const at::Tensor& buffer, const at::Tensor& scales, int64_t layer,
                         int64_t token, int64_t count) const {
  const at::Tensor stored = buffer[layer].narrow(1, token, count);
  if (scales.defined())
    return ops::dequantize_int8(stored, scales[layer].narrow(1, token, count), compute_dtype_);
  // Same dtype: a view, no copy.
  return stored.scalar_type() == compute_dtype_ ? stored : stored.to(compute_dtype_);
}

at::Tensor KvCache::keys(int64_t layer, const Plan& plan) const {
  return load(k_, k_scale_, layer, 0, plan.valid_tokens).unsqueeze(0);
}

at::Tensor KvCache::values(int64_t layer, const Plan& plan) const {
  return load(v_, v_scale_, layer, 0, plan.valid_tokens).unsqueeze(0);
}

at::Tensor KvCache::stored_keys(int64_t layer, const Plan& plan) const {
  return k_[layer].narrow(1, 0, plan.valid_tokens).unsqueeze(0);
}

at::Tensor KvCache::stored_values(int64_t layer, const Plan& plan) const {
  return v_[layer].narrow(1, 0, plan.valid_tokens).unsqueeze(0);
}

at::Tensor KvCache::positional(int64_t layer, bool values) const {
  const at::Tensor& buffer = values ? v_ : k_;
  const at::Tensor& scales = values ? v_scale_ : k_scale_;
  const int64_t t = shape_.tokens_per_frame;
  std::vector<int64_t> order;
  for (int64_t s = 0; s < sink_slots(); ++s) order.push_back(s);
  std::vector<int64_t> ring;
  for (int64_t s = sink_slots(); s < shape_.window_frames; ++s) {
    if (slot_frame_[s] >= 0) ring.push_back(s);
  }
  std::sort(ring.begin(), ring.end(),
            [&](int64_t a, int64_t b) { return slot_frame_[a] < slot_frame_[b]; });
  order.insert(order.end(), ring.begin(), ring.end());
  std::vector<at::Tensor> parts;
  for (int64_t s : order) parts.push_back(load(buffer, scales, layer, s * t, t));
  // [heads, tokens, dim] -> [1, tokens, heads, dim]
  return at::cat(parts, 1).permute({1, 0, 2}).unsqueeze(0);
}

size_t KvCache::bytes() const {
  size_t total = 2 * k_.numel() * k_.element_size();
  if (k_scale_.defined()) total += 2 * k_scale_.numel() * k_scale_.element_size();
  return total;
}

}  // namespace longlive
