// SessionFactory: the one place a preset becomes a running session (see longlive/session.h).
#include "longlive/session.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <tuple>

#include "core/env.h"
#include "longlive/async_decoder.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/profiler.h"
#include "longlive/taehv.h"
#include "longlive/text_encoder.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"
#include "longlive/weights.h"
#include "model/causal_wan.h"
#include "model/vace.h"

namespace longlive {
namespace {

struct RequiredFile {
  const char* name;
  const char* alternative;  // another acceptable name, or nullptr
};
constexpr RequiredFile kRequired[] = {
    {"diffusion_pytorch_model.safetensors", "longlive_base.pt"},
    {"models_t5_umt5-xxl-enc-bf16.pth", nullptr},
    {"spiece.model", nullptr},
    {"taew2_1.pth", "taew2_1.safetensors"},
};

std::optional<std::filesystem::path> find_in(const std::filesystem::path& dir,
                                             const std::string& name) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == name) return it->path();
  }
  return std::nullopt;
}

// TAEHV's file (its decoder and encoder both): the one named, else taew2_1 in the folder.
std::optional<std::filesystem::path> taehv_file(const ModelSpec& model) {
  if (model.taehv_file) return model.taehv_file;
  if (model.folder.empty()) return std::nullopt;
  if (auto pth = find_in(model.folder, "taew2_1.pth")) return pth;
  return find_in(model.folder, "taew2_1.safetensors");
}

// Latent frames per part of the live decoder's blocks (AsyncDecoder): 0, each block decoded
// whole. LONGLIVE_DECODE_PARTS=1 decodes a latent frame at a time, its 4 frames out once decoded:
// on an H100 a camera's first conditioned frame came 267.0 -> 258.4 ms after the pick, but its
// conditioned blocks took 279.0 -> 310.9 ms (median of 9, the engine waiting 10 ms more per block
// for the camera's encode; likely the three smaller decodes' extra GPU time; docs/benchmarks.md,
// 2026-12-07).
int64_t live_decode_part() { return env_is("LONGLIVE_DECODE_PARTS", "1") ? 1 : 0; }

// The first two decodes of a video (its first block, then a later one) have shapes of their
// own; on a GPU they build cuDNN's plans and, for the Wan VAE, run its algorithm search
// (seconds at 480x832). Done on zeros while the session opens, so the stream never waits for it.
void warm_up_decoder(StreamingDecoder& decoder, at::Device device, int64_t frames_per_block,
                     int64_t channels, int64_t latent_height, int64_t latent_width) {
  if (!device.is_cuda()) return;
  const at::Tensor zeros = at::zeros({1, frames_per_block, channels, latent_height, latent_width},
                                     at::TensorOptions().device(device));
  decoder.decode(zeros);
  decoder.decode(zeros);
  decoder.reset();
}

// What a DiT build depends on: a preset change that keeps it keeps the model.
using DitKey = std::tuple<at::ScalarType, bool, bool, bool, AttentionBackend>;
DitKey dit_key(const GeneratorOptions& o) {
  return {o.dtype, o.runtime.fused_kernels, o.runtime.fp8_linears, o.runtime.fp8_attention,
          o.runtime.attention};
}

// The resident host copy of the DiT in page-locked memory when it runs on a GPU: a DiT rebuilt
// for a preset change (another dtype or fast path) then copies at full PCIe/NVLink speed.
WeightStore pinned_for(const WeightStore& host, at::Device device) {
  if (!device.is_cuda()) return host;
  WeightStore pinned;
  for (const auto& name : host.names()) {
    const at::Tensor& t = host.get(name);
    pinned.add(name, t.is_cpu() && !t.is_pinned() ? t.pin_memory() : t, host.source_of(name));
  }
  pinned.add_metadata(host.metadata());
  return pinned;
}

// The Wan VAE's precision for a device, live or for an export: float32 on the CPU, bf16 on a GPU.
WanVaeDecoderOptions wan_vae_options(at::Device device) {
  WanVaeDecoderOptions options;
  options.device = device;
  options.dtype = device.is_cpu() ? at::kFloat : at::kBFloat16;
  return options;
}

// DiT weight sets (one per dtype) kept on the device besides the running one, so that switching
// back to a recent preset's precision costs no rebuild (~2.6 GiB in bf16 for the 1.3B model).
// Layer-loop and FP8-linear variants share their 16-bit weights. Kept only while the device keeps
// kFreeAfterKeeping of its memory free: a 12 GB card rebuilds instead of running short.
constexpr size_t kRecentWeightSets = 2;
constexpr double kFreeAfterKeeping = 0.15;

// Variants sharing their 16-bit tensors (FP8 copies are quantised from them in milliseconds)
// count as one weight set.
bool same_weights(const CausalWanModel& a, const CausalWanModel& b) {
  return a.weights_id() == b.weights_id();
}

}  // namespace

