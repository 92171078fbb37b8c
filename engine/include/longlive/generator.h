#pragma once
// StreamGenerator: LongLive's streaming block loop over the causal Wan DiT.
//
// Each block of `frames_per_block` latent frames is denoised in len(steps) flow-matching steps
// (each a DiT forward that attends to the KV cache of sink + recent frames), then a clean
// context pass at t = 0 writes the block's K/V into the cache. A hard prompt switch re-caches:
// one forward over the last min(window, frames so far) frames under the new prompt.
//
// Frame positions: RoPE angles use the absolute latent frame index, computed in float64 for any
// index (the reference tabulates 1024 frames and would fail past ~4 minutes of video). Attention
// only sees the sink and the recent window, so long sessions keep constant memory and cost.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "longlive/preset.h"
#include "longlive/prompt_mix.h"
#include "longlive/style_lora.h"
#include "longlive/wan_model.h"
#include "longlive/weights.h"

namespace c10 {
struct Event;
}

namespace longlive {

struct GeneratorOptions {
  WanConfig model = WanConfig::wan_1_3b();
  std::vector<double> denoising_steps = {1000, 750, 500, 250};
  bool warp_denoising_step = true;
  double timestep_shift = 5.0;
  int64_t frames_per_block = 3;
  int64_t local_attn_frames = 12;  // KV window in latent frames, sink included
  int64_t sink_frames = 3;
  bool global_sink = true;  // a re-cache keeps the sink's K/V from before the switch
  int64_t latent_height = 60;
  int64_t latent_width = 104;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // compute dtype of the DiT's matrices
  // KV cache storage: unset = the compute dtype; at::kChar = int8 with a float32 scale per token
  // and head (about half of bf16's memory; reads dequantise to the compute dtype).
  std::optional<at::ScalarType> kv_dtype;
  // Fast paths of the DiT on CUDA (fused kernels, FP8 linears, attention backend).
  DitRuntime runtime;
  double lora_alpha = 0;  // <= 0: alpha = rank
  // The preset's memory_pool: start() runs the KV plans of the first blocks and a re-cache once
  // on dummy input (CUDA only), so every allocation, cuBLAS/cuDNN plan and CUDA graph of the
  // steady stream and of a prompt switch exists before the first block: out-of-memory surfaces
  // at start, and no block (nor the first switch) stalls on a capture or a plan. Results are
  // unchanged.
  bool reserve_up_front = false;
  // Skip the re-cache frames whose K/V a global sink drops (same result, less work).
  bool skip_dropped_recache_frames = true;
  // VACE: the later denoising steps of a block add the hints of its first step instead of
  // running the VACE blocks again (the preset's vace_hint_reuse).
  bool vace_hint_reuse = false;

  void validate() const;  // ConfigError naming the field
  // Copies the preset's sampling and cache geometry (steps, warp, shift, block, window, sink,
  // global sink, VACE hint reuse). Dtypes, KV storage and fast paths depend on the device too:
  // choose_runtime() (longlive/session.h) maps those.
  void apply(const Preset& preset);
};

// Source of Gaussian noise: the initial noise of each block and the re-noise draws between
// denoising steps. Tests replay recorded draws; production uses SeededNoise.
class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  virtual at::Tensor initial(int64_t block, at::IntArrayRef shape,
                             const at::TensorOptions& options) = 0;
  virtual at::Tensor renoise(int64_t block, int64_t step, at::IntArrayRef shape,
                             const at::TensorOptions& options) = 0;
  // A copy that draws what this source would draw from now on (how an abandoned block is
  // rewound); null when the source cannot be copied, and then no block is abandoned.
  virtual std::unique_ptr<NoiseSource> snapshot() const { return nullptr; }
};

// Draws from one generator on the compute device, seeded at start().
std::unique_ptr<NoiseSource> make_seeded_noise(uint64_t seed, at::Device device);

