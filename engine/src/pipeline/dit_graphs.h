#pragma once
// CUDA graphs for the DiT forward (the `cuda_graphs` preset flag).
//
// A forward's kernels depend on host values only through its KV plan (which cache slots it
// writes and how many keys it attends) and its shapes; the latents, timesteps and RoPE tables are
// device inputs (CausalWanModel::ForwardArgs). So one graph per plan serves every denoising step
// and the context pass of all blocks that write the same slots: in the steady state a handful of
// graphs (one per ring phase) replay for the whole session. (StreamGenerator runs re-cache
// forwards eagerly: capturing them would stall the prompt switch they belong to.) Before a replay
// the new inputs are copied into the graph's static input buffers. VACE steps are graphs of their
// own (the key has the context's shape and the hint and embedding buffers): the context and the
// scale are copied in like the latents; the hint buffer (ForwardArgs::vace_hints) and the
// context's embedding (ForwardArgs::vace_embedded) are read or written in place.
// Style LoRAs (ForwardArgs::lora) are captured too: the key has the side path's id, the graph
// reads its stacks and its device scales in place, so a fader move (LoraSidePath::set_strengths
// rewrites the scales) replays the same graph; another set of active LoRAs is a new side path,
// whose forwards are captured anew (drop_side_path_graphs() frees the old ones).
//
// Policy: a plan runs eagerly the first time it is seen (that also warms up cuBLAS/cuDNN plans,
// which must not be created during a capture), is captured the second time, and replays from then
// on. All graphs share one memory pool (they replay one at a time on one stream); outputs are
// copied out right after each replay. A capture that fails falls back to eager for that plan,
// with a warning (once), and is tried again at its next sights, three captures in all; no other
// thread synchronises the device during a capture (runtime/capture_gate.h). Eager while a
// RegionProfiler is active (its events time regions that a graph would fuse away). Bounded: at most
// kMaxGraphs graphs, then eager. Replays run in the "dit_graph" region, which the kernel profiler
// (kernel_profiler.h) files the graphs' kernels under.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "cache/cross_attn_cache.h"
#include "cache/kv_cache.h"
#include "model/causal_wan.h"

namespace longlive {

struct DitGraphStats {
  int64_t captures = 0;
  int64_t replays = 0;
  int64_t eager = 0;            // forwards run without a graph (first sight, profiling, fallback)
  int64_t failed_captures = 0;  // captures that failed (that forward ran eagerly)
};

class DitGraphRunner {
 public:
  static constexpr size_t kMaxGraphs = 32;

  // Whether this build can capture graphs (built with CUDA).
  static bool available();
  // CUDA only (throws ConfigError on another device). The model must outlive the runner.
  explicit DitGraphRunner(const CausalWanModel& model);
  ~DitGraphRunner();
  DitGraphRunner(const DitGraphRunner&) = delete;
  DitGraphRunner& operator=(const DitGraphRunner&) = delete;

  // Same result as model.run(args, kv, plan, cross), through a graph when one is captured.
  // kv and cross must stay the same objects with the same tensors for the runner's lifetime
  // (StreamGenerator owns all three); a change of their storage drops every graph.
  at::Tensor run(const CausalWanModel::ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
                 const CrossAttnCache& cross);

  // The same forward in two parts, layers [0, split) and the rest (CausalWanModel::
  // run_first_part / run_rest; each part a graph of its own once captured): `stop` is called
  // once the first part is queued (it may wait for it on the host) and true there leaves the
  // rest unqueued and returns nullopt. The model must run in parts (runs_in_parts()).
  std::optional<at::Tensor> run_in_parts(const CausalWanModel::ForwardArgs& args, KvCache& kv,
                                         const KvCache::Plan& plan, const CrossAttnCache& cross,
                                         size_t split, const std::function<bool()>& stop);

  // Makes sure `plan` has a graph (eager warm-up first if it was never seen) without replaying
  // it: the K/V it writes are left in the cache slots (harmless: bookkeeping decides what is
  // attended, and every forward writes its slots before reading them).
  // `split`: the forward in parts's graphs (run_in_parts), 0 the whole one's (run).
  void warm(const CausalWanModel::ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
            const CrossAttnCache& cross, size_t split = 0);

  // Drops every graph (e.g. before the caches are reallocated).
  void clear();
  // Drops the graphs captured with a style-LoRA side path (before that side path is freed).
  void drop_side_path_graphs();
  const DitGraphStats& stats() const { return stats_; }
  size_t graphs() const;

 private:
  struct Key {
    std::vector<int64_t> slots;  // slot_of_frame
    int64_t first_written = 0;
    int64_t valid_tokens = 0;
    std::vector<int64_t> latent_shape;
    // VACE: the context's shape (empty: no context) and the hint and embedding buffers the
    // graph writes or reads (their addresses are baked into the graph; the caller keeps them).
    std::vector<int64_t> vace_context_shape;
    const void* vace_hints = nullptr;
    const void* vace_embedded = nullptr;
    uint64_t side_path = 0;  // LoraSidePath::id() (0: none); its tensors are baked in
    bool kv_only = false;    // ForwardArgs::kv_only: another (shorter) forward
    size_t split = 0;        // run_in_parts(): the first part's layers (0: one graph)
    auto operator<=>(const Key&) const = default;
  };
  struct Entry;
  static Key key_of(const CausalWanModel::ForwardArgs& args, const KvCache::Plan& plan);
  bool storage_changed(const KvCache& kv, const CrossAttnCache& cross);
  // Once no graph is left, the next capture takes a new memory pool: the caching allocator
  // refuses to capture into a pool whose last graph was destroyed (its use count is 0).
  void renew_pool_if_unused();
  // Captures model.run(args) into entry; false (entry marked failed, warning) if it cannot.
  // The graph entry of this forward (split: in parts) with its inputs copied in, captured now if
  // this is its second sight; null: run it eagerly (first sight, profiling, a failed capture).
  // After a capture nothing ran: the caller replays it.
  Entry* graph_for(const CausalWanModel::ForwardArgs& args, KvCache& kv, const KvCache::Plan& plan,
                   const CrossAttnCache& cross, size_t split);
  // With key.split, the two parts into two graphs.
  bool record(Entry& entry, const CausalWanModel::ForwardArgs& args, KvCache& kv,
              const KvCache::Plan& plan, const CrossAttnCache& cross, size_t split = 0);

  const CausalWanModel& model_;
  std::map<Key, std::unique_ptr<Entry>> entries_;
  std::map<Key, int> seen_;
  const void* kv_storage_ = nullptr;
  const void* cross_storage_ = nullptr;
  struct Cuda;
  std::unique_ptr<Cuda> cuda_;
  DitGraphStats stats_;
  bool warned_ = false;
};

}  // namespace longlive
