#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <optional>
#include <thread>

#include "cache/cross_attn_cache.h"
#include "cache/kv_cache.h"
#include "core/env.h"
#include "core/event_poll.h"
#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "model/causal_wan.h"
#include "model/lora_side_path.h"
#include "pipeline/dit_graphs.h"
#include "sampler/flow_match.h"

namespace longlive {
namespace {

// The VACE context's embedding (patch embedding, before_proj) once per block, by its first step,
// unless LONGLIVE_VACE_PROLOGUE=step (every step from the context, as before; the same values).
// Read at each block (one getenv against a block of DiT forwards), so a test can switch it.
bool vace_embedding_once() { return !env_is("LONGLIVE_VACE_PROLOGUE", "step"); }

// How a block's denoising steps take its VACE input: with hint reuse the first step computes the
// hints into `hints` and the later steps add them from there (a trace reads them there too); with
// full hints the first step embeds the context into `embedded` and the later steps start from
// there (unless LONGLIVE_VACE_PROLOGUE=step). The buffers are the generator's, kept across blocks
// (the graphs read and write them in place) and allocated again only for another shape.
struct VaceSteps {
  at::Tensor context, scale, hints, embedded;
  bool reuse = false, embed_once = false, traced = false;

  void add_to(CausalWanModel::ForwardArgs& args, bool first_step) const {
    args.vace_scale = scale;
    if (first_step || (!reuse && !embed_once)) args.vace_context = context;
    if (embed_once) args.vace_embedded = embedded;
    if (reuse || traced) args.vace_hints = hints;
  }
};

VaceSteps vace_steps(const CausalWanModel& model, const GeneratorOptions& options,
                     const at::Tensor& context, const at::Tensor& scale, at::Tensor& hints,
                     at::Tensor& embedded, bool traced) {
  VaceSteps steps;
  steps.context = context;
  steps.scale = scale;
  steps.reuse = options.vace_hint_reuse;
  steps.embed_once = !steps.reuse && vace_embedding_once();
  steps.traced = traced;
  const auto& p = options.model.patch;
  const int64_t tokens =
      options.frames_per_block * (options.latent_height / p[1]) * (options.latent_width / p[2]);
  auto keep = [&](at::Tensor& buffer, at::IntArrayRef shape, at::ScalarType dtype) {
    if (!buffer.defined() || buffer.sizes() != shape || buffer.scalar_type() != dtype)
      buffer = at::empty(shape, at::TensorOptions().dtype(dtype).device(options.device));
  };
  if (steps.reuse || traced)
    keep(hints, {model.vace_layout().blocks(), tokens, options.model.dim}, model.hint_dtype());
  if (steps.embed_once) keep(embedded, {1, tokens, options.model.dim}, at::kFloat);
  steps.hints = hints;
  steps.embedded = embedded;
  return steps;
}

class SeededNoise final : public NoiseSource {
 public:
  SeededNoise(uint64_t seed, at::Device device)
      : generator_(device.is_cpu() ? at::detail::createCPUGenerator(seed)
                                   : at::globalContext().defaultGenerator(device).clone()) {
    generator_.set_current_seed(seed);
  }
  at::Tensor initial(int64_t, at::IntArrayRef shape, const at::TensorOptions& options) override {
    return at::randn(shape, generator_, options);
  }
  at::Tensor renoise(int64_t, int64_t, at::IntArrayRef shape,
                     const at::TensorOptions& options) override {
    return at::randn(shape, generator_, options);
  }
  std::unique_ptr<NoiseSource> snapshot() const override {
    return std::unique_ptr<NoiseSource>(new SeededNoise(generator_.clone()));
  }

