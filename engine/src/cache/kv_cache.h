#pragma once
// Self-attention KV cache of the streaming DiT: static buffers of sink + window frames per layer,
// allocated once and written in place.
//
// Layout per layer: [1, heads, (sink + ring) * tokens_per_frame, head_dim]. The first `sink_frames`
// frame slots hold the attention sink; the remaining `window - sink` slots are a ring indexed by
// (frame - sink) mod ring_frames, so a new block overwrites the oldest frames instead of shifting
// the whole cache (the reference copies the window left on every block). Attention is invariant
// to the order of its keys, so the ring order gives the reference's result; `positional()`
// returns the reference's order for tests. Which frame sits in which slot is host bookkeeping,
// so nothing here reads device memory (no host sync inside a denoising step).
//
// Storage: the compute dtype by default, another float dtype, int8 (the low_memory preset) with
// one float32 scale per token and head (symmetric, amax / 127), or float8_e4m3fn (scale 1,
// saturated at +-448: what FP8 attention reads). Reads return the compute dtype;
// stored_keys/values return the storage itself.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace longlive {

struct KvCacheShape {
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t tokens_per_frame = 0;
  int64_t sink_frames = 0;
  int64_t window_frames = 0;  // sink included, like the reference's local_attn_size
};

// Where the K/V of one forward go. The reference (LongLive v1.0) decides per call, from its cache
// pointers, whether a forward is a block's first call (pointers advance, every frame written), a
// later call of the same block or a re-cache ("recompute": once the forward starts past frame 0,
// sink slots are protected), and these kinds reproduce its decisions:
enum class KvWriteKind {
  block,         // first denoising step of a new block
  block_repeat,  // later steps and the clean context pass of that block: once past frame 0, the
                 // frames of the block that sit in sink slots keep the first step's K/V (only
                 // when the sink is longer than a block)
  recache,       // the re-cache forward after a prompt switch (its first frames may hit sink
                 // slots); with a global sink, sink slots are kept only when the re-cached
                 // window starts past frame 0 (the window was full before the switch)
};

class KvCache {
 public:
  // One frame of a forward pass and the slot it is written to (-1: not written).
  struct Plan {
    int64_t start_frame = 0;
    int64_t num_frames = 0;
    // Re-cache only: leading frames whose K/V are dropped and whose output nobody reads, so
    // the forward may skip them (0 for block kinds, whose every frame is a query).
    int64_t first_written = 0;
    std::vector<int64_t> slot_of_frame;  // per frame of the forward (-1: computed, not written)
    // Keys attended: buffer[..., 0:valid_tokens, :]. Always covers every sink slot, as the
    // reference attends its whole sink (zeros while not yet written).
    int64_t valid_tokens = 0;
  };

  // options: device and compute dtype. storage: dtype of the buffers (at::kChar = int8 with
  // per-token scales); defaults to the compute dtype.
  KvCache(const KvCacheShape& shape, const at::TensorOptions& options,
          std::optional<at::ScalarType> storage = std::nullopt);

  const KvCacheShape& shape() const { return shape_; }
  int64_t capacity_frames() const { return shape_.window_frames; }

  // Empties the cache: bookkeeping, and zeros in the sink slots (attended before they are
  // written when the sink is longer than a block, as in the reference's zero-filled cache).
  void reset();

  // Plans a forward over frames [start_frame, start_frame + num_frames). With protect_sink
  // (global sink), frames of a re-cache that starts past frame 0 and would land in sink slots
  // are dropped.
  Plan plan(int64_t start_frame, int64_t num_frames, KvWriteKind kind, bool protect_sink) const;
  // Records the plan's writes in the bookkeeping (call once per forward, after planning).
  void commit(const Plan& plan);