std::vector<std::string> missing_model_files(const std::filesystem::path& folder) {
  std::vector<std::string> missing;
  if (!std::filesystem::is_directory(folder)) return {folder.string() + " (not a folder)"};
  for (const auto& f : kRequired) {
    if (find_in(folder, f.name) || (f.alternative && find_in(folder, f.alternative))) continue;
    missing.push_back(f.alternative ? fmt::format("{} (or {})", f.name, f.alternative) : f.name);
  }
  return missing;
}

RuntimeChoice choose_runtime(const Preset& p, at::Device device) {
  RuntimeChoice r;
  r.device = device;
  const bool gpu = device.is_cuda();
  switch (p.dtype) {
    case ComputeDType::fp32:
      r.dit_dtype = at::kFloat;
      break;
    case ComputeDType::fp16:
      r.dit_dtype = gpu ? at::kHalf : at::kFloat;
      break;
    case ComputeDType::bf16:
    case ComputeDType::fp8:
      r.dit_dtype = gpu ? at::kBFloat16 : at::kFloat;
      break;
  }
  switch (p.kv_dtype) {
    case KvDType::int8:
      r.kv_dtype = at::kChar;
      break;  // int8 + scales, on the CPU too
    case KvDType::fp32:
      r.kv_dtype = at::kFloat;
      break;
    case KvDType::fp16:
      r.kv_dtype = gpu ? std::optional(at::kHalf) : std::nullopt;
      break;
    case KvDType::bf16:
      r.kv_dtype = gpu ? std::optional(at::kBFloat16) : std::nullopt;
      break;
  }
  r.text_device = p.text_encoder_device == PlacementDevice::cpu ? at::Device(at::kCPU) : device;
  r.text_dtype = r.text_device.is_cpu() ? at::kFloat : at::kBFloat16;
  r.decoder = p.decoder;
  r.dit.fused_kernels = p.fused_kernels;
  r.dit.fp8_linears = p.dtype == ComputeDType::fp8;
  r.dit.fp8_attention = p.dtype == ComputeDType::fp8;
  r.dit.cuda_graphs = p.cuda_graphs;
  r.reserve_up_front = p.memory_pool;
  return r;
}

void fit_to_device(RuntimeChoice& r, const DeviceCapabilities& caps,
                   const std::string& preset_name) {
  r.capabilities = caps;
  if (!r.device.is_cuda()) return;  // the CPU runs the plain float32 path by design
  const std::string sm = caps.sm ? fmt::format("sm_{}", caps.sm) : std::string("this device");
  auto fall_back = [&](const std::string& what) {
    r.fallbacks.push_back(fmt::format("{}: {}", preset_name, what));
  };
  if (r.dit.fused_kernels && !caps.fused_kernels) {
    r.dit.fused_kernels = false;
    fall_back(fmt::format("fused kernels unavailable ({}), using ATen ops", caps.kernels_error));
  }
  if (r.dit.fp8_linears && !caps.fp8_linears) {
    r.dit.fp8_linears = false;
    fall_back(caps.fused_kernels ? fmt::format("FP8 linears unavailable on {} (need sm_{}+), using "
                                               "bf16 GEMMs",
                                               sm, kMinFp8LinearSm)
                                 : "FP8 linears need the fused kernels, using bf16 GEMMs");
  }
  if (r.dit.fp8_attention && !caps.fp8_attention) {
    r.dit.fp8_attention = false;
    fall_back(caps.sm >= kMinFp8AttentionSm && caps.fused_kernels
                  ? std::string("FP8 attention unavailable (this build has no cuDNN FP8 attention "
                                "or cuDNN is older than 9.1), using bf16 attention")
                  : fmt::format("FP8 attention unavailable on {} (needs sm_{}+), using bf16 "
                                "attention",
                                sm, kMinFp8AttentionSm));
  }
  if (!caps.bf16) {
    auto to_half = [](at::ScalarType& t) {
      if (t == at::kBFloat16) t = at::kHalf;
    };
    if (r.dit_dtype == at::kBFloat16 || r.text_dtype == at::kBFloat16 ||
        r.kv_dtype == at::kBFloat16) {
      to_half(r.dit_dtype);
      to_half(r.text_dtype);
      if (r.kv_dtype) to_half(*r.kv_dtype);
      fall_back(fmt::format("bf16 unavailable on {} (needs sm_80+), using fp16", sm));
    }
  }
  // automatic takes FlashAttention-3 on an sm_90 device in builds that carry it
  // (runtime/fa3_attention.h); a capability forced below that runs what such a card runs: cuDNN.
  if (r.dit.attention == AttentionBackend::automatic && caps.real_sm == 90 && caps.sm < 90 &&
      (r.dit_dtype == at::kBFloat16 || r.dit_dtype == at::kHalf))
    r.dit.attention = AttentionBackend::cudnn;
}