 private:
  explicit SeededNoise(at::Generator generator) : generator_(std::move(generator)) {}
  at::Generator generator_;
};

// Whether the host keeps the next denoising step queued while the device runs one (the way
// before 2026-12-07), by LONGLIVE_STEP_QUEUED_AHEAD=1. Read per block, so a test can switch it.
bool step_queued_ahead() { return env_is("LONGLIVE_STEP_QUEUED_AHEAD", "1"); }

// The layers of a denoising step's first part when steps run in two parts (LONGLIVE_STEP_PARTS=2;
// by default one: 0), so that a block given up mid-step waits for half a step at most
// (DitGraphRunner::run_in_parts). Read per block, so a test can switch it.
size_t step_split(const CausalWanModel& model) {
  if (!env_is("LONGLIVE_STEP_PARTS", "2") || !model.runs_in_parts()) return 0;
  return model.layers() / 2;
}

// Paces the host against a CUDA device between the denoising steps of a block that may be given
// up. By default, after queueing step s the host waits for it to finish before it decides whether
// the block goes on: a command that gives the block up (a prompt switch, an input picked) waits
// for the rest of the step in flight only, and what it queues next starts on an idle device.
// The device idles between two steps for as long as the host takes to queue the next (a graph
// launch and a few small kernels). The block's last step is not waited for: its clean context
// pass follows either way. With step_queued_ahead() the host waits for step s - 1 after queueing
// step s, so the device always has the next step queued and a command also waits for that step.
// While it waits, the host polls `abandon` (which hands out decoded frames and says whether a
// command arrived), so decoded frames go out and a command is seen at once. The CPU runs each
// step as it is called.
class StepPacer {
 public:
  explicit StepPacer(at::Device device) : device_(device), ahead_(step_queued_ahead()) {}
  // After step s was queued: true when the block is to be given up.
  bool step_queued(bool last, const std::function<bool()>& abandon) {
    if (!device_.is_cuda()) return abandon();
    const c10::Stream stream =
        c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(device_);
    c10::Event& queued = events_[queued_ % 2];
    queued.record(stream);
    const c10::Event* wait_for = nullptr;
    if (!ahead_ && !last)
      wait_for = &queued;
    else if (queued_ > 0)
      wait_for = &events_[(queued_ - 1) % 2];
    ++queued_;
    if (wait_for != nullptr &&
        !poll_until(*wait_for, [&] { return abandon() ? PollTurn::stop : PollTurn::idle; }))
      return true;
    return abandon();
  }
  // After the first part of a step in parts was queued: true when the block is to be given up
  // before the rest is queued. Waits for that part (polling `abandon`).
  bool part_queued(const std::function<bool()>& abandon) {
    if (!device_.is_cuda()) return abandon();
    c10::Event part(c10::DeviceType::CUDA);
    part.record(c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(device_));
    if (!poll_until(part, [&] { return abandon() ? PollTurn::stop : PollTurn::idle; })) return true;
    return abandon();
  }