  // Writes the K/V of the written frames. k, v: [1, heads, num_frames * tokens, head_dim] for
  // the whole forward (frames before plan.first_written included or not: see `skipped`).
  void write(int64_t layer, const Plan& plan, const at::Tensor& k, const at::Tensor& v,
             int64_t frames_in_kv);
  // Where write() would put the keys (values: the values) of the last `frames_in_kv` frames,
  // as a [tokens, heads, head_dim] view of the cache itself, when they land in one contiguous run
  // of slots and are stored in the compute dtype (or in FP8 with set_fp8_direct()); undefined
  // otherwise (int8, FP8 with set_fp8_direct(false), slots not in one run).
  // The fused path's RMSNorm+RoPE kernel writes both there directly instead of calling write().
  at::Tensor destination(int64_t layer, const Plan& plan, int64_t frames_in_kv, bool values) const;
  // Whether destination() also hands out the slots of a float8_e4m3fn cache (the RMSNorm+RoPE
  // kernel then converts as write() does: saturated at +-448, scale 1). On by default: the same
  // bytes as write() and 6 ms less per turbo_fp8 block on an H100 (2026-12-05);
  // LONGLIVE_FP8_KV_DIRECT=0 turns it off.
  void set_fp8_direct(bool on) { fp8_direct_ = on; }
  // Keys/values attended by a forward with this plan: [1, heads, valid_tokens, head_dim].
  at::Tensor keys(int64_t layer, const Plan& plan) const;
  at::Tensor values(int64_t layer, const Plan& plan) const;
  // The same keys/values in the storage dtype, without conversion (views of the buffers).
  at::Tensor stored_keys(int64_t layer, const Plan& plan) const;
  at::Tensor stored_values(int64_t layer, const Plan& plan) const;
  static constexpr double kFp8Max = 448.0;  // float8_e4m3fn storage saturates here

  // Frame stored in each slot (-1 empty), for tests and diagnostics.
  const std::vector<int64_t>& slot_frames() const { return slot_frame_; }
  // Puts back the bookkeeping slot_frames() returned: a block given up mid-way leaves its slots
  // as if never written (their contents are rewritten before anything attends them again).
  void restore_slot_frames(std::vector<int64_t> frames);
  // The frame that lands in the first ring slot (default: the first frame after the sink). A
  // stream resumed with part of its window re-caches frames from the middle of the video; moving
  // the origin to them keeps the written slots contiguous (attention does not care which slot a
  // frame sits in: its keys carry their position). reset() restores the default.
  void set_ring_origin(int64_t frame) { ring_origin_ = frame; }
  // K or V of a layer in the reference's positional order (sink slots, then the other frames
  // oldest first): [1, tokens, heads, head_dim].
  at::Tensor positional(int64_t layer, bool values) const;

  at::ScalarType storage_dtype() const { return k_.scalar_type(); }
  // Identifies the buffers (their address): captured CUDA graphs are only valid for them.
  const void* storage_id() const { return k_.const_data_ptr(); }
  bool quantized() const { return k_scale_.defined(); }
  size_t bytes() const;  // buffers and scales

 private:
  int64_t sink_slots() const { return shape_.sink_frames; }
  int64_t ring_slots() const { return shape_.window_frames - shape_.sink_frames; }
  int64_t ring_slot(int64_t frame) const;
  void store(const at::Tensor& buffer, const at::Tensor& scales, int64_t layer, int64_t token,
             const at::Tensor& src);

  at::Tensor load(const at::Tensor& buffer, const at::Tensor& scales, int64_t layer, int64_t token,
                  int64_t count) const;

  KvCacheShape shape_;
  bool fp8_direct_ = false;
  int64_t ring_origin_ = -1;  // -1: sink_slots()
  at::Tensor k_;              // [layers, heads, slots * tokens, head_dim]
  at::Tensor v_;
  at::Tensor k_scale_;  // int8 storage only: [layers, heads, slots * tokens, 1] float32
  at::Tensor v_scale_;
  at::ScalarType compute_dtype_;
  std::vector<int64_t> slot_frame_;
};

}  // namespace longlive