Session::Session() = default;
Session::~Session() = default;

at::Tensor Session::embed(const PromptMix& mix) const {
  mix.validate("prompts");
  if (!prompts) throw Error("this session has no text encoder");
  std::vector<at::Tensor> embeddings;
  std::vector<double> weights;
  for (const auto& p : mix.prompts) {
    embeddings.push_back(prompts->get(p.text));
    weights.push_back(p.weight);
  }
  return blend_embeddings(embeddings, weights, mix.blend);
}

// Host copies of every weight the factory has read, and the objects kept across sessions.
struct SessionFactory::Resident {
  std::optional<WeightStore> dit;
  std::optional<WeightStore> lora;
  WanConfig config;
  std::map<DitKey, std::weak_ptr<const CausalWanModel>> models;
  std::deque<std::shared_ptr<const CausalWanModel>> recent;  // newest first, one per weight set
  std::optional<WeightStore> taehv, wan_vae;
  std::optional<WeightStore> vace;  // vace_* tensors (null: VACE off, see vace_status)
  bool vace_checked = false;
  std::string vace_status = "VACE: not looked for yet (no session opened)";
  std::optional<WeightStore> vace_vae;  // the random models' VAE with its encoder
  // The Wan VAE encoder built on the GPU (shared_encoder): every input's encoder shares it.
  std::optional<WanVaeEncoder> built_encoder;
  // TAEHV's encoder (a preset's input_encoder: taehv), built once and shared like built_encoder.
  std::shared_ptr<const TaehvEncoder> taehv_encoder;
  std::shared_ptr<BlackInactiveLatents> black_inactive;  // black_inactive_latents()
  std::shared_ptr<TextEncoder> text;
  std::shared_ptr<PromptCache> prompts;
};

SessionFactory::SessionFactory(ModelSpec model, SessionOverrides overrides)
    : model_(std::move(model)),
      overrides_(overrides),
      device_(
          model_.device.value_or(at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU))),
      resident_(std::make_unique<Resident>()) {}

SessionFactory::~SessionFactory() = default;

RuntimeChoice SessionFactory::runtime_for(const Preset& preset) const {
  RuntimeChoice r = choose_runtime(preset, device_);
  if (overrides_.attention) r.dit.attention = *overrides_.attention;
  if (overrides_.fused_kernels) r.dit.fused_kernels = *overrides_.fused_kernels;
  if (overrides_.cuda_graphs) r.dit.cuda_graphs = *overrides_.cuda_graphs;
  if (overrides_.fp8_attention) r.dit.fp8_attention = *overrides_.fp8_attention;
  if (overrides_.fp8_linears) r.dit.fp8_linears = *overrides_.fp8_linears;
  if (device_.is_cuda())
    fit_to_device(r, probe_capabilities(device_, overrides_.force_sm), preset.name);
  return r;
}

GeneratorOptions SessionFactory::generator_options(const Preset& preset,
                                                   const RuntimeChoice& runtime, int height,
                                                   int width) const {
  GeneratorOptions o;
  o.model = resident_->config;
  o.apply(preset);
  o.device = runtime.device;
  o.dtype = runtime.dit_dtype;
  o.kv_dtype = runtime.kv_dtype;
  o.runtime = runtime.dit;
  o.reserve_up_front = runtime.reserve_up_front;
  o.lora_alpha = model_.lora_alpha;
  o.latent_height = height / 8;
  o.latent_width = width / 8;
  return o;
}

std::shared_ptr<const CausalWanModel> SessionFactory::dit_for(const GeneratorOptions& o) {
  Resident& r = *resident_;
  const DitKey key = dit_key(o);
  if (auto it = r.models.find(key); it != r.models.end())
    if (auto model = it->second.lock()) return model;
  // Another layer loop over the same weights (fused kernels, attention backend, FP8 linears):
  // share the device tensors of a live model of the same dtype, preferring one with the same FP8
  // linears (nothing to quantise).
  for (const bool same_fp8 : {true, false}) {
    for (const auto& [other_key, weak] : r.models) {
      if (std::get<0>(other_key) != o.dtype ||
          (same_fp8 && std::get<2>(other_key) != o.runtime.fp8_linears))
        continue;
      if (auto other = weak.lock()) {
        auto model = other->sharing_weights(o.runtime);
        r.models[key] = model;
        return model;
      }
    }
  }
  auto model = build_dit(o);
  r.models[key] = model;
  return model;
}