 private:
  at::Device device_;
  bool ahead_;
  std::array<c10::Event, 2> events_{c10::Event(c10::DeviceType::CUDA),
                                    c10::Event(c10::DeviceType::CUDA)};
  int64_t queued_ = 0;
};

// One DiT forward, through a CUDA graph when the generator has a runner. VACE calls and calls
// with a style-LoRA side path replay too (context, scale, hints and fader scales are device
// inputs; see pipeline/dit_graphs.h).
at::Tensor dit_forward(const CausalWanModel& model, DitGraphRunner* graphs,
                       const CausalWanModel::ForwardArgs& args, KvCache& kv,
                       const KvCache::Plan& plan, const CrossAttnCache& cross) {
  if (graphs == nullptr) return model.run(args, kv, plan, cross);
  return graphs->run(args, kv, plan, cross);
}

// The same in two parts, layers [0, split) and the rest: nullopt when `stop`, asked between
// them, says the rest is not wanted.
std::optional<at::Tensor> dit_forward_in_parts(const CausalWanModel& model, DitGraphRunner* graphs,
                                               const CausalWanModel::ForwardArgs& args, KvCache& kv,
                                               const KvCache::Plan& plan,
                                               const CrossAttnCache& cross, size_t split,
                                               const std::function<bool()>& stop) {
  if (graphs != nullptr) return graphs->run_in_parts(args, kv, plan, cross, split, stop);
  return model.run_unless(args, kv, plan, cross, split, stop);
}

}  // namespace

std::unique_ptr<NoiseSource> make_seeded_noise(uint64_t seed, at::Device device) {
  return std::make_unique<SeededNoise>(seed, device);
}

void GeneratorOptions::apply(const Preset& preset) {
  denoising_steps = preset.denoising_steps;
  warp_denoising_step = preset.warp_denoising_step;
  timestep_shift = preset.timestep_shift;
  frames_per_block = preset.frames_per_block;
  local_attn_frames = preset.local_attn_frames;
  sink_frames = preset.sink_frames;
  global_sink = preset.global_sink;
  vace_hint_reuse = preset.vace_hint_reuse;
}

void GeneratorOptions::validate() const {
  model.validate();
  auto fail = [](const std::string& msg) { throw ConfigError("generator options: " + msg); };
  if (denoising_steps.empty()) fail("denoising_steps is empty");
  if (frames_per_block < 1) fail(fmt::format("frames_per_block {} must be >= 1", frames_per_block));
  if (sink_frames < 0) fail(fmt::format("sink_frames {} must be >= 0", sink_frames));
  if (local_attn_frames < sink_frames + frames_per_block) {
    fail(fmt::format("local_attn_frames {} must be at least sink_frames + frames_per_block = {}",
                     local_attn_frames, sink_frames + frames_per_block));
  }
  if (kv_dtype && *kv_dtype != at::kFloat && *kv_dtype != at::kHalf && *kv_dtype != at::kBFloat16 &&
      *kv_dtype != at::kChar) {
    fail(fmt::format("kv_dtype {} must be float32, float16, bfloat16 or int8",
                     c10::toString(*kv_dtype)));
  }
  if (latent_height <= 0 || latent_width <= 0 || latent_height % model.patch[1] != 0 ||
      latent_width % model.patch[2] != 0) {
    fail(fmt::format("latent size {}x{} must be positive multiples of the patch {}x{}",
                     latent_height, latent_width, model.patch[1], model.patch[2]));
  }
}

namespace {
std::shared_ptr<const CausalWanModel> build_model(const WeightStore& weights,
                                                  const GeneratorOptions& o,
                                                  const WeightStore* lora) {
  o.validate();
  if (lora)
    return std::make_shared<const CausalWanModel>(merge_lora(weights, *lora, o.lora_alpha), o.model,
                                                  o.device, o.dtype, o.runtime);
  return std::make_shared<const CausalWanModel>(weights, o.model, o.device, o.dtype, o.runtime);
}
// Error unless `model` was built for the options' device, dtype and fast paths.
void check_built_for(const CausalWanModel& model, const GeneratorOptions& options) {
  const DitRuntime& built = model.runtime();
  if (model.device() != options.device || model.dtype() != options.dtype ||
      built.fused_kernels != options.runtime.fused_kernels ||
      built.fp8_linears != options.runtime.fp8_linears ||
      built.fp8_attention != options.runtime.fp8_attention ||
      built.attention != options.runtime.attention)
    throw Error(fmt::format(
        "StreamGenerator: the shared DiT was built for {} {} and other fast paths than the "
        "options ask ({} {})",
        model.device().str(), c10::toString(model.dtype()), options.device.str(),
        c10::toString(options.dtype)));
}

std::unique_ptr<DitGraphRunner> graph_runner_for(const std::shared_ptr<const CausalWanModel>& model,
                                                 const GeneratorOptions& options) {
  if (!options.runtime.cuda_graphs || !options.device.is_cuda()) return nullptr;
  // A rank of a sequence-parallel group calls collectives inside each forward; Gloo's cannot be
  // captured, so sharded models run eagerly.
  if (model->ranks() != nullptr) return nullptr;
  if (!DitGraphRunner::available()) {
    log::warn("cuda_graphs requested but this build has no CUDA support: running eagerly");
    return nullptr;
  }
  return std::make_unique<DitGraphRunner>(*model);
}
}  // namespace

StreamGenerator::StreamGenerator(const WeightStore& weights, const GeneratorOptions& options,
                                 const WeightStore* lora, const WeightStore* vace)
    : StreamGenerator(vace ? build_model(weights, options, lora)->with_vace(*vace)
                           : build_model(weights, options, lora),
                      options) {}

StreamGenerator::StreamGenerator(std::shared_ptr<const CausalWanModel> model,
                                 const GeneratorOptions& options)
    : options_(options), model_(std::move(model)) {
  options_.validate();
  check_built_for(*model_, options_);
  graphs_ = graph_runner_for(model_, options_);
  // FP8 attention reads an FP8 cache; an explicit int8 KV (low_memory) keeps bf16 attention.
  std::optional<at::ScalarType> kv_storage = options_.kv_dtype;
  if (model_->uses_fp8_attention() && kv_storage != at::kChar) kv_storage = at::kFloat8_e4m3fn;
  kv_ = std::make_unique<KvCache>(
      model_->kv_shape(options_.latent_height, options_.latent_width, options_.sink_frames,
                       options_.local_attn_frames),
      at::TensorOptions().dtype(options_.dtype).device(options_.device), kv_storage);
  stats_.kv_cache_bytes = kv_->bytes();
  cross_ = std::make_unique<CrossAttnCache>();
  sampler_ = std::make_unique<FlowMatchSampler>(
      options_.denoising_steps, options_.warp_denoising_step, options_.timestep_shift);
  const auto float_opts = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  recent_ = at::zeros({options_.local_attn_frames, options_.model.in_channels,
                       options_.latent_height, options_.latent_width},
                      float_opts);
  sink_ = at::zeros({options_.sink_frames, options_.model.in_channels, options_.latent_height,
                     options_.latent_width},
                    float_opts);
}

StreamGenerator::~StreamGenerator() = default;

const KvCache& StreamGenerator::kv_cache() const { return *kv_; }
bool StreamGenerator::fused_kernels_active() const { return model_->uses_fused_kernels(); }
bool StreamGenerator::fp8_linears_active() const { return model_->uses_fp8_linears(); }
bool StreamGenerator::fp8_attention_active() const {
  return model_->uses_fp8_attention() && kv_->storage_dtype() == at::kFloat8_e4m3fn;
}
const FlowMatchSampler& StreamGenerator::sampler() const { return *sampler_; }

GeneratorStats StreamGenerator::stats() const {
  GeneratorStats s = stats_;
  if (graphs_) {
    s.graph_captures = graphs_->stats().captures;
    s.graph_replays = graphs_->stats().replays;
    s.graph_eager_forwards = graphs_->stats().eager;
  }
  return s;
}

void StreamGenerator::set_style_loras(const std::vector<ActiveStyleLora>& loras) {
  const bool text_before = lora_ && lora_->touches_text_kv();
  if (lora_ && lora_->same_adapters(loras)) {
    lora_->set_strengths(loras);
  } else {
    const bool any = std::any_of(loras.begin(), loras.end(), [](const ActiveStyleLora& l) {
      return l.lora && l.strength != 0;
    });
    // Another set of active LoRAs: the graphs that read the old stacks go with them, and the
    // new side path's forwards are captured as they come (see pipeline/dit_graphs.h).
    if (graphs_ && lora_) graphs_->drop_side_path_graphs();
    lora_.reset();  // the old stacks go before the new ones are allocated
    if (any)
      lora_ =
          std::make_unique<LoraSidePath>(loras, options_.model, options_.device, options_.dtype);
  }
  if (text_before || (lora_ && lora_->touches_text_kv())) text_kv_dirty_ = true;
}

void StreamGenerator::start(const at::Tensor& prompt_embeds, uint64_t seed) {
  model_->build_cross_cache(prompt_embeds, *cross_, lora_.get());
  text_kv_dirty_ = false;
  current_ = prompt_embeds;
  transition_.reset();
  kv_->reset();
  noise_ = make_seeded_noise(seed, options_.device);
  pending_switch_.reset();
  frame_ = 0;
  ring_first_frame_ = 0;
  stats_ = GeneratorStats{.kv_cache_bytes = kv_->bytes()};
  if (options_.reserve_up_front && options_.device.is_cuda()) reserve_up_front();
  started_ = true;
}

void StreamGenerator::reserve_up_front() {
  const auto start = std::chrono::steady_clock::now();
  const int64_t f = options_.frames_per_block;
  const int64_t ring = options_.local_attn_frames - options_.sink_frames;
  // Until the window is full, then one round of the ring's phases: every plan of the steady
  // stream (re-cache plans appear on switches and are captured on their second use).
  const int64_t blocks = (options_.local_attn_frames + f - 1) / f + ring / std::gcd(ring, f);
  const auto float_opts = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  const at::Tensor latents =
      at::zeros({1, f, options_.model.in_channels, options_.latent_height, options_.latent_width},
                float_opts);
  const at::Tensor timesteps = at::full({1, f}, 1000.0, float_opts);
  // With VACE weights the steps of a block with a VACE input too (a context of the block's own
  // latent frames, no reference image in front), so that the first blocks a camera or video
  // conditions replay graphs instead of running eagerly and capturing (docs/vace.md).
  std::optional<VaceSteps> vace;
  if (model_->has_vace()) {
    if (!vace_scale_.defined()) vace_scale_ = at::ones({1}, float_opts);
    const at::Tensor context = at::zeros(
        {model_->vace_layout().in_channels, f, options_.latent_height, options_.latent_width},
        float_opts);
    vace = vace_steps(*model_, options_, context, vace_scale_, vace_hints_, vace_embedded_,
                      /*traced=*/false);
  }
  const size_t split = step_split(*model_);
  int64_t frame = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const KvCache::Plan first = kv_->plan(frame, f, KvWriteKind::block, options_.global_sink);
    // The dummy K/V left in the slots are never attended: each forward writes its slots before
    // reading them, and reset() below empties the bookkeeping and zeroes the sink.
    enum class Vace { none, first_step, later_step };
    auto warm = [&](const KvCache::Plan& plan, bool kv_only, Vace with = Vace::none) {
      CausalWanModel::ForwardArgs args = model_->prepare(latents, timesteps, plan);
      args.lora = lora_.get();  // faders up at the start: their graphs are the steady ones
      args.kv_only = kv_only;   // the context pass's own, shorter graph
      if (with != Vace::none) vace->add_to(args, with == Vace::first_step);
      if (graphs_) {
        // The denoising steps' graphs as generate_block will replay them (in parts or whole).
        graphs_->warm(args, *kv_, plan, *cross_, kv_only ? 0 : split);
      } else {
        model_->run(args, *kv_, plan, *cross_);
      }
      kv_->commit(plan);
    };
    warm(first, false);
    const KvCache::Plan again =
        kv_->plan(frame, f, KvWriteKind::block_repeat, options_.global_sink);
    // Differs only while a sink longer than a block is being filled.
    if (again.slot_of_frame != first.slot_of_frame) warm(again, false);
    warm(again, true);
    if (vace) {  // a block's first step on `first`, its later steps on `again` (generate_block)
      warm(first, false, Vace::first_step);
      warm(again, false, Vace::later_step);
    }
    frame += f;
  }
  // A re-cache's shape too (several blocks of queries, eager): without this the first prompt
  // switch of a session pays for its cuDNN plans and memory.
  const int64_t n = std::min(options_.local_attn_frames, frame);
  KvCache::Plan recache_plan = kv_->plan(frame - n, n, KvWriteKind::recache, options_.global_sink);
  if (!options_.skip_dropped_recache_frames) recache_plan.first_written = 0;
  const auto sizes = latents.sizes();
  model_->forward(at::zeros({1, n, sizes[2], sizes[3], sizes[4]}, float_opts),
                  at::zeros({1, n}, float_opts), *kv_, recache_plan, *cross_, lora_.get(),
                  /*kv_only=*/true);  // as recache() runs it
  kv_->reset();
  stats_.reserve_ms = ms_since(start);
  log::info("reserved up front: {} block plans{} and a re-cache warmed{} in {:.0f} ms (host)",
            blocks, vace ? " (with and without VACE)" : "",
            graphs_ ? fmt::format(", {} CUDA graphs", graphs_->graphs()) : std::string(),
            stats_.reserve_ms);
}

