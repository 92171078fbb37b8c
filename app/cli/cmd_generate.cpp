// longlive generate : headless streaming generation to a latents file.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "command.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/model_files.h"
#include "longlive/preset.h"
#include "longlive/safetensors_writer.h"
#include "longlive/text_encoder.h"
#ifdef LONGLIVE_WITH_RECORDER
#include "longlive/recorder.h"
#endif

namespace longlive::cli {
namespace {

// Resident set size in MiB (Linux), to show that long runs keep memory flat.
double rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      double kib = 0;
      status >> kib;
      return kib / 1024.0;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0;
}

struct GenerateArgs {
  std::string weights;
  std::string lora;
  std::string random;
  std::string prompt_embeds;
  std::string prompt;
  std::string text_encoder;
  std::string tokenizer;
  std::string latents_out;
  std::string output;
  std::string taehv;
  std::string preset = "balanced";
  std::string presets_dir = default_presets_dir();
  std::string device = "auto";
  int64_t blocks = 8;
  uint64_t seed = 42;
  int height = 0;
  int width = 0;
  double lora_alpha = 0;
};

at::ScalarType compute_dtype(const Preset& p, const at::Device& device) {
  if (device.is_cpu()) return at::kFloat;  // CPU kernels are fastest and exact in fp32
  switch (p.dtype) {
    case ComputeDType::fp32:
      return at::kFloat;
    case ComputeDType::fp16:
      return at::kHalf;
    default:
      return at::kBFloat16;  // fp8 linears are applied on top of bf16 by the runtime
  }
}

at::Tensor load_embeds(const std::string& file) {
  const WeightStore store = WeightStore::open(file);
  if (store.contains("prompt_embeds")) return store.get("prompt_embeds");
  if (store.size() == 1) return store.get(store.names().front());
  throw WeightError(
      fmt::format("{}: expected a tensor named 'prompt_embeds' [1, L, text_dim]", file));
}

int run(const GenerateArgs& a) {
  const Preset preset = find_preset(a.presets_dir, a.preset);
  const at::Device device = pick_device(a.device);
  GeneratorOptions o;
  o.apply(preset);
  o.device = device;
  o.dtype = compute_dtype(preset, device);
  o.lora_alpha = a.lora_alpha;

  WeightStore weights;
  std::optional<WeightStore> lora;
  std::string model_name;  // for the MP4's metadata
  int height = a.height ? a.height : preset.height;
  int width = a.width ? a.width : preset.width;
  if (!a.random.empty()) {
    if (a.random == "tiny") {
      o.model = WanConfig::tiny();
      if (!a.height) height = 64;
      if (!a.width) width = 64;
    } else if (a.random != "full") {
      throw ConfigError(fmt::format("--random '{}': expected tiny or full", a.random));
    }
    weights = make_random_wan_weights(o.model, a.seed, o.dtype);
    model_name = fmt::format("random {} Wan DiT (seed {})", a.random, a.seed);
  } else {
    if (a.weights.empty()) throw ConfigError("give --weights FILE|DIR or --random tiny|full");
    const DitFiles files = find_dit_files(a.weights);
    log::info("DiT weights: {}", files.weights.string());
    weights = load_dit_weights(files.weights);
    o.model = WanConfig::infer(weights,
                               WanConfig::wan_1_3b().num_heads *
                                   weights.get("patch_embedding.weight").size(0) /
                                   WanConfig::wan_1_3b().dim,
                               WanConfig::wan_1_3b().text_len);
    const std::string lora_file =
        !a.lora.empty() ? a.lora : (files.lora ? files.lora->string() : "");
    model_name = files.weights.filename().string();
    if (!lora_file.empty()) {
      log::info("LoRA: {}", lora_file);
      lora = load_dit_lora(lora_file);
      model_name += " + " + std::filesystem::path(lora_file).filename().string();
    }
  }
  if (height % 16 != 0 || width % 16 != 0 || height <= 0 || width <= 0) {
    throw ConfigError(fmt::format(
        "resolution {}x{}: height and width must be positive multiples of 16", height, width));
  }
  o.latent_height = height / 8;
  o.latent_width = width / 8;

  at::Tensor embeds;
  if (!a.prompt.empty()) {
    std::unique_ptr<TextEncoder> text;
    if (!a.text_encoder.empty()) {
      if (a.tokenizer.empty())
        throw ConfigError("--prompt with --text-encoder also needs --tokenizer spiece.model");
      text = TextEncoder::open(a.text_encoder, a.tokenizer, {device, o.dtype});
    } else if (a.random == "tiny") {
      // Test mode: a random tiny umT5 whose width matches the tiny DiT's text_dim.
      UMT5Config c{.vocab = 256,
                   .dim = o.model.text_dim,
                   .dim_attn = o.model.text_dim,
                   .dim_ffn = 128,
                   .num_heads = 4,
                   .num_layers = 2};
      text = std::make_unique<TextEncoder>(
          Tokenizer::byte_fallback(c.vocab, o.model.text_len),
          std::make_unique<UMT5Encoder>(make_random_umt5_weights(c, a.seed), c, device,
                                        at::kFloat));
    } else {
      throw ConfigError(
          "--prompt needs --text-encoder models_t5_umt5-xxl-enc-bf16.pth and --tokenizer "
          "spiece.model");
    }
    embeds = text->encode(a.prompt);
  } else if (!a.prompt_embeds.empty()) {
    embeds = load_embeds(a.prompt_embeds);
  } else if (!a.random.empty()) {
    auto gen = at::detail::createCPUGenerator(a.seed + 1);
    embeds = at::randn({1, o.model.text_len, o.model.text_dim}, gen, at::TensorOptions(at::kFloat));
  } else {
    throw ConfigError(
        "give --prompt-embeds FILE (a safetensors with 'prompt_embeds' [1, L, text_dim])");
  }

  StreamGenerator generator(weights, o, lora ? &*lora : nullptr);
  generator.start(embeds, a.seed);
  log::info("KV cache: {} tokens per layer, {}, {:.1f} MiB",
            o.local_attn_frames * (o.latent_height / o.model.patch[1]) *
                (o.latent_width / o.model.patch[2]),
            o.kv_dtype == at::kChar ? "int8 + per-token scales"
                                    : c10::toString(o.kv_dtype.value_or(o.dtype)),
            generator.stats().kv_cache_bytes / (1024.0 * 1024.0));

  // Optional MP4: every block decoded with TAEHV and recorded.
  std::unique_ptr<StreamingDecoder> decoder;
#ifdef LONGLIVE_WITH_RECORDER
  std::unique_ptr<Recorder> recorder;
  if (!a.output.empty()) {
    if (!a.taehv.empty()) {
      decoder = make_taehv_decoder(load_taehv_weights(a.taehv),
                                   {device, device.is_cpu() ? at::kFloat : at::kHalf});
    } else if (!a.random.empty()) {
      decoder = make_taehv_decoder(make_random_taehv_weights(a.seed), {device, at::kFloat});
    } else {
      throw ConfigError("--output needs --taehv taew2_1.pth to decode the frames");
    }
    RecorderOptions ro;
    ro.path = a.output;
    ro.width = width;
    ro.height = height;
    // The recorder writes model/preset/seed into the file's tags and sidecar, and the prompt as
    // its title and first chapter.
    ro.model = model_name;
    ro.preset = preset.name;
    ro.seed = a.seed;
    recorder = std::make_unique<Recorder>(ro);
    recorder->mark_prompt(!a.prompt.empty()          ? a.prompt
                          : !a.prompt_embeds.empty() ? "(prompt embeddings " + a.prompt_embeds + ")"
                                                     : std::string("(random prompt embeddings)"),
                          0);
  }
#else
  if (!a.output.empty()) throw ConfigError("--output: this build has no FFmpeg recorder");
#endif
  std::vector<at::Tensor> blocks;
  for (int64_t b = 0; b < a.blocks; ++b) {
    const at::Tensor block = generator.next_block();
#ifdef LONGLIVE_WITH_RECORDER
    if (recorder) {
      const at::Tensor rgba = to_rgba8(decoder->decode(block)).to(at::kCPU);
      for (int64_t f = 0; f < rgba.size(0); ++f) recorder->push(rgba[f]);
    }
#endif
    at::Tensor latents = block.to(at::kCPU);
    if (!a.latents_out.empty()) blocks.push_back(latents);
    const bool milestone = b + 1 == a.blocks || b + 1 == 10 || (b + 1) % 100 == 0;
    log::log_at(milestone ? log::Level::info : log::Level::debug,
                "block {}/{}: {:.1f} ms, RSS {:.1f} MiB", b + 1, a.blocks,
                generator.stats().last_block_ms, rss_mib());
  }
#ifdef LONGLIVE_WITH_RECORDER
  if (recorder) {
    recorder->finish();
    std::cout << fmt::format("wrote {} ({} frames, {}, {:.1f} KiB)\n", a.output,
                             recorder->frames_written(), recorder->codec_name(),
                             recorder->bytes_written() / 1024.0);
  }
#endif
  if (!a.latents_out.empty()) {
    save_safetensors(a.latents_out, {{"latents", at::cat(blocks, 1)}},
                     {{"seed", std::to_string(a.seed)},
                      {"preset", preset.name},
                      {"height", std::to_string(height)},
                      {"width", std::to_string(width)}});
    std::cout << "wrote " << a.latents_out << " (" << generator.frames_generated()
              << " latent frames)\n";
  }
  return 0;
}

const Registrar kGenerate("generate", [](CLI::App& root) {
  auto* cmd = root.add_subcommand("generate", "Generate video latents headless");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--weights", a->weights, "DiT weights: a file or a model folder");
  cmd->add_option("--lora", a->lora, "LongLive LoRA (lora.pt); found in the folder when omitted");
  cmd->add_option("--lora-alpha", a->lora_alpha, "LoRA alpha (default: the rank)");
  cmd->add_option("--random", a->random, "Random weights instead of a checkpoint: tiny or full");
  cmd->add_option("--prompt", a->prompt,
                  "Prompt text (needs --text-encoder and --tokenizer, or --random tiny)");
  cmd->add_option("--text-encoder", a->text_encoder,
                  "umT5 weights (models_t5_umt5-xxl-enc-bf16.pth)");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "umT5 sentencepiece model (google/umt5-xxl/spiece.model)");
  cmd->add_option("--prompt-embeds", a->prompt_embeds,
                  "safetensors with 'prompt_embeds' [1, L, text_dim]");
  cmd->add_option("--output", a->output, "Write an MP4 (H.264, 16 fps) decoded with TAEHV");
  cmd->add_option("--taehv", a->taehv, "TAEHV weights (taew2_1.pth or safetensors) for --output");
  cmd->add_option("--latents-out", a->latents_out, "Write the latents [1, T, 16, h, w] here");
  cmd->add_option("--blocks", a->blocks, "Number of blocks")->check(CLI::Range(1, 1000000));
  cmd->add_option("--seed", a->seed, "Noise seed");
  cmd->add_option("--preset", a->preset, "Preset name");
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--device", a->device, "auto, cpu or cuda");
  cmd->add_option("--height", a->height, "Video height (multiple of 16)");
  cmd->add_option("--width", a->width, "Video width (multiple of 16)");
  return [a]() { return run(*a); };
});

}  // namespace
}  // namespace longlive::cli