std::shared_ptr<const CausalWanModel> SessionFactory::build_dit(const GeneratorOptions& o) {
  Resident& r = *resident_;
  WeightStore merged = r.lora ? merge_lora(*r.dit, *r.lora, o.lora_alpha) : *r.dit;
  auto model = attach_vace(
      std::make_shared<const CausalWanModel>(merged, o.model, o.device, o.dtype, o.runtime));
  ++stats_.dit_builds;
  return model;
}

std::shared_ptr<const CausalWanModel> SessionFactory::dit_for(const Session& s,
                                                              const GeneratorOptions& o) {
  if (s.baked.empty()) return dit_for(o);
  const std::shared_ptr<const CausalWanModel> current = s.generator->model();
  // Another layer loop over the same baked weights, or (another dtype) the host weights built
  // and baked again: never the cached, unbaked ones.
  if (current->dtype() == o.dtype) return current->sharing_weights(o.runtime);
  auto model = build_dit(o);
  for (const auto& bake : s.baked) model->merge_style_loras(bake);
  return model;
}

BakeResult SessionFactory::bake_style_loras(Session& s, const std::vector<ActiveStyleLora>& loras) {
  const std::shared_ptr<const CausalWanModel> model = s.generator->model();
  // From now on these weights are this session's: no later session or preset change may take
  // them for the plain model.
  Resident& r = *resident_;
  std::erase_if(r.models, [&](const auto& entry) {
    const auto other = entry.second.lock();
    return !other || same_weights(*other, *model);
  });
  std::erase_if(r.recent, [&](const auto& kept) { return same_weights(*kept, *model); });
  synchronize(s.device);
  const auto began = std::chrono::steady_clock::now();
  BakeResult result;
  result.matrices = model->merge_style_loras(loras);
  synchronize(s.device);
  result.ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
  s.baked.push_back(loras);
  return result;
}

// VACE weights once per factory: random for the tiny model, else the explicit file or the
// folder's. Only an explicit file's problems are errors; otherwise VACE is off with a message.
void SessionFactory::load_vace() {
  Resident& r = *resident_;
  if (r.vace_checked) return;
  r.vace_checked = true;
  if (!model_.vace) {
    r.vace_status = "VACE: off";
    return;
  }
  if (model_.full_random && !model_.random_vace) {
    r.vace_status = "VACE: off (random full-size model)";
    return;
  }
  if (model_.tiny_random || model_.full_random) {
    r.vace = make_random_vace_weights(r.config, 96, 7);
    ++stats_.weight_loads;
  } else {
    auto file = model_.vace_file;
    if (!file && !model_.folder.empty()) file = find_vace_file(model_.folder);
    if (!file) {
      r.vace_status = fmt::format(
          "VACE: off (no Wan2_1-VACE_module_1_3B_bf16.safetensors or "
          "Wan2.1-VACE-1.3B/diffusion_pytorch_model.safetensors in '{}')",
          model_.folder.string());
      log::info("{}", r.vace_status);
      return;
    }
    try {
      r.vace = pinned_for(load_vace_weights(*file), device_);
      ++stats_.weight_loads;
    } catch (const Error& e) {
      if (model_.vace_file) throw;
      r.vace_status = fmt::format("VACE: off ({})", e.what());
      log::warn("{}", r.vace_status);
      return;
    }
  }
  try {
    const VaceLayout layout = infer_vace_layout(*r.vace, r.config);
    r.vace_status = fmt::format("VACE: {} blocks feeding DiT layers {}", layout.blocks(),
                                fmt::join(layout.layers, ", "));
    log::info("{}", r.vace_status);
  } catch (const Error& e) {
    if (model_.vace_file) throw;
    r.vace.reset();
    r.vace_status = fmt::format("VACE: off ({})", e.what());
    log::warn("{}", r.vace_status);
  }
}

std::shared_ptr<const CausalWanModel> SessionFactory::attach_vace(
    std::shared_ptr<const CausalWanModel> model) {
  Resident& r = *resident_;
  if (!r.vace) return model;
  try {
    return model->with_vace(*r.vace);
  } catch (const Error& e) {
    // Weights of another model size: the stream runs without VACE, unless the user named them.
    if (model_.vace_file) throw;
    r.vace.reset();
    r.vace_status = fmt::format("VACE: off ({})", e.what());
    log::warn("{}", r.vace_status);
    return model;
  }
}

bool SessionFactory::vace_available() const { return resident_->vace.has_value(); }
const std::string& SessionFactory::vace_status() const { return resident_->vace_status; }