void StreamGenerator::switch_prompt(const at::Tensor& prompt_embeds) {
  if (!started_) throw Error("switch_prompt() before start()");
  // Validate now so the caller gets the error, not the next block.
  CrossAttnCache probe;
  model_->build_cross_cache(prompt_embeds, probe);
  pending_switch_ = prompt_embeds;
  transition_.reset();
}

void StreamGenerator::set_conditioning(const at::Tensor& prompt_embeds) {
  if (!started_) throw Error("set_conditioning() before start()");
  model_->build_cross_cache(prompt_embeds, *cross_, lora_.get());
  current_ = prompt_embeds;
  transition_.reset();
}

at::Tensor StreamGenerator::padded(const at::Tensor& embeds) const {
  at::Tensor e = embeds.to(options_.device, at::kFloat);
  const int64_t missing = options_.model.text_len - e.size(1);
  // The DiT zero-pads shorter prompts to text_len; mixing the padded forms is the same thing.
  return missing > 0 ? at::constant_pad_nd(e, {0, 0, 0, missing}) : e;
}

void StreamGenerator::transition_to(const at::Tensor& target, const TransitionOptions& options) {
  if (!started_) throw Error("transition_to() before start()");
  if (options.blocks < 0)
    throw ConfigError(fmt::format("transition: blocks {} must be >= 0", options.blocks));
  if (options.blocks == 0) {
    switch_prompt(target);
    return;
  }
  CrossAttnCache probe;  // validates the shape now, for the caller
  model_->build_cross_cache(target, probe);
  const at::Tensor& from = pending_switch_ ? *pending_switch_ : current_;
  transition_ = Transition{padded(from), padded(target), options, 0};
}

