#include "longlive/performance.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>

#include "longlive/async_decoder.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/model_files.h"
#include "longlive/profiler.h"
#include "longlive/text_encoder.h"
#include "longlive/wan_vae.h"

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

Session::~Session() = default;

std::unique_ptr<StreamingDecoder> open_live_decoder(const std::filesystem::path& folder,
                                                    const Preset& preset, at::Device device) {
  if (preset.decoder == DecoderKind::wan) {
    if (const auto vae = find_wan_vae_file(folder)) {
      WanVaeDecoderOptions options;
      options.device = device;
      options.dtype = device.is_cpu() ? at::kFloat : at::kBFloat16;
      log::info("live decoder: Wan VAE ({})", vae->string());
      return std::make_unique<WanVaeDecoder>(load_wan_vae_weights(*vae), options);
    }
    log::warn(
        "preset {} decodes live with the Wan VAE, but '{}' has no Wan2.1_VAE.pth: using "
        "TAEHV",
        preset.name, folder.string());
  }
  auto taehv = find_in(folder, "taew2_1.pth");
  if (!taehv) taehv = find_in(folder, "taew2_1.safetensors");
  return make_taehv_decoder(load_taehv_weights(*taehv),
                            {device, device.is_cpu() ? at::kFloat : at::kHalf});
}

namespace {

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

}  // namespace

std::unique_ptr<Session> Session::open(const ModelSpec& model, const Preset& preset, int height,
                                       int width) {
  auto s = std::make_unique<Session>();
  s->device =
      model.device.value_or(at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU));
  GeneratorOptions o;
  o.apply(preset);
  o.device = s->device;
  o.dtype = s->device.is_cpu() ? at::kFloat : at::kBFloat16;
  WeightStore dit;
  std::optional<WeightStore> lora;
  std::unique_ptr<StreamingDecoder> live_decoder;
  if (model.tiny_random) {
    o.model = WanConfig::tiny();
    height = height ? height : 64;
    width = width ? width : 64;
    dit = make_random_wan_weights(o.model, 1, o.dtype);
    const UMT5Config c = UMT5Config::tiny(o.model.text_dim);
    s->text = std::make_unique<TextEncoder>(
        Tokenizer::byte_fallback(c.vocab, o.model.text_len),
        std::make_unique<UMT5Encoder>(make_random_umt5_weights(c, 2), c, s->device, at::kFloat));
    live_decoder = make_taehv_decoder(make_random_taehv_weights(3), {s->device, at::kFloat});
  } else {
    const auto missing = missing_model_files(model.folder);
    if (!missing.empty())
      throw IoError(fmt::format("model folder '{}' lacks: {}", model.folder.string(),
                                fmt::join(missing, ", ")));
    height = height ? height : preset.height;
    width = width ? width : preset.width;
    const DitFiles files = find_dit_files(model.folder);
    dit = load_dit_weights(files.weights);
    o.model = WanConfig::infer(dit, dit.get("patch_embedding.weight").size(0) / 128, 512);
    if (files.lora) lora = load_dit_lora(*files.lora);
    const at::Device text_device =
        preset.text_encoder_device == PlacementDevice::cpu ? at::Device(at::kCPU) : s->device;
    s->text = TextEncoder::open(*find_in(model.folder, "models_t5_umt5-xxl-enc-bf16.pth"),
                                *find_in(model.folder, "spiece.model"),
                                {text_device, text_device.is_cpu() ? at::kFloat : at::kBFloat16});
    live_decoder = open_live_decoder(model.folder, preset, s->device);
  }
  s->profiler = std::make_unique<RegionProfiler>(s->device);
  if (height % 16 || width % 16 || height <= 0 || width <= 0)
    throw ConfigError(fmt::format(
        "resolution {}x{}: height and width must be positive multiples of 16", height, width));
  s->height = height;
  s->width = width;
  o.latent_height = height / 8;
  o.latent_width = width / 8;
  s->generator = std::make_unique<StreamGenerator>(dit, o, lora ? &*lora : nullptr);
  warm_up_decoder(*live_decoder, s->device, o.frames_per_block, o.model.in_channels,
                  o.latent_height, o.latent_width);
  s->decoder = std::make_unique<AsyncDecoder>(std::move(live_decoder), s->device);
  TextEncoder* text = s->text.get();
  const at::Device device = s->device;
  s->prompts = std::make_unique<PromptCache>(
      [text, device](const std::string& p) { return text->encode(p).to(device); },
      size_t{256} << 20);
  return s;
}

at::Tensor Session::embed(const PromptMix& mix) const {
  mix.validate("prompts");
  std::vector<at::Tensor> embeddings;
  std::vector<double> weights;
  for (const auto& p : mix.prompts) {
    embeddings.push_back(prompts->get(p.text));
    weights.push_back(p.weight);
  }
  return blend_embeddings(embeddings, weights, mix.blend);
}

Performance::Performance(ModelSpec model, Preset preset, int height, int width)
    : model_(std::move(model)), preset_(std::move(preset)), height_(height), width_(width) {}