struct GeneratorStats {
  int64_t blocks = 0;
  int64_t frames = 0;
  int64_t recaches = 0;
  int64_t abandoned_blocks = 0;  // given up mid-way by next_block_unless() (redone after)
  double last_block_ms = 0;      // host wall time of the last next_block() (includes re-cache)
  double last_recache_ms = 0;
  double reserve_ms = 0;      // host time of the last start()'s up-front reservation (0: none)
  size_t kv_cache_bytes = 0;  // self-attention KV buffers (+ int8 scales), allocated once
  // DiT forwards through CUDA graphs (runtime.cuda_graphs on CUDA), over the generator's life.
  int64_t graph_captures = 0;
  int64_t graph_replays = 0;
  int64_t graph_eager_forwards = 0;  // with graphs on: first sight of a plan, profiling, fallback
};

// VACE conditioning of the next blocks (see docs/vace.md): the encoded control frames and masks
// of one block and the strength of their hints. Reference images are part of the context (in
// front of the frames, or alone); the generated latents never contain them.
struct VaceInput {
  // [in_channels (96), F, h, w] float32, any device; h x w the latent size. As in the reference
  // (Scope's causal VACE), a context of fewer frames than the block (a reference image alone) is
  // zero-padded in token space, one of more frames (references in front of a block of control
  // frames) is cut to the block's tokens.
  at::Tensor context;
  double scale = 1.0;  // hints are added as scale * hint (0 leaves the output unchanged)
};

// Video-to-video (no VACE): the next blocks start from encoded input frames instead of pure noise.
struct V2vInput {
  at::Tensor latents;     // [1, frames_per_block, C, h, w] normalised latents (the Wan VAE's)
  double strength = 0.6;  // noise level in (0, 1]: steps whose sigma is above it are skipped
};

// What happened in one next_block(), for callers that log or trace (tests use it for parity).
struct BlockTrace {
  bool recached = false;
  std::vector<at::Tensor> step_inputs;  // x_t per denoising step
  std::vector<at::Tensor> step_flows;   // flow prediction per step
  std::vector<at::Tensor> step_x0;      // x0 per step
  at::Tensor recache_flow;              // flow of the re-cache forward (frames actually run)
  // VACE hints each step added [blocks, 1, tokens, dim] float32 (VACE on; with hint reuse the
  // later steps' are the first step's).
  std::vector<at::Tensor> step_hints;
};

class CausalWanModel;
class DitGraphRunner;
class LoraSidePath;

// A running stream handed from one generator to another (a hot preset change): the frame
// counter, the clean latents still needed (the sink's and the recent window's), the conditioning
// and the noise draws, so the next generator continues the same video. Move-only.
struct StreamState {
  int64_t frame = 0;        // frames generated so far
  int64_t blocks = 0;       // blocks generated so far (the noise source's block index)
  at::Tensor sink;          // [s, C, h, w] clean latents of frames [0, s)
  at::Tensor window;        // [n, C, h, w] clean latents of frames [frame - n, frame)
  at::Tensor conditioning;  // what the last block was conditioned on
  std::optional<at::Tensor> pending_switch;  // a cut not yet applied
  std::optional<at::Tensor> transition_from, transition_to;
  TransitionOptions transition;
  int64_t transition_done = 0;
  std::unique_ptr<NoiseSource> noise;
};
class KvCache;
struct CrossAttnCache;
class FlowMatchSampler;

class StreamGenerator {
 public:
  // weights: Wan2.1 names (strip LongLive's "model." prefix before). lora: optional PEFT LoRA,
  // merged at load.
  // vace: optional VACE weights (module file or the vace_* tensors of a VACE model), checked
  // against the DiT; set_vace() then conditions blocks on control frames.
  StreamGenerator(const WeightStore& weights, const GeneratorOptions& options,
                  const WeightStore* lora = nullptr, const WeightStore* vace = nullptr);
  // Shares an already built DiT (a hot preset change that keeps the weights): `model` must have
  // been built for options.model, device, dtype and runtime (Error otherwise).
  StreamGenerator(std::shared_ptr<const CausalWanModel> model, const GeneratorOptions& options);
  ~StreamGenerator();
  StreamGenerator(const StreamGenerator&) = delete;
  StreamGenerator& operator=(const StreamGenerator&) = delete;