// The Wan VAE with its encoder: the random models' (the full-size one with random_vace), else
// the folder's.
const WeightStore& SessionFactory::encoder_weights(const char* what) {
  Resident& r = *resident_;
  if (model_.tiny_random || (model_.full_random && model_.random_vace)) {
    if (!r.vace_vae)
      r.vace_vae = model_.tiny_random
                       ? make_random_wan_vae_weights(WanVaeConfig::tiny(), 0, true)
                       : make_random_wan_vae_weights(WanVaeConfig::wan_2_1(), 5, true);
    return *r.vace_vae;
  }
  const WeightStore* weights = wan_vae_weights();
  if (!weights)
    throw IoError(fmt::format("{} needs the Wan VAE's encoder: no Wan2.1_VAE.pth in '{}'", what,
                              model_.folder.string()));
  return *weights;
}

namespace {
WanVaeEncoderOptions encoder_options(at::Device device) {
  WanVaeEncoderOptions options;
  options.device = device;
  options.dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  return options;
}

}  // namespace

// On a GPU the encoder is built once (its weights converted to the device, the encoders' dtype
// and layout: 35.8 ms of every camera pick on an H100 at bc6306c, input trace "encoder made")
// and each input's encoder shares it (WanVaeEncoder::share), the same bits: the graph is the
// same. On the CPU a build is cheap and RAM scarcer: each input builds its own.
WanVaeEncoder SessionFactory::shared_encoder(const char* what) {
  if (!device_.is_cuda()) return WanVaeEncoder(encoder_weights(what), encoder_options(device_));
  if (!resident_->built_encoder)
    resident_->built_encoder.emplace(encoder_weights(what), encoder_options(device_));
  return resident_->built_encoder->share();
}

std::unique_ptr<VaceContextEncoder> SessionFactory::vace_encoder(InputEncoderKind kind) {
  if (kind == InputEncoderKind::wan)
    return std::make_unique<VaceContextEncoder>(shared_encoder("VACE"));
  return std::make_unique<VaceContextEncoder>(taehv_encoder());
}

std::shared_ptr<const TaehvEncoder> SessionFactory::taehv_encoder() {
  Resident& r = *resident_;
  if (!r.taehv_encoder) {
    WeightStore weights;
    if (model_.tiny_random || model_.full_random) {
      weights = make_random_taehv_encoder_weights(4);
    } else {
      const auto file = taehv_file(model_);
      if (!file)
        throw IoError(fmt::format(
            "an input with input_encoder taehv needs TAEHV's weights: no taew2_1.pth or "
            "taew2_1.safetensors in '{}' (or set the preset's input_encoder to wan)",
            model_.folder.string()));
      weights = load_taehv_encoder_weights(*file);
    }
    ++stats_.weight_loads;
    // fp16 as TAEHV's decoder runs on a GPU; float32 on the CPU.
    r.taehv_encoder = std::make_shared<const TaehvEncoder>(
        weights, device_, device_.is_cuda() ? at::kHalf : at::kFloat);
  }
  return r.taehv_encoder;
}

std::shared_ptr<BlackInactiveLatents> SessionFactory::black_inactive_latents() {
  if (!resident_->black_inactive)
    resident_->black_inactive = std::make_shared<BlackInactiveLatents>();
  return resident_->black_inactive;
}

std::unique_ptr<WanVaeEncoder> SessionFactory::video_encoder() {
  return std::make_unique<WanVaeEncoder>(shared_encoder("video-to-video"));
}

std::unique_ptr<VideoToVideo> SessionFactory::video_to_video(
    InputEncoderKind kind, double strength, std::shared_ptr<VaceFrameSource> source,
    std::shared_ptr<EncodeWorker> worker) {
  if (kind == InputEncoderKind::taehv)
    return std::make_unique<VideoToVideo>(taehv_encoder(), strength, std::move(source),
                                          std::move(worker));
  return std::make_unique<VideoToVideo>(video_encoder(), strength, std::move(source),
                                        std::move(worker));
}

void SessionFactory::keep_recent(std::shared_ptr<const CausalWanModel> model) {
  if (!model || !device_.is_cuda()) return;  // on the CPU a rebuild is cheap and RAM is scarcer
  auto& recent = resident_->recent;
  // One entry per weight set: the newest variant of it stands for all (they share tensors).
  std::erase_if(recent, [&](const auto& kept) { return same_weights(*kept, *model); });
  recent.push_front(std::move(model));
  while (recent.size() > kRecentWeightSets) recent.pop_back();
  const DeviceMemory memory = device_memory(device_);
  if (memory.total_gib > 0 && memory.free_gib < kFreeAfterKeeping * memory.total_gib &&
      !recent.empty()) {
    // The oldest weights go; what they held returns to the allocator's cache for the next DiT.
    log::info("device memory is short ({:.1f} GiB free): not keeping older DiT weights on it",
              memory.free_gib);
    recent.pop_back();
  }
}