Performance::~Performance() = default;

void Performance::ensure_session() {
  if (!session_) session_ = Session::open(model_, preset_, height_, width_);
}

TimelineEvent& Performance::record(EventKind kind) {
  TimelineEvent e;
  e.kind = kind;
  e.block = timeline_.blocks;
  e.time_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began_).count();
  timeline_.events.push_back(std::move(e));
  return timeline_.events.back();
}

void Performance::restart() {
  session_->generator->start(session_->embed(mix_), seed_);
  session_->decoder->reset();
}

void Performance::start(const PromptMix& mix, uint64_t seed) {
  mix.validate("prompts");
  ensure_session();
  const at::Tensor embeds = session_->embed(mix);  // fails before anything changes
  if (!active_) {
    timeline_ = Timeline{};
    timeline_.model = model_.tiny_random ? "tiny-random" : model_.folder.string();
    timeline_.preset = preset_.name;
    timeline_.height = session_->height;
    timeline_.width = session_->width;
    began_ = std::chrono::steady_clock::now();
  }
  mix_ = mix;
  seed_ = seed;
  session_->generator->start(embeds, seed);
  session_->decoder->reset();
  active_ = true;
  paused_ = false;
  auto& e = record(EventKind::start);
  e.mix = mix;
  e.seed = seed;
}

void Performance::cut(const PromptMix& mix) {
  if (!active_) throw Error("cut: no video is running (start one first)");
  session_->generator->switch_prompt(session_->embed(mix));
  mix_ = mix;
  record(EventKind::cut).mix = mix;
}

void Performance::transition(const PromptMix& mix, const TransitionOptions& options) {
  if (!active_) throw Error("transition: no video is running (start one first)");
  session_->generator->transition_to(session_->embed(mix), options);
  mix_ = mix;
  auto& e = record(EventKind::transition);
  e.mix = mix;
  e.transition = options;
}

void Performance::set_preset(const Preset& preset) {
  preset_ = preset;
  session_.reset();  // a dtype or window change invalidates every cache anyway
  if (!active_) return;
  record(EventKind::preset).preset = preset.name;
  try {
    ensure_session();
    restart();
  } catch (...) {
    abort();  // no session to continue with
    throw;
  }
}

void Performance::set_resolution(int height, int width) {
  if (active_)
    throw Error(
        fmt::format("cannot change the video size to {}x{} while a video runs: stop it "
                    "first",
                    height, width));
  const bool session_fits = session_ && session_->height == height && session_->width == width;
  if (!session_fits && (height != height_ || width != width_)) session_.reset();
  height_ = height;
  width_ = width;
}

void Performance::pause() {
  if (!active_ || paused_) return;
  paused_ = true;
  record(EventKind::pause);
}

void Performance::resume() {
  if (!active_ || !paused_) return;
  paused_ = false;
  record(EventKind::resume);
}

void Performance::stop() {
  if (!active_) return;
  record(EventKind::stop);
  active_ = false;
  paused_ = false;
}

void Performance::prefetch(const std::string& prompt) {
  ensure_session();
  session_->prompts->prefetch(prompt);
}

void Performance::abort() {
  session_.reset();
  active_ = false;
  paused_ = false;
}

bool Performance::in_transition() const {
  return session_ && session_->generator->transition_active();
}

at::Tensor Performance::next_block() {
  if (!running()) throw Error("next_block: the video is not running");
  at::Tensor latents = session_->generator->next_block();
  ++timeline_.blocks;
  return latents;
}

void Performance::apply(const TimelineEvent& e, const PresetLookup& presets) {
  switch (e.kind) {
    case EventKind::start:
      start(e.mix, e.seed);
      break;
    case EventKind::cut:
      cut(e.mix);
      break;
    case EventKind::transition:
      transition(e.mix, e.transition);
      break;
    case EventKind::preset:
      set_preset(presets(e.preset));
      break;
    case EventKind::pause:
      pause();
      break;
    case EventKind::resume:
      resume();
      break;
    case EventKind::stop:
      stop();
      break;
  }
}

void replay(const Timeline& timeline, const ModelSpec& model, const PresetLookup& presets,
            const std::function<void(const ReplayBlock&)>& on_block, const std::string& origin) {
  check_presets(timeline, presets, origin);
  Performance p(model, presets(timeline.preset), timeline.height, timeline.width);
  size_t next = 0;
  const auto& events = timeline.events;
  while (p.blocks() < timeline.blocks) {
    while (next < events.size() && events[next].block == p.blocks())
      p.apply(events[next++], presets);
    if (!p.running())
      throw ConfigError(fmt::format(
          "{}: the video is {} at block {} but the timeline has {} blocks (a pause or stop "
          "without a resume or start at that block)",
          origin, p.active() ? "paused" : "stopped", p.blocks(), timeline.blocks));
    const int64_t index = p.blocks();
    at::Tensor latents = p.next_block();
    on_block({index, std::move(latents), p.session(), p.mix().label()});
  }
  while (next < events.size()) p.apply(events[next++], presets);
}

}  // namespace longlive