  const GeneratorOptions& options() const { return options_; }

  // Starts a new video: empties the caches, conditions on the prompt, seeds the noise.
  void start(const at::Tensor& prompt_embeds, uint64_t seed);
  // Hard cut: the next block re-caches the recent frames under the new prompt first.
  void switch_prompt(const at::Tensor& prompt_embeds);
  // Soft change: new text conditioning from the next block on, without re-cache (transitions).
  void set_conditioning(const at::Tensor& prompt_embeds);
  // Moves the conditioning from the current embeddings to `target` over options.blocks blocks:
  // block k (1..N) of the transition is conditioned on interpolate(current, target, k / N), with
  // the cross-attention K/V rebuilt from it at the block edge (no re-cache, no host sync). The
  // N-th block uses `target` itself; with recache_at_end it is a hard cut to it. N = 0 is exactly
  // switch_prompt(target). A new transition, cut or set_conditioning replaces a running one; a
  // transition starts from the conditioning of the last block (or a cut still pending).
  void transition_to(const at::Tensor& target, const TransitionOptions& options);
  bool transition_active() const { return transition_.has_value(); }
  // The embeddings the last block was conditioned on (before any block: the next one's).
  const at::Tensor& conditioning() const { return current_; }
  // VACE: whether the DiT has VACE blocks, and the conditioning of the next blocks. The input
  // stays until replaced or cleared (nullopt); a live source sets one per block, before
  // next_block(). Hints are computed once per denoising step (once per block with
  // options().vace_hint_reuse) and added to their DiT layers; the clean context pass and
  // re-caches run without them. VACE steps run through the CUDA graphs like the others (the
  // context, the scale and the hints are graph inputs). Error without VACE weights;
  // ConfigError (naming the expected shape) for a context that does not fit the stream.
  bool vace_available() const;
  void set_vace(std::optional<VaceInput> input);
  const std::optional<VaceInput>& vace() const { return vace_; }
  // Video-to-video: each block starts at the first denoising step whose sigma is <= strength,
  // from (1 - sigma) * latents + sigma * noise (the block's initial noise draw), and runs the
  // remaining steps; 1 = from pure noise, as without input. Kept until replaced or cleared;
  // combines with VACE. ConfigError for latents of another shape or a strength outside (0, 1].
  void set_v2v(std::optional<V2vInput> input);
  const std::optional<V2vInput>& v2v() const { return v2v_; }
  // Style LoRAs as faders: the adapters with a nonzero strength run as a low-rank side path of
  // the DiT's block linears from the next forward on, without touching the weights. A strength
  // change rewrites scales only (a device tensor the CUDA graphs read: no recapture); LoRAs
  // adapting cross_attn.k/v make the next block rebuild the text K/V. Only a change of which
  // LoRAs are active (a strength to or from 0, a LoRA added) builds a new side path, whose
  // forwards are captured anew.
  void set_style_loras(const std::vector<ActiveStyleLora>& loras);
  bool style_loras_active() const { return lora_ != nullptr; }
  // Replaces the noise source (tests replay recorded draws). Takes effect immediately.
  void set_noise_source(std::unique_ptr<NoiseSource> noise);