void StreamGenerator::advance_transition(BlockTrace* trace) {
  if (!transition_) return;
  Transition& tr = *transition_;
  ++tr.done;
  if (tr.done < tr.options.blocks) {
    const double t = static_cast<double>(tr.done) / static_cast<double>(tr.options.blocks);
    current_ = interpolate_embeddings(tr.from, tr.to, t, tr.options.interpolation);
    model_->build_cross_cache(current_, *cross_, lora_.get());
    return;
  }
  const at::Tensor target = tr.to;
  const bool recache_at_end = tr.options.recache_at_end;
  transition_.reset();
  if (recache_at_end) {
    pending_switch_ = target;
    apply_pending_switch(trace);
  } else {
    model_->build_cross_cache(target, *cross_, lora_.get());
    current_ = target;
  }
}

bool StreamGenerator::vace_available() const { return model_->has_vace(); }

std::unique_ptr<StreamGenerator> StreamGenerator::with_vace(const WeightStore& vace,
                                                            const GeneratorOptions& options) const {
  return std::make_unique<StreamGenerator>(model_->with_vace(vace), options);
}

void StreamGenerator::set_vace(std::optional<VaceInput> input) {
  if (!input) {
    vace_.reset();
    return;
  }
  if (!model_->has_vace())
    throw Error(
        "VACE input given, but no VACE weights are loaded (the VACE module file is "
        "missing from the model folder)");
  const at::Tensor& c = input->context;
  const auto& p = options_.model.patch;
  const int64_t channels = model_->vace_layout().in_channels;
  if (!c.defined() || c.dim() != 4 || c.size(0) != channels || c.size(1) < 1 ||
      c.size(1) % p[0] != 0 || c.size(2) != options_.latent_height ||
      c.size(3) != options_.latent_width) {
    throw ConfigError(fmt::format(
        "VACE context has shape [{}], expected [{}, F, {}, {}] (channels, latent frames, latent "
        "height and width of the stream)",
        c.defined() ? fmt::format("{}", fmt::join(c.sizes(), ", ")) : std::string("undefined"),
        channels, options_.latent_height, options_.latent_width));
  }
  input->context = c.to(options_.device, at::kFloat).contiguous();
  // The scale is a device input of the forward (a CUDA graph replays it with its new value).
  if (!vace_scale_.defined())
    vace_scale_ = at::empty({1}, at::TensorOptions().dtype(at::kFloat).device(options_.device));
  vace_scale_.fill_(input->scale);
  vace_ = std::move(input);
}

void StreamGenerator::set_v2v(std::optional<V2vInput> input) {
  if (!input) {
    v2v_.reset();
    return;
  }
  const at::Tensor& l = input->latents;
  const std::vector<int64_t> expected = {1, options_.frames_per_block, options_.model.in_channels,
                                         options_.latent_height, options_.latent_width};
  if (!l.defined() || l.sizes() != at::IntArrayRef(expected))
    throw ConfigError(fmt::format(
        "video-to-video latents have shape [{}], expected [{}] (one block)",
        l.defined() ? fmt::format("{}", fmt::join(l.sizes(), ", ")) : std::string("undefined"),
        fmt::join(expected, ", ")));
  if (!(input->strength > 0.0 && input->strength <= 1.0))
    throw ConfigError(fmt::format("video-to-video strength {} must be in (0, 1]", input->strength));
  input->latents = l.to(options_.device, at::kFloat).contiguous();
  v2v_ = std::move(input);
}