std::pair<std::filesystem::path, std::filesystem::path> SessionFactory::text_encoder_files() const {
  auto weights = model_.text_encoder_file;
  auto spiece = model_.tokenizer_file;
  if (!weights && !model_.folder.empty())
    weights = find_in(model_.folder, "models_t5_umt5-xxl-enc-bf16.pth");
  if (!spiece && !model_.folder.empty()) spiece = find_in(model_.folder, "spiece.model");
  if (!weights || !spiece)
    throw ConfigError(
        "prompts need the umT5 text encoder: models_t5_umt5-xxl-enc-bf16.pth and spiece.model "
        "(a model folder, or --text-encoder and --tokenizer)");
  return {*weights, *spiece};
}

void SessionFactory::ensure_text(const RuntimeChoice& runtime) {
  Resident& r = *resident_;
  if (r.text || r.prompts) return;
  if (model_.full_random) {
    // No umT5 (11 GB): the text's hash seeds the embeddings, so a prompt always gives the same
    // ones, and a cache miss costs milliseconds instead of an encode (timings leave umT5 out).
    const WanConfig config = r.config;
    const at::Device device = device_;
    r.prompts = std::make_shared<PromptCache>(
        [config, device](const std::string& p) {
          auto gen = at::detail::createCPUGenerator(std::hash<std::string>{}(p));
          return (at::randn({1, config.text_len, config.text_dim}, gen) * 0.1).to(device);
        },
        size_t{256} << 20);
    return;
  }
  const TextEncoderOptions placement = text_placement(runtime);
  if (model_.tiny_random) {
    const UMT5Config c = UMT5Config::tiny(r.config.text_dim);
    r.text = std::make_shared<TextEncoder>(
        Tokenizer::byte_fallback(c.vocab, r.config.text_len),
        std::make_unique<UMT5Encoder>(make_random_umt5_weights(c, 2), c, placement.device,
                                      placement.dtype));
  } else {
    const auto [weights, spiece] = text_encoder_files();
    r.text = TextEncoder::open(weights, spiece, placement);
  }
  ++stats_.weight_loads;
  TextEncoder* text = r.text.get();
  const at::Device device = device_;
  r.prompts = std::make_shared<PromptCache>(
      [text, device](const std::string& p) { return text->encode(p).to(device); },
      size_t{256} << 20);
}

// The tiny random umT5 stays float32 everywhere: its outputs are compared across devices.
TextEncoderOptions SessionFactory::text_placement(const RuntimeChoice& runtime) const {
  return {runtime.text_device, model_.tiny_random ? at::kFloat : runtime.text_dtype};
}

void SessionFactory::place_text(const RuntimeChoice& runtime) {
  Resident& r = *resident_;
  if (!r.text) return;
  const TextEncoderOptions want = text_placement(runtime);
  const TextEncoderOptions have = r.text->options();
  if (want.device == have.device && want.dtype == have.dtype) return;
  // A prefetch may be encoding on the cache's thread: move between encodes. Cached embeddings
  // stay valid (they live on the session's device, whatever encoded them).
  r.prompts->while_not_encoding([&] { r.text->move_to(want); });
  ++stats_.text_moves;
  log::info("text encoder moved to {} ({})", want.device.str(), c10::toString(want.dtype));
}

DecoderKind SessionFactory::live_decoder_kind(DecoderKind asked) {
  const bool has_wan_vae =
      asked == DecoderKind::wan && !model_.tiny_random && !model_.full_random && wan_vae_weights();
  return has_wan_vae ? DecoderKind::wan : DecoderKind::taehv;
}

std::unique_ptr<StreamingDecoder> SessionFactory::decoder_for(const RuntimeChoice& runtime) {
  Resident& r = *resident_;
  if (live_decoder_kind(runtime.decoder) == DecoderKind::wan)
    return std::make_unique<WanVaeDecoder>(*r.wan_vae, wan_vae_options(device_));
  if (runtime.decoder == DecoderKind::wan)
    log::warn("decoder wan: '{}' has no Wan2.1_VAE.pth, decoding live with TAEHV",
              model_.folder.string());
  if (!r.taehv) {
    if (model_.tiny_random || model_.full_random) {
      r.taehv = make_random_taehv_weights(3);
    } else {
      const auto file = taehv_file(model_);
      if (!file) throw ConfigError("decoding frames needs TAEHV weights (taew2_1.pth)");
      r.taehv = load_taehv_weights(*file);
    }
    ++stats_.weight_loads;
  }
  const bool fp16 = device_.is_cuda() && !model_.tiny_random;
  return make_taehv_decoder(*r.taehv, {device_, fp16 ? at::kHalf : at::kFloat});
}

std::unique_ptr<StreamingDecoder> SessionFactory::live_decoder(const Preset& preset) {
  return decoder_for(runtime_for(preset));
}

