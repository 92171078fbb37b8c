#include "pipeline/dit_graphs.h"

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/env.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "model/lora_side_path.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "runtime/capture_gate.h"
#include "runtime/dedicated_stream.h"
#endif

namespace longlive {

#ifdef LONGLIVE_WITH_CUDA

struct DitGraphRunner::Entry {
  CausalWanModel::ForwardArgs inputs;  // static input buffers (ordinary allocations)
  at::Tensor output;                   // lives in the graphs' shared pool
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  // A forward in parts (Key::split): the rest's graph, and what the first part leaves for it
  // (its tensors are kept: the rest's graph reads them where the first part's wrote them).
  std::unique_ptr<at::cuda::CUDAGraph> rest;
  std::optional<CausalWanModel::Midway> midway;
  bool failed = false;  // the last capture failed: eager until a later capture succeeds
  int attempts = 0;     // captures tried
};

namespace {
// A capture can fail for a reason of the moment (another thread synchronised the device during
// it, docs/vace.md): a plan whose capture failed is tried again at its next sights, this many
// captures in all, before it stays eager.
constexpr int kCaptureAttempts = 3;
}  // namespace

struct DitGraphRunner::Cuda {
  // Graphs are captured on a side stream of their own (never the pool's: another thread
  // launching there would break a capture) and replayed on the caller's, or with
  // LONGLIVE_DIT_PRIORITY=1 on a stream one priority level above it: the inputs encoded a block
  // ahead (EncodeAhead, the lowest level) then take what the DiT leaves of the GPU instead of
  // sharing it evenly, so a block's DiT is not slowed by the next block's encode.
  DedicatedStream stream;
  c10::MempoolId_t pool;
  std::optional<DedicatedStream> replay_above;
  // Where the first part of a forward in parts leaves the residual stream and the FFN output
  // pending on it for the rest: one pair per shape for every plan (the graphs replay one at a
  // time), rather than in each graph's own memory (~43 MB at 480x832). Made in a capture, from
  // the pool; dropped with the last graph.
  std::map<std::vector<int64_t>, std::pair<at::Tensor, at::Tensor>> midway;
};

bool DitGraphRunner::available() { return true; }

namespace {
// A region of its own, for the kernel profiler: a graph's kernels are attributed to the region of
// their launch. (No RegionProfiler sees it: graphs do not replay while one is active.)
void replay(at::cuda::CUDAGraph& graph, const std::optional<DedicatedStream>& on) {
  const ProfileScope scope("dit_graph");
  if (!on) {
    graph.replay();
    return;
  }
  // On `on`, ordered after what the caller queued and before what it queues next.
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream stream = on->get();
  at::cuda::CUDAEvent queued, done;
  queued.record(caller);
  queued.block(stream);
  {
    const c10::cuda::CUDAStreamGuard guard(stream);
    graph.replay();
  }
  done.record(stream);
  done.block(caller);
}

bool replay_above_lowest() { return env_is("LONGLIVE_DIT_PRIORITY", "1"); }
}  // namespace

DitGraphRunner::DitGraphRunner(const CausalWanModel& model) : model_(model) {
  if (!model.device().is_cuda()) {
    throw ConfigError(
        fmt::format("CUDA graphs need a CUDA device (the DiT runs on {})", model.device().str()));
  }
  cuda_.reset(new Cuda{DedicatedStream(model.device().index(), StreamPriority::lowest),
                       at::cuda::graph_pool_handle(),
                       {},
                       {}});
  if (replay_above_lowest())
    cuda_->replay_above.emplace(model.device().index(), StreamPriority::above_lowest);
}

#else

struct DitGraphRunner::Entry {};
struct DitGraphRunner::Cuda {};

bool DitGraphRunner::available() { return false; }

DitGraphRunner::DitGraphRunner(const CausalWanModel& model) : model_(model) {
  throw ConfigError("CUDA graphs need a build with CUDA (LONGLIVE_CUDA=ON)");
}

#endif

DitGraphRunner::~DitGraphRunner() = default;

size_t DitGraphRunner::graphs() const {
  size_t n = 0;
#ifdef LONGLIVE_WITH_CUDA
  for (const auto& [key, entry] : entries_) n += entry->graph ? 1 : 0;
#endif
  return n;
}

void DitGraphRunner::clear() {
  entries_.clear();
  seen_.clear();
  renew_pool_if_unused();
}

void DitGraphRunner::drop_side_path_graphs() {
  std::erase_if(entries_, [](const auto& e) { return e.first.side_path != 0; });
  std::erase_if(seen_, [](const auto& e) { return e.first.side_path != 0; });
  renew_pool_if_unused();
}

void DitGraphRunner::renew_pool_if_unused() {
#ifdef LONGLIVE_WITH_CUDA
  // (Measured on the GPU box: a bench that baked its faders dropped every graph, and each later
  // capture failed in CUDACachingAllocator's create_or_incref_pool.)
  if (cuda_ && graphs() == 0) {
    cuda_->midway.clear();
    cuda_->pool = at::cuda::graph_pool_handle();
  }
#endif
}

namespace {
// A graph's output lives in the graphs' shared pool, which the next replay may reuse. A kv_only
// forward has none.
at::Tensor copied_out(const at::Tensor& output) {
  return output.defined() ? output.clone() : at::Tensor();
}
}  // namespace

DitGraphRunner::Key DitGraphRunner::key_of(const CausalWanModel::ForwardArgs& args,
                                           const KvCache::Plan& plan) {
  return Key{plan.slot_of_frame,
             plan.first_written,
             plan.valid_tokens,
             args.latents.sizes().vec(),
             args.vace_context.defined() ? args.vace_context.sizes().vec() : std::vector<int64_t>{},
             args.vace_hints.defined() ? args.vace_hints.const_data_ptr() : nullptr,
             args.vace_embedded.defined() ? args.vace_embedded.const_data_ptr() : nullptr,
             args.lora ? args.lora->id() : 0,
             args.kv_only};
}

bool DitGraphRunner::storage_changed(const KvCache& kv, const CrossAttnCache& cross) {
  const void* kv_storage = kv.storage_id();
  const void* cross_storage = cross.empty() ? nullptr : cross.k.front().const_data_ptr();
  const bool changed = kv_storage != kv_storage_ || cross_storage != cross_storage_;
  kv_storage_ = kv_storage;
  cross_storage_ = cross_storage;
  return changed;
}

#ifdef LONGLIVE_WITH_CUDA
DitGraphRunner::Entry* DitGraphRunner::graph_for(const CausalWanModel::ForwardArgs& args,
                                                 KvCache& kv, const KvCache::Plan& plan,
                                                 const CrossAttnCache& cross, size_t split) {
  if (RegionProfiler::active() || cross.empty()) return nullptr;
  // Graphs hold the addresses of the caches: new storage invalidates every one of them.
  if (storage_changed(kv, cross)) clear();
  Key key = key_of(args, plan);
  key.split = split;
  if (const auto it = entries_.find(key); it != entries_.end()) {
    Entry& entry = *it->second;
    if (entry.failed)
      return entry.attempts < kCaptureAttempts && record(entry, args, kv, plan, cross, split)
                 ? &entry
                 : nullptr;
    entry.inputs.latents.copy_(args.latents);
    entry.inputs.timesteps.copy_(args.timesteps);
    entry.inputs.cos.copy_(args.cos);
    entry.inputs.sin.copy_(args.sin);
    if (args.vace_context.defined()) entry.inputs.vace_context.copy_(args.vace_context);
    if (args.vace_scale.defined()) entry.inputs.vace_scale.copy_(args.vace_scale);
    return &entry;
  }
  // First sight runs eagerly: it creates the cuBLAS/cuDNN plans a capture must not create.
  if (seen_[key]++ == 0 || entries_.size() >= kMaxGraphs) return nullptr;
  auto entry = std::make_unique<Entry>();
  Entry& e = *entry;
  entries_.emplace(key, std::move(entry));
  return record(e, args, kv, plan, cross, split) ? &e : nullptr;
}
#endif

at::Tensor DitGraphRunner::run(const CausalWanModel::ForwardArgs& args, KvCache& kv,
                               const KvCache::Plan& plan, const CrossAttnCache& cross) {
#ifdef LONGLIVE_WITH_CUDA
  auto eager = [&] {
    ++stats_.eager;
    return model_.run(args, kv, plan, cross);
  };
  // After a capture too: capturing executed nothing, so its forward is the graph's first replay.
  auto replayed = [&](Entry& entry) {
    replay(*entry.graph, cuda_->replay_above);
    ++stats_.replays;
    return copied_out(entry.output);
  };
  Entry* entry = graph_for(args, kv, plan, cross, 0);
  return entry ? replayed(*entry) : eager();
#else
  (void)args, (void)kv, (void)plan, (void)cross;
  throw Error("CUDA graphs need a build with CUDA");
#endif
}

std::optional<at::Tensor> DitGraphRunner::run_in_parts(const CausalWanModel::ForwardArgs& args,
                                                       KvCache& kv, const KvCache::Plan& plan,
                                                       const CrossAttnCache& cross, size_t split,
                                                       const std::function<bool()>& stop) {
#ifdef LONGLIVE_WITH_CUDA
  auto eager = [&] {
    ++stats_.eager;
    return model_.run_unless(args, kv, plan, cross, split, stop);
  };
  auto replayed = [&](Entry& entry) -> std::optional<at::Tensor> {
    replay(*entry.graph, cuda_->replay_above);
    if (stop()) return std::nullopt;
    replay(*entry.rest, cuda_->replay_above);
    ++stats_.replays;
    return copied_out(entry.output);
  };
  Entry* entry = graph_for(args, kv, plan, cross, split);
  return entry ? replayed(*entry) : eager();
#else
  (void)args, (void)kv, (void)plan, (void)cross, (void)split, (void)stop;
  throw Error("CUDA graphs need a build with CUDA");
#endif
}

void DitGraphRunner::warm(const CausalWanModel::ForwardArgs& args, KvCache& kv,
                          const KvCache::Plan& plan, const CrossAttnCache& cross, size_t split) {
#ifdef LONGLIVE_WITH_CUDA
  if (cross.empty()) return;
  if (storage_changed(kv, cross)) clear();
  Key key = key_of(args, plan);
  key.split = split;
  if (entries_.count(key) != 0) return;
  if (seen_[key]++ == 0) {
    ++stats_.eager;
    if (split == 0)
      model_.run(args, kv, plan, cross);
    else
      model_.run_unless(args, kv, plan, cross, split, [] { return false; });
  }
  if (entries_.size() >= kMaxGraphs) return;
  auto entry = std::make_unique<Entry>();
  Entry& e = *entry;
  entries_.emplace(key, std::move(entry));
  record(e, args, kv, plan, cross, split);
#else
  (void)args, (void)kv, (void)plan, (void)cross, (void)split;
  throw Error("CUDA graphs need a build with CUDA");
#endif
}

bool DitGraphRunner::record(Entry& entry, const CausalWanModel::ForwardArgs& args, KvCache& kv,
                            const KvCache::Plan& plan, const CrossAttnCache& cross, size_t split) {
#ifdef LONGLIVE_WITH_CUDA
  auto cloned = [](const at::Tensor& t) { return t.defined() ? t.clone() : at::Tensor(); };
  entry.inputs = {.latents = args.latents.clone(),
                  .timesteps = args.timesteps.clone(),
                  .cos = args.cos.clone(),
                  .sin = args.sin.clone(),
                  .lora = args.lora,  // read in place (see Key)
                  .vace_context = cloned(args.vace_context),
                  .vace_embedded = args.vace_embedded,  // the caller's buffer, in place
                  .vace_hints = args.vace_hints,        // the caller's buffer, in place (see Key)
                  .vace_scale = cloned(args.vace_scale),
                  .kv_only = args.kv_only};
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(model_.device().index());
  {
    // The capture stream starts after the work queued so far (the input copies above).
    at::cuda::CUDAEvent queued;
    queued.record(caller);
    queued.block(cuda_->stream.get());
  }
  entry.graph = std::make_unique<at::cuda::CUDAGraph>();
  entry.rest.reset();
  entry.midway.reset();
  ++entry.attempts;
  try {
    // No other thread synchronises the device while this stream captures (capture_gate.h).
    const auto gate = hold_for_capture(model_.device().index());
    const c10::cuda::CUDAStreamGuard guard(cuda_->stream.get());
    // Thread-local mode: other threads (decode, UI) keep using CUDA during the capture.
    // Captures `forward` into `graph` (ended either way).
    auto capture = [&](at::cuda::CUDAGraph& graph, const auto& forward) {
      graph.capture_begin(cuda_->pool, cudaStreamCaptureModeThreadLocal);
      try {
        forward();
      } catch (...) {
        try {
          graph.capture_end();
        } catch (...) {
        }
        throw;
      }
      graph.capture_end();
    };
    if (split == 0) {
      capture(*entry.graph, [&] { entry.output = model_.run(entry.inputs, kv, plan, cross); });
    } else {
      capture(*entry.graph, [&] {
        CausalWanModel::Midway midway = model_.run_first_part(entry.inputs, kv, plan, cross, split);
        // The two large tensors moved into the shared pair (the first part's own are freed).
        if (at::Tensor& ffn = midway.r.pending.ffn; !midway.stopped && ffn.defined()) {
          auto& [x, pending] = cuda_->midway[midway.r.x.sizes().vec()];
          if (!x.defined()) x = at::empty_like(midway.r.x);
          if (!pending.defined() || pending.sizes() != ffn.sizes() ||
              pending.scalar_type() != ffn.scalar_type())
            pending = at::empty_like(ffn);
          x.copy_(midway.r.x);
          pending.copy_(ffn);
          midway.r.x = x;
          ffn = pending;
        }
        entry.midway = std::move(midway);
      });
      entry.rest = std::make_unique<at::cuda::CUDAGraph>();
      // On a copy: run_rest takes the pending tensors out, the entry keeps them (and their
      // memory) for the rest's graph to read.
      CausalWanModel::Midway midway = *entry.midway;
      capture(*entry.rest,
              [&] { entry.output = model_.run_rest(midway, entry.inputs, kv, plan, cross); });
    }
  } catch (const std::exception& error) {
    entry.graph.reset();
    entry.rest.reset();
    entry.midway.reset();
    entry.output = at::Tensor();
    entry.failed = true;
    ++stats_.failed_captures;
    (void)cudaGetLastError();  // capture errors are not sticky; clear the last-error slot
    if (!warned_) {
      log::warn(
          "CUDA graph capture of a DiT forward failed ({}); that plan runs eagerly{}", error.what(),
          entry.attempts < kCaptureAttempts ? " until a capture at a later sight succeeds" : "");
      warned_ = true;
    }
    return false;
  }
  entry.failed = false;
  ++stats_.captures;
  return true;
#else
  (void)entry, (void)args, (void)kv, (void)plan, (void)cross, (void)split;
  return false;
#endif
}

}  // namespace longlive