void StreamGenerator::set_noise_source(std::unique_ptr<NoiseSource> noise) {
  noise_ = std::move(noise);
}

bool StreamGenerator::can_continue_with(const GeneratorOptions& o) const {
  const GeneratorOptions& old = options_;
  return started_ && o.device == old.device && o.dtype == old.dtype &&
         o.runtime.fp8_linears == old.runtime.fp8_linears &&
         o.runtime.fp8_attention == old.runtime.fp8_attention && o.kv_dtype == old.kv_dtype &&
         o.frames_per_block == old.frames_per_block &&
         o.local_attn_frames == old.local_attn_frames && o.sink_frames == old.sink_frames &&
         o.global_sink == old.global_sink && o.latent_height == old.latent_height &&
         o.latent_width == old.latent_width && o.lora_alpha == old.lora_alpha;
}

void StreamGenerator::continue_with(std::shared_ptr<const CausalWanModel> model,
                                    const GeneratorOptions& options) {
  options.validate();
  if (!can_continue_with(options))
    throw ConfigError(
        "continue_with: the new options change the weights' precision or the cache geometry; "
        "hand the stream over with release_state()/resume() instead");
  check_built_for(*model, options);
  graphs_.reset();  // captured over the old layer loop and sampling
  model_ = std::move(model);
  options_ = options;
  graphs_ = graph_runner_for(model_, options_);
  sampler_ = std::make_unique<FlowMatchSampler>(
      options_.denoising_steps, options_.warp_denoising_step, options_.timestep_shift);
}

StreamState StreamGenerator::release_state() {
  if (!started_) throw Error("release_state() before start()");
  StreamState state;
  state.frame = frame_;
  state.blocks = stats_.blocks;
  const int64_t n = window_held();
  if (n > 0) {
    const at::Tensor index =
        at::arange(frame_ - n, frame_, at::TensorOptions().dtype(at::kLong).device(options_.device))
            .remainder(options_.local_attn_frames);
    state.window = recent_.index_select(0, index);
  }
  state.sink = sink_.narrow(0, 0, std::min(options_.sink_frames, frame_)).clone();
  state.conditioning = current_;
  state.pending_switch = pending_switch_;
  if (transition_) {
    state.transition_from = transition_->from;
    state.transition_to = transition_->to;
    state.transition = transition_->options;
    state.transition_done = transition_->done;
  }
  state.noise = std::move(noise_);
  started_ = false;
  return state;
}

void StreamGenerator::resume(StreamState state) {
  const auto& sizes = recent_.sizes();
  for (const at::Tensor* t : {&state.window, &state.sink}) {
    if (t->defined() && t->numel() > 0 &&
        (t->size(1) != sizes[1] || t->size(2) != sizes[2] || t->size(3) != sizes[3]))
      throw ConfigError(fmt::format(
          "resume: the stream's latents are {}x{}x{}, this generator makes {}x{}x{} (a preset "
          "change keeps the video size)",
          t->size(1), t->size(2), t->size(3), sizes[1], sizes[2], sizes[3]));
  }
  if (!state.noise) throw Error("resume: the stream state has no noise source");
  model_->build_cross_cache(state.conditioning, *cross_, lora_.get());
  text_kv_dirty_ = false;
  current_ = state.conditioning;
  kv_->reset();
  noise_ = std::move(state.noise);
  frame_ = state.frame;
  stats_ = GeneratorStats{.kv_cache_bytes = kv_->bytes()};
  stats_.blocks = state.blocks;
  stats_.frames = frame_;
  recent_.zero_();
  sink_.zero_();
  const int64_t n =
      state.window.defined() ? std::min(state.window.size(0), options_.local_attn_frames) : 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t frame = frame_ - n + i;
    recent_[frame % options_.local_attn_frames].copy_(state.window[state.window.size(0) - n + i]);
  }
  ring_first_frame_ = frame_ - n;
  const int64_t s = state.sink.defined() ? std::min(state.sink.size(0), options_.sink_frames) : 0;
  if (s > 0) sink_.narrow(0, 0, s).copy_(state.sink.narrow(0, 0, s));
  transition_.reset();
  if (state.transition_from && state.transition_to)
    transition_ = Transition{*state.transition_from, *state.transition_to, state.transition,
                             state.transition_done};
  // The next block re-caches under the pending cut if there is one, else under the current
  // conditioning: the same forward as a prompt switch.
  pending_switch_ = state.pending_switch ? *state.pending_switch : state.conditioning;
  started_ = true;
  // No up-front reservation here (memory_pool): it costs a few hundred ms of dummy forwards on
  // the way to the first frame of a hot preset change, while the memory it would claim is still
  // in the caching allocator from the previous generator. Plans and graphs warm as they appear.
  // Under a global sink, a re-cache that starts past the sink keeps the sink's K/V: rebuild them
  // now from their latents, under the conditioning they were last attended with (a pending cut
  // must not reach them, as it does not in a prompt switch). Without a global sink, or when the
  // re-cache starts at frame 0, the re-cache writes the sink slots itself.
  const int64_t recached = window_held();
  const int64_t first = frame_ - recached;
  const bool keeps_sink = options_.global_sink && first > 0;
  if (keeps_sink && options_.sink_frames > 0 && s >= std::min(options_.sink_frames, frame_))
    reencode_sink();
  // With fewer frames than the window handed over, start the ring at the re-cache's first ring
  // frame so its slots are contiguous: a re-cache's first sink-many frames go to the sink slots,
  // or are dropped when the sink is kept.
  if (first > 0 && recached < options_.local_attn_frames)
    kv_->set_ring_origin(first + std::min(recached, options_.sink_frames));
}