const WeightStore* SessionFactory::wan_vae_weights() {
  Resident& r = *resident_;
  if (r.wan_vae) return &*r.wan_vae;
  if (model_.tiny_random) {
    r.wan_vae = make_random_wan_vae_weights(WanVaeConfig::tiny(), 0, false);
  } else {
    auto file = model_.wan_vae_file;
    if (!file && !model_.folder.empty()) file = find_wan_vae_file(model_.folder);
    if (!file) return nullptr;
    log::info("Wan VAE: {}", file->string());
    r.wan_vae = load_wan_vae_weights(*file);
  }
  ++stats_.weight_loads;
  return &*r.wan_vae;
}

std::unique_ptr<WanVaeDecoder> SessionFactory::export_decoder(std::optional<at::Device> device) {
  const WeightStore* weights = wan_vae_weights();
  if (!weights)
    throw IoError(fmt::format(
        "no Wan VAE in the model folder '{}': the quality re-decode needs Wan2.1_VAE.pth "
        "(Wan-AI/Wan2.1-T2V-1.3B)",
        model_.folder.string()));
  return std::make_unique<WanVaeDecoder>(*weights, wan_vae_options(device.value_or(device_)));
}

std::unique_ptr<Session> SessionFactory::open(const Preset& preset, int height, int width) {
  Resident& r = *resident_;
  if (!r.dit && !model_.tiny_random && !model_.full_random && !model_.dit_file) {
    const auto missing = missing_model_files(model_.folder);
    if (!missing.empty())
      throw IoError(fmt::format("model folder '{}' lacks: {}", model_.folder.string(),
                                fmt::join(missing, ", ")));
  }
  const bool wants_text = overrides_.text_encoder && (!model_.full_random || model_.random_prompts);
  // A missing text encoder fails before the DiT (gigabytes) is read.
  if (wants_text && !r.text && !model_.tiny_random && !model_.full_random) text_encoder_files();
  if (!r.dit) {
    if (model_.tiny_random || model_.full_random) {
      r.config = model_.tiny_random ? WanConfig::tiny() : WanConfig::wan_1_3b();
      // Built once on the host and converted per session: one resident copy (bf16 for a GPU,
      // the 1.3B model's 5.7 GB in float32 would double the copy time of a rebuild).
      r.dit = pinned_for(
          make_random_wan_weights(r.config, 1, device_.is_cuda() ? at::kBFloat16 : at::kFloat),
          device_);
    } else {
      const DitFiles files = model_.dit_file ? DitFiles{*model_.dit_file, model_.lora_file}
                                             : find_dit_files(model_.folder);
      log::info("DiT weights: {}", files.weights.string());
      r.dit = pinned_for(load_dit_weights(files.weights), device_);
      const int64_t dim = r.dit->get("patch_embedding.weight").size(0);
      const WanConfig base = WanConfig::wan_1_3b();
      r.config = WanConfig::infer(*r.dit, base.num_heads * dim / base.dim, base.text_len);
      const auto lora = model_.lora_file ? model_.lora_file : files.lora;
      if (lora) {
        log::info("LoRA: {}", lora->string());
        r.lora = load_dit_lora(*lora);
        ++stats_.weight_loads;
      }
    }
    ++stats_.weight_loads;
  }
  load_vace();
  if (model_.tiny_random) {
    height = height ? height : 64;
    width = width ? width : 64;
  } else {
    height = height ? height : preset.height;
    width = width ? width : preset.width;
  }
  if (height % 16 || width % 16 || height <= 0 || width <= 0)
    throw ConfigError(fmt::format(
        "resolution {}x{}: height and width must be positive multiples of 16", height, width));

  auto s = std::make_unique<Session>();
  s->preset = preset;
  s->runtime = runtime_for(preset);
  for (const auto& line : s->runtime.fallbacks) log::warn("{}", line);
  s->device = device_;
  s->height = height;
  s->width = width;
  const GeneratorOptions o = generator_options(preset, s->runtime, height, width);
  s->generator = std::make_unique<StreamGenerator>(dit_for(o), o);
  if (wants_text) {
    ensure_text(s->runtime);
    s->text = r.text;
    s->prompts = r.prompts;
  }
  if (overrides_.live_decoder) {
    auto live = decoder_for(s->runtime);
    const int64_t part = live_decode_part();
    warm_up_decoder(*live, device_, part > 0 ? part : o.frames_per_block, o.model.in_channels,
                    o.latent_height, o.latent_width);
    s->decoder = std::make_unique<AsyncDecoder>(std::move(live), device_, part);
  }
  s->profiler = std::make_unique<RegionProfiler>(device_);
  return s;
}