  // The DiT this generator runs (a hot preset change hands it to the next generator).
  std::shared_ptr<const CausalWanModel> model() const { return model_; }
  // A new generator for `options` on this generator's DiT (weights shared, not copied) with the
  // VACE blocks of `vace` attached (bench --vace: VACE against the same preset without it).
  // WeightError when they do not fit the DiT.
  std::unique_ptr<StreamGenerator> with_vace(const WeightStore& vace,
                                             const GeneratorOptions& options) const;
  // Whether continue_with(options) can keep this generator's caches: the same weights, compute
  // dtype, FP8 linears and FP8 attention (the K/V would be what the new layer loop writes, up to
  // rounding) and the same cache geometry (window, sink, global sink, block, KV storage, size).
  bool can_continue_with(const GeneratorOptions& options) const;
  // A hot preset change that keeps the caches: runs the stream on with `model` (a DiT sharing
  // this one's weights, e.g. another layer loop) and the new sampling, keeping the KV and text
  // caches, the window, the noise and the frame counter. No re-cache: the next block is the one
  // the old preset would have generated next, sampled the new way. ConfigError when
  // can_continue_with(options) is false; Error for a model not built for the options.
  void continue_with(std::shared_ptr<const CausalWanModel> model, const GeneratorOptions& options);
  // Ends this generator's stream and hands it over (the generator must be start()ed again).
  StreamState release_state();
  // Continues a released stream: the frame counter and noise carry on, and the next block first
  // re-caches the window under the conditioning, as a prompt switch does; with a global sink and
  // the window past the sink, the sink frames are re-encoded from their latents first (their K/V
  // live in the previous generator's cache, whose layout may differ). The latent size must match.
  void resume(StreamState state);

  // Applies a pending hard cut now (re-cache under the new prompt); returns whether one ran.
  // next_block() calls it; callers may call it earlier to time the re-cache on its own.
  bool apply_pending_switch(BlockTrace* trace = nullptr);
  // Generates the next block: [1, frames_per_block, C, h, w] float32 latents on the device.
  at::Tensor next_block(BlockTrace* trace = nullptr);
  // next_block(), asking `abandon` after each denoising step whether to give the block up. With
  // CUDA the host waits for each step but the last before it queues the next, asking `abandon`
  // over and over while it waits (so `abandon` must not block): a yes takes effect after the
  // step in flight, and nothing of the block is queued after it (LONGLIVE_STEP_QUEUED_AHEAD=1:
  // the host stays one step ahead, and a yes waits for that step too). On a yes the stream is left
  // as it was before the block (the cache's bookkeeping and the noise rewound) and nullopt comes
  // back: a prompt switch or preset change that arrives mid-block then applies to this block rather
  // than the next, and the video is the one it would have been had it come before the block. A
  // block is only abandoned where it can be redone exactly: not during a transition, nor while it
  // writes sink slots (the start of the video), nor with a noise source that cannot be rewound;
  // `abandon` is then not asked. VACE and V2V inputs stay set: redo the block with the input it had
  // (VaceConditioner::feed_again; a source read again would hand over the next block's frames).
  std::optional<at::Tensor> next_block_unless(const std::function<bool()>& abandon);

  // On CUDA: recorded on the current stream once the last block's latents were final, before its
  // clean context pass was queued. A consumer of the latents on another stream (the live
  // decoder) waits on it rather than on everything queued, and so runs beside that pass. Null
  // before the first block and on the CPU; recorded again by each block.
  const c10::Event* latents_ready() const { return latents_ready_.get(); }

  bool started() const { return started_; }
  int64_t frames_generated() const { return frame_; }
  int64_t blocks_generated() const { return stats_.blocks; }
  GeneratorStats stats() const;
  // Whether the DiT runs the fused CUDA kernels / FP8 linears (requested and possible here).
  bool fused_kernels_active() const;
  bool fp8_linears_active() const;
  // Whether self-attention runs cuDNN's FP8 kernel over an FP8 KV cache.
  bool fp8_attention_active() const;
  // Whether DiT forwards go through CUDA graphs (requested, CUDA device, CUDA build).
  bool cuda_graphs_active() const { return graphs_ != nullptr; }
  const KvCache& kv_cache() const;
  const FlowMatchSampler& sampler() const;

 private:
  void recache(BlockTrace* trace);
  void reencode_sink();
  // The body of next_block() and next_block_unless() (abandon: null or asked between steps).
  std::optional<at::Tensor> generate_block(BlockTrace* trace, const std::function<bool()>* abandon);
  bool can_abandon_block() const;
  // Window frames whose latents the ring holds (after resume(), only those handed over since).
  int64_t window_held() const {
    return std::min(options_.local_attn_frames, frame_ - ring_first_frame_);
  }
  void reserve_up_front();
  void advance_transition(BlockTrace* trace);
  at::Tensor padded(const at::Tensor& embeds) const;