// K/V of the sink frames [0, s) at t = 0 under the current conditioning: what their context pass
// wrote when the sink is one block (the pass attends only its own block).
void StreamGenerator::reencode_sink() {
  const int64_t s = std::min(options_.sink_frames, frame_);
  if (s == 0) return;
  const auto float_opts = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  const KvCache::Plan plan = kv_->plan(0, s, KvWriteKind::block, options_.global_sink);
  model_->forward(sink_.narrow(0, 0, s).unsqueeze(0), at::zeros({1, s}, float_opts), *kv_, plan,
                  *cross_, lora_.get(), /*kv_only=*/true);
  kv_->commit(plan);
}

void StreamGenerator::recache(BlockTrace* trace) {
  const int64_t n = window_held();
  if (n == 0) return;
  const auto start = std::chrono::steady_clock::now();
  const int64_t first = frame_ - n;
  const at::Tensor index =
      at::arange(first, frame_, at::TensorOptions().dtype(at::kLong).device(options_.device))
          .remainder(options_.local_attn_frames);
  const at::Tensor latents = recent_.index_select(0, index).unsqueeze(0);
  KvCache::Plan plan = kv_->plan(first, n, KvWriteKind::recache, options_.global_sink);
  if (!options_.skip_dropped_recache_frames) plan.first_written = 0;
  if (plan.first_written == n) {
    // Nothing would be written (not reachable with a valid window: a re-cache that keeps the
    // sink covers a full window, longer than the sink), and a forward over zero frames cannot run.
    ++stats_.recaches;
    stats_.last_recache_ms = ms_since(start);
    return;
  }
  const at::Tensor t =
      at::zeros({1, n}, at::TensorOptions().dtype(at::kFloat).device(options_.device));
  // Eager: a re-cache happens once per switch in one of several ring phases, so capturing it
  // would put a capture stall on the switch itself, for a 1 % gain. Only its K/V are kept (a
  // trace also wants its flow).
  at::Tensor flow =
      model_->forward(latents, t, *kv_, plan, *cross_, lora_.get(), /*kv_only=*/trace == nullptr);
  kv_->commit(plan);
  if (trace) trace->recache_flow = flow;
  ++stats_.recaches;
  stats_.last_recache_ms = ms_since(start);
}

bool StreamGenerator::apply_pending_switch(BlockTrace* trace) {
  if (!pending_switch_) return false;
  model_->build_cross_cache(*pending_switch_, *cross_, lora_.get());
  current_ = *pending_switch_;
  pending_switch_.reset();
  recache(trace);
  if (trace) trace->recached = true;
  return true;
}

at::Tensor StreamGenerator::next_block(BlockTrace* trace) {
  return *generate_block(trace, nullptr);
}

std::optional<at::Tensor> StreamGenerator::next_block_unless(const std::function<bool()>& abandon) {
  return generate_block(nullptr, &abandon);
}

bool StreamGenerator::can_abandon_block() const {
  // Redone exactly: a transition would advance twice, and the sink slots a block writes at the
  // start are attended (as zeros until written) by a re-cache before the redone block rewrites
  // them. A VACE or V2V input stays set: the caller feeds the redone block the same input
  // (LiveInputs::before_block), since its source would hand over its next frames.
  return !transition_ && frame_ >= options_.sink_frames;
}