namespace {

// Whether a generator of options `o` runs exactly what one of `old` runs (the same DiT, sampling,
// cache and graphs): then a preset change leaves the generator alone.
bool same_generator(const GeneratorOptions& o, const GeneratorOptions& old) {
  return dit_key(o) == dit_key(old) && o.denoising_steps == old.denoising_steps &&
         o.warp_denoising_step == old.warp_denoising_step &&
         o.timestep_shift == old.timestep_shift && o.frames_per_block == old.frames_per_block &&
         o.local_attn_frames == old.local_attn_frames && o.sink_frames == old.sink_frames &&
         o.global_sink == old.global_sink && o.kv_dtype == old.kv_dtype &&
         o.runtime.cuda_graphs == old.runtime.cuda_graphs &&
         o.reserve_up_front == old.reserve_up_front;
}

}  // namespace

PresetChange SessionFactory::change_preset(Session& s, const Preset& preset) {
  PresetChange change;
  const RuntimeChoice runtime = runtime_for(preset);
  for (const auto& line : runtime.fallbacks) log::warn("{}", line);
  const GeneratorOptions o = generator_options(preset, runtime, s.height, s.width);
  const GeneratorOptions& old = s.generator->options();
  const bool same_dit = dit_key(o) == dit_key(old);
  const bool unchanged = same_generator(o, old);
  if (!unchanged && s.generator->can_continue_with(o)) {
    // Same weights and precision, same cache geometry: the K/V in the cache are what the new
    // layer loop would have written (up to rounding), so the stream runs on without a re-cache,
    // exactly as if the new preset had been chosen before the last block.
    std::shared_ptr<const CausalWanModel> model = same_dit ? s.generator->model() : dit_for(s, o);
    s.generator->continue_with(std::move(model), o);
    change.stream_continued = true;
    change.caches_kept = true;
  } else if (!unchanged) {
    std::optional<StreamState> state;
    if (s.generator->started()) state = s.generator->release_state();
    std::shared_ptr<const CausalWanModel> model = same_dit ? s.generator->model() : nullptr;
    // The old DiT stays alive until the new one exists: its weights may be shared with it.
    std::shared_ptr<const CausalWanModel> previous = s.generator->model();
    if (!same_dit && s.baked.empty()) keep_recent(previous);
    // A baked session's next DiT comes from its current one (or its bakes): built first.
    if (!model && !s.baked.empty()) {
      const int64_t builds = stats_.dit_builds;
      model = dit_for(s, o);
      change.dit_rebuilt = stats_.dit_builds > builds;
    }
    s.generator.reset();  // frees the old KV cache (and DiT, when replaced) before the new one
    if (!model) {
      const int64_t builds = stats_.dit_builds;
      model = dit_for(o);
      change.dit_rebuilt = stats_.dit_builds > builds;
    }
    previous.reset();
    s.generator = std::make_unique<StreamGenerator>(std::move(model), o);
    s.generator->set_style_loras(s.loras);  // before the re-cache of the resumed stream
    if (state) {
      s.generator->resume(std::move(*state));
      change.stream_continued = true;
    }
    change.generator_rebuilt = true;
  }
  follow_runtime(s, preset, runtime, change);
  return change;
}

SessionFactory::StreamPreset SessionFactory::change_preset_beside(Session& s, const Preset& preset,
                                                                  const GeneratorOptions& running) {
  if (!s.baked.empty())
    throw Error("change_preset_beside: a session with baked LoRAs runs its own generator");
  StreamPreset next;
  const RuntimeChoice runtime = runtime_for(preset);
  for (const auto& line : runtime.fallbacks) log::warn("{}", line);
  next.options = generator_options(preset, runtime, s.height, s.width);
  next.same_generator = same_generator(next.options, running);
  if (dit_key(next.options) != dit_key(running)) {
    const int64_t builds = stats_.dit_builds;
    next.dit = dit_for(next.options);
    next.change.dit_rebuilt = stats_.dit_builds > builds;
  }
  follow_runtime(s, preset, runtime, next.change);
  return next;
}

// The session's live decoder and text encoder where `runtime` wants them; then it is the preset's.
void SessionFactory::follow_runtime(Session& s, const Preset& preset, const RuntimeChoice& runtime,
                                    PresetChange& change) {
  // Judged by the decoder really run (a random or Wan-VAE-less model decodes with TAEHV).
  if (s.decoder && live_decoder_kind(runtime.decoder) != live_decoder_kind(s.runtime.decoder)) {
    auto live = decoder_for(runtime);
    s.decoder = std::make_unique<AsyncDecoder>(std::move(live), device_, live_decode_part());
    change.decoder_changed = true;
  }
  if (s.text) {
    const int64_t moved_before = stats_.text_moves;
    place_text(runtime);
    change.text_encoder_moved = stats_.text_moves != moved_before;
  }
  s.preset = preset;
  s.runtime = runtime;
}

}  // namespace longlive
