#include "longlive/engine.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <variant>

#include "longlive/async_decoder.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/model_files.h"
#include "longlive/profiler.h"
#include "longlive/text_encoder.h"

namespace longlive {
namespace {

using Clock = std::chrono::steady_clock;

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

struct Engine::Command {
  enum class Kind { start, switch_prompt, prefetch, preset, pause, resume, stop } kind;
  std::string prompt;
  uint64_t seed = 0;
  Preset preset;
  Clock::time_point issued = Clock::now();
};

// Everything one model + preset needs; rebuilt when the preset changes.
struct Engine::Session {
  std::unique_ptr<StreamGenerator> generator;
  std::unique_ptr<TextEncoder> text;
  std::unique_ptr<PromptCache> prompts;
  // Decodes on its own CUDA stream: block k's frames are taken while block k+1 generates.
  std::unique_ptr<AsyncDecoder> decoder;
  // What the frames of each block in the decoder's queue belong to.
  struct QueuedBlock {
    std::string prompt;
    bool first_of_prompt = false;
    std::optional<Clock::time_point> switch_issued;
  };
  std::deque<QueuedBlock> queued;
  std::unique_ptr<RegionProfiler> profiler;
  at::Device device = at::kCPU;
  bool running = false;
  std::string prompt;
  uint64_t seed = 0;
  int64_t frame_index = 0;
  std::optional<Clock::time_point> switch_issued;
  bool first_after_switch = false;
};

Engine::Engine(ModelSpec model, Preset preset, Callbacks callbacks, int height, int width)
    : model_(std::move(model)),
      callbacks_(std::move(callbacks)),
      height_(height),
      width_(width),
      preset_(std::move(preset)) {
  stats_.preset = preset_.name;
  worker_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

void Engine::post(Command command) {
  {
    std::lock_guard lock(mutex_);
    commands_.push_back(std::move(command));
  }
  wake_.notify_all();
}

void Engine::start(const std::string& prompt, uint64_t seed) {
  post({Command::Kind::start, prompt, seed, {}});
}
void Engine::switch_prompt(const std::string& prompt) {
  post({Command::Kind::switch_prompt, prompt, 0, {}});
}
void Engine::prefetch_prompt(const std::string& prompt) {
  post({Command::Kind::prefetch, prompt, 0, {}});
}
void Engine::set_preset(const Preset& preset) { post({Command::Kind::preset, {}, 0, preset}); }
void Engine::pause() { post({Command::Kind::pause, {}, 0, {}}); }
void Engine::resume() { post({Command::Kind::resume, {}, 0, {}}); }
void Engine::stop() { post({Command::Kind::stop, {}, 0, {}}); }

at::Tensor Engine::session_latents() const {
  std::lock_guard lock(mutex_);
  if (latents_.empty()) return {};
  return at::cat(latents_, 1);
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

namespace {

std::unique_ptr<Engine::Session> build_session(const ModelSpec& model, const Preset& preset,
                                               int height, int width) {
  auto s = std::make_unique<Engine::Session>();
  s->device = at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  GeneratorOptions o;
  o.apply(preset);
  o.device = s->device;
  o.dtype = s->device.is_cpu() ? at::kFloat : at::kBFloat16;
  WeightStore dit;
  std::optional<WeightStore> lora;
  if (model.tiny_random) {
    o.model = WanConfig::tiny();
    height = height ? height : 64;
    width = width ? width : 64;
    dit = make_random_wan_weights(o.model, 1, o.dtype);
    const UMT5Config c = UMT5Config::tiny(o.model.text_dim);
    s->text = std::make_unique<TextEncoder>(
        Tokenizer::byte_fallback(c.vocab, o.model.text_len),
        std::make_unique<UMT5Encoder>(make_random_umt5_weights(c, 2), c, s->device, at::kFloat));
    s->decoder = std::make_unique<AsyncDecoder>(
        make_taehv_decoder(make_random_taehv_weights(3), {s->device, at::kFloat}), s->device);
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
    auto taehv = find_in(model.folder, "taew2_1.pth");
    if (!taehv) taehv = find_in(model.folder, "taew2_1.safetensors");
    s->decoder = std::make_unique<AsyncDecoder>(
        make_taehv_decoder(load_taehv_weights(*taehv),
                           {s->device, s->device.is_cpu() ? at::kFloat : at::kHalf}),
        s->device);
  }
  s->profiler = std::make_unique<RegionProfiler>(s->device);
  if (height % 16 || width % 16 || height <= 0 || width <= 0)
    throw ConfigError(fmt::format(
        "resolution {}x{}: height and width must be positive multiples of 16", height, width));
  o.latent_height = height / 8;
  o.latent_width = width / 8;
  s->generator = std::make_unique<StreamGenerator>(dit, o, lora ? &*lora : nullptr);
  TextEncoder* text = s->text.get();
  const at::Device device = s->device;
  s->prompts = std::make_unique<PromptCache>(
      [text, device](const std::string& p) { return text->encode(p).to(device); },
      size_t{256} << 20);
  return s;
}

}  // namespace

void Engine::deliver_oldest_block() {
  const at::Tensor rgba = session_->decoder->take();
  const Session::QueuedBlock block = std::move(session_->queued.front());
  session_->queued.pop_front();
  const auto now = Clock::now();
  for (int64_t f = 0; f < rgba.size(0); ++f) {
    EngineFrame frame{rgba[f], session_->frame_index++, block.prompt,
                      block.first_of_prompt && f == 0};
    if (callbacks_.on_frame) callbacks_.on_frame(std::move(frame));
  }
  std::lock_guard lock(mutex_);
  stats_.frames = session_->frame_index;
  if (block.switch_issued)
    stats_.last_switch_ms =
        std::chrono::duration<double, std::milli>(now - *block.switch_issued).count();
}

void Engine::run() {
  for (;;) {
    std::deque<Command> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock,
                 [&] { return quit_ || !commands_.empty() || (session_ && session_->running); });
      if (quit_) return;
      batch.swap(commands_);
    }
    try {
      // Frames still in the decoder's queue go out before anything resets or drops the session:
      // no generated frame is lost.
      auto flush_frames = [&] {
        while (session_ && session_->decoder->pending() > 0) deliver_oldest_block();
      };
      // A preset change rebuilds the session; a running video restarts with the same prompt/seed.
      std::optional<Command> restart;
      auto start = [&](const std::string& prompt, uint64_t seed) {
        if (!session_) {
          {
            std::lock_guard lock(mutex_);
            stats_.state = "loading";
          }
          if (callbacks_.on_stats) callbacks_.on_stats(stats());
          session_ = build_session(model_, preset_, height_, width_);
        }
        flush_frames();
        session_->generator->start(session_->prompts->get(prompt), seed);
        session_->decoder->reset();
        session_->prompt = prompt;
        session_->seed = seed;
        session_->running = true;
        session_->frame_index = 0;
        std::lock_guard lock(mutex_);
        latents_.clear();
        stats_ = EngineStats{};
        stats_.preset = preset_.name;
        stats_.device = session_->device.str();
        stats_.state = "running";
      };
      for (auto& c : batch) {
        using K = Command::Kind;
        if (c.kind == K::preset) {
          preset_ = c.preset;
          {
            std::lock_guard lock(mutex_);
            stats_.preset = preset_.name;
          }
          if (session_ && session_->running)
            restart = Command{K::start, session_->prompt, session_->seed, {}};
          flush_frames();
          session_.reset();
        } else if (c.kind == K::start) {
          restart.reset();
          start(c.prompt, c.seed);
        } else if (!session_) {
          if (c.kind == K::stop) {
            restart.reset();
            std::lock_guard lock(mutex_);
            stats_.state = "idle";
          }
        } else if (c.kind == K::switch_prompt) {
          session_->generator->switch_prompt(session_->prompts->get(c.prompt));
          session_->prompt = c.prompt;
          session_->switch_issued = c.issued;
          session_->first_after_switch = true;
        } else if (c.kind == K::prefetch) {
          session_->prompts->prefetch(c.prompt);
        } else {
          session_->running = c.kind == K::resume;
          std::lock_guard lock(mutex_);
          stats_.state = c.kind == K::resume ? "running" : (c.kind == K::pause ? "paused" : "idle");
        }
      }
      if (restart) start(restart->prompt, restart->seed);
      if (!session_ || !session_->running) {
        flush_frames();
        if (callbacks_.on_stats) callbacks_.on_stats(stats());
        continue;
      }

      const auto begin = Clock::now();
      const bool switched = session_->first_after_switch;
      // Generate block k (regions profiled on the compute stream), queue its decode on the decode
      // stream, hand out block k-1's frames (decoded while block k ran), then wait for block k so
      // the next commands apply to block k+1.
      session_->profiler->activate();
      const at::Tensor latents = session_->generator->next_block();
      session_->profiler->deactivate();
      session_->decoder->submit(latents);
      session_->queued.push_back(
          {session_->prompt, switched,
           switched ? session_->switch_issued : std::optional<Clock::time_point>{}});
      while (session_->decoder->pending() > 1) deliver_oldest_block();
      const RegionTimes regions = session_->profiler->collect();  // waits for block k's DiT
      const auto end = Clock::now();
      const double block_ms = std::chrono::duration<double, std::milli>(end - begin).count();
      const int64_t block_frames = 4 * session_->generator->options().frames_per_block;
      at::Tensor kept = latents.to(at::kCPU);  // small: 16 x h x w per latent frame
      {
        std::lock_guard lock(mutex_);
        latents_.push_back(kept.is_same(latents) ? latents.clone() : std::move(kept));
        stats_.blocks += 1;
        stats_.last_block_ms = block_ms;
        stats_.fps = block_frames * 1000.0 / std::max(block_ms, 1e-3);
        stats_.block_ms.push_back(block_ms);
        stats_.block_was_switch.push_back(switched);
        if (stats_.block_ms.size() > 200) {
          stats_.block_ms.erase(stats_.block_ms.begin());
          stats_.block_was_switch.erase(stats_.block_was_switch.begin());
        }
        stats_.regions.clear();
        for (const auto& [name, ms] : regions.ms) stats_.regions.push_back({name, ms});
        stats_.regions.push_back({"decode (own stream)", session_->decoder->last_decode_ms()});
        std::sort(stats_.regions.begin(), stats_.regions.end(),
                  [](const RegionTime& x, const RegionTime& y) { return x.ms > y.ms; });
        stats_.uncovered_fraction = regions.uncovered_fraction();
        const auto cache = session_->prompts->stats();
        stats_.prompt_cache_hits = cache.hits;
        stats_.prompt_cache_misses = cache.misses;
      }
      session_->first_after_switch = false;
      if (callbacks_.on_stats) callbacks_.on_stats(stats());
    } catch (const std::exception& e) {
      std::string message = e.what();
      if (dynamic_cast<const c10::OutOfMemoryError*>(&e))
        message = "out of GPU memory: try the low_memory preset or a smaller resolution (" +
                  message + ")";
      else if (auto* c10e = dynamic_cast<const c10::Error*>(&e))
        message = c10e->what_without_backtrace();
      log::error("engine: {}", message);
      session_.reset();
      {
        std::lock_guard lock(mutex_);
        stats_.state = "error";
      }
      if (callbacks_.on_error) callbacks_.on_error(message);
      if (callbacks_.on_stats) callbacks_.on_stats(stats());
    }
  }
}

}  // namespace longlive