  struct Transition {
    at::Tensor from, to;  // [1, text_len, text_dim] on the device
    TransitionOptions options;
    int64_t done = 0;  // blocks of the transition generated so far
  };

  GeneratorOptions options_;
  std::shared_ptr<const CausalWanModel> model_;
  std::unique_ptr<DitGraphRunner> graphs_;  // declared after the model it runs
  std::unique_ptr<LoraSidePath> lora_;      // null: no style LoRA active
  bool text_kv_dirty_ = false;              // the side path of cross_attn.k/v changed
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<CrossAttnCache> cross_;
  std::unique_ptr<FlowMatchSampler> sampler_;
  std::unique_ptr<NoiseSource> noise_;
  at::Tensor recent_;  // [window, C, h, w] clean latents, frame f at f % window
  at::Tensor sink_;    // [sink, C, h, w] clean latents of the first frames (for resume())
  // The oldest frame the ring received: 0, or after resume() the first frame handed over.
  int64_t ring_first_frame_ = 0;
  std::optional<at::Tensor> pending_switch_;
  at::Tensor current_;  // embeddings the cross-attention cache was built from
  std::optional<Transition> transition_;
  std::optional<VaceInput> vace_;  // context on the device, validated
  at::Tensor vace_scale_;          // [1] float32 on the device: the graphs' scale input
  at::Tensor vace_hints_;          // [blocks, tokens, dim]: the hints a step wrote (reuse, trace)
  at::Tensor vace_embedded_;       // [1, tokens, dim] float32: the block's context, embedded
  std::optional<V2vInput> v2v_;    // latents on the device, validated
  std::unique_ptr<c10::Event> latents_ready_;
  int64_t frame_ = 0;
  bool started_ = false;
  GeneratorStats stats_;
};

// ---- One stream on several ranks (sequence parallelism, docs/multi-gpu.md) ----

enum class RankBackend {
  gloo,  // c10d's Gloo: CPU tensors, and CUDA tensors through the host (ranks may share a GPU)
  nccl,  // c10d's NCCL: one CUDA device per rank
};
RankBackend parse_rank_backend(const std::string& name);  // "gloo" | "nccl", else ConfigError
std::string to_string(RankBackend backend);
// Whether this build can make groups of `backend` (Gloo needs its headers at build time, NCCL a
// CUDA build with NCCL's).
bool rank_backend_available(RankBackend backend);

class RankGroup;

// Rank r computes its share of every block's token rows on a sharded copy of a generator's DiT
// (CausalWanModel::sharded) and the ranks all-gather the block's K/V and the output, so every
// rank makes the same frames: the video is rank 0's. Every call runs on all ranks at once, one
// thread per rank.
class ParallelStream {
 public:
  // One rank per element of `bases`: rank r runs `bases[r]`'s DiT weights (shared, not copied)
  // on its device with its options. The bases hold the same weights (one per device, or one
  // generator repeated to put several ranks on one device). Throws ConfigError when the backend
  // is unavailable.
  static std::unique_ptr<ParallelStream> create(const std::vector<const StreamGenerator*>& bases,
                                                RankBackend backend);
  // For ranks made elsewhere: `generators[r]`'s model must be rank r of a group of that size.
  explicit ParallelStream(std::vector<std::unique_ptr<StreamGenerator>> generators);
  ~ParallelStream();

  // Runs `call` on every rank's generator, each in its own thread, and waits for all; rethrows
  // the first rank's failure. A rank that fails leaves the others waiting in a collective until
  // its timeout: the stream is unusable after a failure.
  void each(const std::function<void(StreamGenerator&, int rank)>& call);
  // Every rank's next block; returns rank 0's.
  at::Tensor next_block();

  int ranks() const { return static_cast<int>(generators_.size()); }
  StreamGenerator& rank(int r) { return *generators_.at(static_cast<size_t>(r)); }
  // Bytes rank 0 has received from the other ranks so far (K/V and output rows).
  int64_t bytes_received() const;

 private:
  std::vector<std::unique_ptr<StreamGenerator>> generators_;
};

}  // namespace longlive