std::optional<at::Tensor> StreamGenerator::generate_block(BlockTrace* trace,
                                                          const std::function<bool()>* abandon) {
  if (!started_) throw Error("next_block() before start()");
  const auto start = std::chrono::steady_clock::now();
  if (text_kv_dirty_) {
    // A style LoRA on cross_attn.k/v changed: the text K/V of the current conditioning again.
    model_->build_cross_cache(current_, *cross_, lora_.get());
    text_kv_dirty_ = false;
  }
  apply_pending_switch(trace);  // a cut requested before this block
  advance_transition(trace);    // may end in a cut of its own (recache_at_end)
  const int64_t f = options_.frames_per_block;
  const std::vector<int64_t> shape = {1, f, options_.model.in_channels, options_.latent_height,
                                      options_.latent_width};
  const auto float_opts = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  const int64_t block = stats_.blocks;
  // What giving the block up rewinds: the slots its first step claims and the noise it draws.
  std::optional<std::vector<int64_t>> slots_before;
  std::unique_ptr<NoiseSource> noise_before;
  if (abandon && trace == nullptr && can_abandon_block()) noise_before = noise_->snapshot();
  if (noise_before) slots_before = kv_->slot_frames();
  StepPacer pacer(options_.device);
  // Every denoising step in parts when asked (one graph per plan either way); only a block that
  // may be given up waits between them.
  const size_t split = step_split(*model_);
  const auto give_up = [&] {
    kv_->restore_slot_frames(std::move(*slots_before));
    noise_ = std::move(noise_before);
    ++stats_.abandoned_blocks;
  };

  // The first step advances the cache; the later steps and the context pass rewrite the same
  // slots (planned after the first commit: they attend what it wrote).
  const KvCache::Plan first = kv_->plan(frame_, f, KvWriteKind::block, options_.global_sink);
  std::optional<KvCache::Plan> again;
  at::Tensor x = noise_->initial(block, shape, float_opts);
  at::Tensor x0;
  const auto& timesteps = sampler_->timesteps();
  const auto& sigmas = sampler_->step_sigmas();
  size_t first_step = 0;
  if (v2v_) {
    // Start where the schedule's noise level has come down to the strength (the last step at
    // least), from the input noised to that level.
    while (first_step + 1 < sigmas.size() && sigmas[first_step] > v2v_->strength) ++first_step;
    x = FlowMatchSampler::add_noise(v2v_->latents, x, sigmas[first_step]);
  }
  std::optional<VaceSteps> vace_steps_of_block;
  if (vace_)
    vace_steps_of_block = vace_steps(*model_, options_, vace_->context, vace_scale_, vace_hints_,
                                     vace_embedded_, trace != nullptr);
  for (size_t s = first_step; s < timesteps.size(); ++s) {
    const at::Tensor t = at::full({1, f}, timesteps[s], float_opts);
    const KvCache::Plan& plan = again ? *again : first;
    CausalWanModel::ForwardArgs args = model_->prepare(x, t, plan);
    args.lora = lora_.get();
    if (vace_steps_of_block) vace_steps_of_block->add_to(args, s == first_step);
    at::Tensor flow;
    if (split > 0) {
      // Asked half-way as after each step: not at the last step (its context pass follows).
      const bool asked = noise_before && s + 1 < timesteps.size();
      std::optional<at::Tensor> whole =
          dit_forward_in_parts(*model_, graphs_.get(), args, *kv_, plan, *cross_, split,
                               [&] { return asked && pacer.part_queued(*abandon); });
      if (!whole) {
        give_up();
        return std::nullopt;
      }
      flow = *whole;
    } else {
      flow = dit_forward(*model_, graphs_.get(), args, *kv_, plan, *cross_);
    }
    kv_->commit(plan);
    if (!again) again = kv_->plan(frame_, f, KvWriteKind::block_repeat, options_.global_sink);
    x0 = FlowMatchSampler::to_x0(x, flow, sigmas[s]);
    if (trace) {
      trace->step_inputs.push_back(x);
      trace->step_flows.push_back(flow);
      trace->step_x0.push_back(x0);
      if (vace_) trace->step_hints.push_back(vace_hints_.to(at::kFloat, false, true).unsqueeze(1));
    }
    if (s + 1 < timesteps.size()) {
      const at::Tensor noise = noise_->renoise(block, static_cast<int64_t>(s), shape, float_opts);
      x = FlowMatchSampler::add_noise(x0, noise, sigmas[s + 1]);
    }
    if (noise_before) {
      if (pacer.step_queued(s + 1 == timesteps.size(), *abandon)) {
        give_up();
        return std::nullopt;
      }
    }
  }
  // The latents are final: the live decoder starts from here, beside the clean context pass.
  if (options_.device.is_cuda()) {
    if (!latents_ready_) latents_ready_ = std::make_unique<c10::Event>(c10::DeviceType::CUDA);
    latents_ready_->record(
        c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(options_.device));
  }
  // Clean context pass: write the finished block's K/V (its output is not needed).
  CausalWanModel::ForwardArgs context_pass =
      model_->prepare(x0, at::zeros({1, f}, float_opts), *again);
  context_pass.lora = lora_.get();
  context_pass.kv_only = true;
  dit_forward(*model_, graphs_.get(), context_pass, *kv_, *again, *cross_);

  for (int64_t i = 0; i < f; ++i) {
    recent_[(frame_ + i) % options_.local_attn_frames].copy_(x0[0][i]);
    if (frame_ + i < options_.sink_frames) sink_[frame_ + i].copy_(x0[0][i]);
  }
  frame_ += f;
  ++stats_.blocks;
  stats_.frames = frame_;
  stats_.last_block_ms = ms_since(start);
  return x0;
}

}  // namespace longlive
