// longlive generate : headless streaming generation to a latents file.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "command.h"
#include "longlive/async_decoder.h"
#include "longlive/error.h"
#include "longlive/generator.h"
#include "longlive/log.h"
#include "longlive/preset.h"
#include "longlive/ranked_session.h"
#include "longlive/session.h"
#include "longlive/text_encoder.h"
#include "longlive/vace.h"
#include "longlive/wan_vae.h"
#include "longlive/weights.h"
#include "rank_args.h"
#include "video_out_args.h"
#ifdef LONGLIVE_WITH_RECORDER
#include "longlive/control_input.h"
#include "longlive/recorder.h"
#endif

namespace longlive {
class LiveVideoSource;
namespace cli {
namespace {

// Live inputs opened for this run, for the summary of what they dropped and repeated.
using LiveInputs = std::vector<std::pair<std::string, std::shared_ptr<LiveVideoSource>>>;

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
  VideoOutArgs video_out;
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
  // VACE (docs/vace.md)
  std::string vace_video, vace_image, vace_mask, vace_mode, vace_file;
  double vace_scale = 1.0;
  std::string v2v_video;  // video-to-video input
  double v2v_strength = 0.6;
  // Live inputs instead of the files: a camera (or another FFmpeg input device).
  std::string vace_camera, v2v_camera, camera_format = "v4l2";
  std::optional<double> camera_reconnect_s;  // unset: LiveVideoOptions' default
  std::string vace_preprocess;  // built-in preprocessor of the VACE frames: gray, edges
  RankArgs ranks;               // --gpus: one stream on several ranks
  bool vace_requested() const {
    return !vace_video.empty() || !vace_camera.empty() || !vace_image.empty() || !vace_mode.empty();
  }
#ifdef LONGLIVE_WITH_RECORDER
  LiveVideoOptions camera_options() const {
    LiveVideoOptions o;
    o.format = camera_format;
    if (camera_reconnect_s) o.reconnect_s = *camera_reconnect_s;
    return o;
  }
#endif
};

at::Tensor load_embeds(const std::string& file) {
  const WeightStore store = WeightStore::open(file);
  if (store.contains("prompt_embeds")) return store.get("prompt_embeds");
  if (store.size() == 1) return store.get(store.names().front());
  throw WeightError(
      fmt::format("{}: expected a tensor named 'prompt_embeds' [1, L, text_dim]", file));
}

// The model the arguments name, for the session factory (the studio opens its sessions the
// same way, so the same preset and seed give the same latents).
ModelSpec model_spec(const GenerateArgs& a, std::string& model_name) {
  ModelSpec m;
  m.device = pick_device(a.device);
  m.lora_alpha = a.lora_alpha;
  if (!a.random.empty()) {
    if (a.random == "tiny")
      m.tiny_random = true;
    else if (a.random == "full")
      m.full_random = m.random_prompts = true;  // no umT5: a prompt's text seeds its embeddings
    else
      throw ConfigError(fmt::format("--random '{}': expected tiny or full", a.random));
    model_name = fmt::format("random {} Wan DiT", a.random);
    return m;
  }
  if (a.weights.empty()) throw ConfigError("give --weights FILE|DIR or --random tiny|full");
  const DitFiles files = find_dit_files(a.weights);
  m.dit_file = files.weights;
  m.lora_file = !a.lora.empty() ? std::optional<std::filesystem::path>(a.lora) : files.lora;
  if (std::filesystem::is_directory(a.weights)) m.folder = a.weights;
  if (!a.text_encoder.empty()) m.text_encoder_file = a.text_encoder;
  if (!a.tokenizer.empty()) m.tokenizer_file = a.tokenizer;
  if (!a.taehv.empty()) m.taehv_file = a.taehv;
  if (!a.vace_file.empty()) m.vace_file = a.vace_file;
  model_name = files.weights.filename().string();
  if (m.lora_file) model_name += " + " + m.lora_file->filename().string();
  return m;
}

#ifdef LONGLIVE_WITH_RECORDER
// Control frames for VACE or video-to-video: a video file (resampled to 16 fps, looped) or a live
// input (--*-camera, at 16 fps as it comes); null when neither is given. `what` names the use.
// `live` carries the cameras' format and reconnect time.
std::shared_ptr<VaceFrameSource> frame_source(const std::string& video, const std::string& camera,
                                              LiveVideoOptions live, int height, int width,
                                              const char* what, LiveInputs& live_inputs) {
  if (!video.empty() && !camera.empty())
    throw ConfigError(fmt::format("{}: give a video or a camera, not both", what));
  if (!video.empty()) {
    auto source = std::make_shared<VideoFileSource>(video, height, width, 16.0);
    log::info("{} from '{}': {} frames at 16 fps (source {:.2f} fps), looped", what, video,
              source->frames(), source->source_fps());
    return source;
  }
  if (!camera.empty()) {
    live.device = camera;
    auto source = std::make_shared<LiveVideoSource>(live, height, width);
    log::info("{} from {} '{}' (input {:.2f} fps), at 16 fps as it comes", what, live.format,
              camera, source->stats().input_fps);
    live_inputs.emplace_back(what, source);
    return source;
  }
  return nullptr;
}
#endif

// A source's frames through a built-in preprocessor (gray, edges), on the session's device.
class PreprocessedSource final : public VaceFrameSource {
 public:
  PreprocessedSource(std::shared_ptr<VaceFrameSource> inner, std::string kind, at::Device device)
      : inner_(std::move(inner)), kind_(std::move(kind)), device_(device) {
    preprocess_frames(at::zeros({1, 3, 4, 4}), kind_);  // an unknown name fails here
  }
  at::Tensor next_frames(int64_t count) override {
    return preprocess_frames(inner_->next_frames(count).to(device_), kind_);
  }
  at::Tensor first_frames(int64_t count) override {
    return preprocess_frames(inner_->first_frames(count).to(device_), kind_);
  }
  void next_frames_in_parts(int64_t count, int64_t part,
                            const std::function<void(const at::Tensor&)>& part_read) override {
    inner_->next_frames_in_parts(count, part, [&](const at::Tensor& frames) {
      part_read(preprocess_frames(frames.to(device_), kind_));
    });
  }
  bool has_frames(int64_t count) const override { return inner_->has_frames(count); }
  bool filmed() const override { return inner_->filmed(); }
  Counts counts() const override { return inner_->counts(); }

 private:
  std::shared_ptr<VaceFrameSource> inner_;
  std::string kind_;
  at::Device device_;
};

// The VACE input the arguments name: a control video or camera (conditioning, inpaint) and/or a
// reference image, encoded block by block with the preset's VACE encoder (the Wan VAE's or
// TAEHV's).
std::unique_ptr<VaceConditioner> make_vace(const GenerateArgs& a, SessionFactory& factory,
                                           const Preset& preset, int height, int width,
                                           at::Device device, LiveInputs& live_inputs) {
  if (!factory.vace_available())
    throw ConfigError(
        fmt::format("--vace-*: this model has no VACE weights ({})", factory.vace_status()));
#ifdef LONGLIVE_WITH_RECORDER
  VaceSettings settings;
  settings.mode = !a.vace_mode.empty()                            ? parse_vace_mode(a.vace_mode)
                  : a.vace_video.empty() && a.vace_camera.empty() ? VaceMode::reference
                                                                  : VaceMode::conditioning;
  settings.scale = a.vace_scale;
  if (!a.vace_image.empty()) settings.references = load_control_image(a.vace_image, height, width);
  if (!a.vace_mask.empty()) {
    if (settings.mode != VaceMode::inpaint)
      throw ConfigError("--vace-mask is for --vace-mode inpaint");
    settings.mask = load_mask_image(a.vace_mask, height, width);
  }
  if (settings.mode == VaceMode::reference && (!a.vace_video.empty() || !a.vace_camera.empty()))
    throw ConfigError(
        "--vace-mode reference takes --vace-image only (no --vace-video or --vace-camera)");
  const std::string what = "VACE " + to_string(settings.mode);
  std::shared_ptr<VaceFrameSource> source = frame_source(
      a.vace_video, a.vace_camera, a.camera_options(), height, width, what.c_str(), live_inputs);
  if (!a.vace_preprocess.empty()) {
    if (!source) throw ConfigError("--vace-preprocess needs --vace-video or --vace-camera");
    source = std::make_shared<PreprocessedSource>(source, a.vace_preprocess, device);
  }
  log::info("{}", factory.vace_status());
  return std::make_unique<VaceConditioner>(factory.vace_encoder(preset.input_encoder),
                                           std::move(settings), source);
#else
  (void)factory, (void)preset, (void)height, (void)width, (void)a, (void)live_inputs, (void)device;
  throw ConfigError("--vace-*: this build has no FFmpeg to read control inputs");
#endif
}

int run(const GenerateArgs& a) {
  const Preset preset = find_preset(a.presets_dir, a.preset);
  std::string model_name;  // for the MP4's metadata
  const ModelSpec model = model_spec(a, model_name);
  SessionOverrides overrides;
  overrides.text_encoder = !a.prompt.empty();
  overrides.live_decoder = !a.output.empty() || a.video_out.any();
#ifndef LONGLIVE_WITH_RECORDER
  if (!a.output.empty()) throw ConfigError("--output: this build has no FFmpeg recorder");
#endif
  // One session, or one per rank (rank 0's keeps the text encoder and the decoder).
  std::unique_ptr<SessionFactory> single_factory;
  std::unique_ptr<Session> single;
  std::unique_ptr<RankedSession> ranked;
  const auto opening = std::chrono::steady_clock::now();
  if (a.ranks.gpus > 1) {
    ranked = RankedSession::open(model, overrides, preset, a.height, a.width, a.ranks.plan());
  } else {
    single_factory = std::make_unique<SessionFactory>(model, overrides);
    single = single_factory->open(preset, a.height, a.width);
  }
  // The model load as a user waits for it: files read, weights on the device, decoders warm.
  log::info("model loaded and session opened in {:.2f} s",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - opening).count());
  SessionFactory& factory = ranked ? ranked->lead_factory() : *single_factory;
  Session* const session = ranked ? &ranked->lead() : single.get();
  // Rank 0's generator: options, stats and frame counts (every rank keeps the same ones).
  StreamGenerator& generator = ranked ? ranked->stream().rank(0) : *single->generator;
  auto start = [&](const at::Tensor& embeds, uint64_t seed) {
    if (ranked)
      ranked->stream().each([&](StreamGenerator& g, int) { g.start(embeds, seed); });
    else
      generator.start(embeds, seed);
  };
  auto next_block = [&] { return ranked ? ranked->stream().next_block() : generator.next_block(); };
  // The block's VACE and video-to-video inputs: encoded once (on rank 0's device), then handed to
  // every other rank, which moves them to its own device.
  std::unique_ptr<VaceConditioner> vace;
  std::unique_ptr<VideoToVideo> v2v;
  auto before_block = [&] {
    if (vace) vace->before_block(generator);
    if (v2v) v2v->before_block(generator);
    if (ranked && (vace || v2v))
      ranked->stream().each([&](StreamGenerator& g, int rank) {
        if (rank == 0) return;
        if (vace) g.set_vace(generator.vace());
        if (v2v) g.set_v2v(generator.v2v());
      });
  };
  const GeneratorOptions& o = generator.options();
  const int height = session->height, width = session->width;

  at::Tensor embeds;
  if (!a.prompt.empty()) {
    embeds = session->embed(PromptMix::single(a.prompt));
  } else if (!a.prompt_embeds.empty()) {
    embeds = load_embeds(a.prompt_embeds);
  } else if (!a.random.empty()) {
    auto gen = at::detail::createCPUGenerator(a.seed + 1);
    embeds = at::randn({1, o.model.text_len, o.model.text_dim}, gen, at::TensorOptions(at::kFloat));
  } else {
    throw ConfigError(
        "give --prompt-embeds FILE (a safetensors with 'prompt_embeds' [1, L, text_dim])");
  }

  LiveInputs live_inputs;
  if (a.vace_requested())
    vace = make_vace(a, factory, preset, height, width, session->device, live_inputs);
  if (!a.v2v_video.empty() || !a.v2v_camera.empty()) {
#ifdef LONGLIVE_WITH_RECORDER
    v2v = factory.video_to_video(preset.input_encoder, a.v2v_strength,
                                 frame_source(a.v2v_video, a.v2v_camera, a.camera_options(), height,
                                              width, "video-to-video", live_inputs));
    log::info("video-to-video strength {}", a.v2v_strength);
#else
    throw ConfigError("--v2v-*: this build has no FFmpeg to read videos");
#endif
  }

  start(embeds, a.seed);
  log::info("KV cache: {} tokens per layer, {}, {:.1f} MiB",
            o.local_attn_frames * (o.latent_height / o.model.patch[1]) *
                (o.latent_width / o.model.patch[2]),
            o.kv_dtype == at::kChar ? "int8 + per-token scales"
                                    : c10::toString(o.kv_dtype.value_or(o.dtype)),
            generator.stats().kv_cache_bytes / (1024.0 * 1024.0));

  // Optional MP4: every block decoded by the session's live decoder and recorded.
#ifdef LONGLIVE_WITH_RECORDER
  std::unique_ptr<Recorder> recorder;
  if (!a.output.empty()) {
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
#endif
  auto outputs = open_video_outputs(a.video_out, width, height);
  std::vector<at::Tensor> blocks;
  for (int64_t b = 0; b < a.blocks; ++b) {
    before_block();
    const at::Tensor block = next_block();
#ifdef LONGLIVE_WITH_RECORDER
    if (recorder || !outputs.empty()) {
      session->decoder->submit(block);
      const at::Tensor rgba = session->decoder->take().to(at::kCPU);
      for (int64_t f = 0; f < rgba.size(0); ++f) {
        if (recorder) recorder->push(rgba[f]);
        for (auto& out : outputs) out->push(rgba[f]);  // never blocks: drops when behind
      }
    }
#endif
    at::Tensor latents = block.to(at::kCPU);
    if (!a.latents_out.empty()) blocks.push_back(latents);
    const bool milestone = b + 1 == a.blocks || b + 1 == 10 || (b + 1) % 100 == 0;
    log::log_at(milestone ? log::Level::info : log::Level::debug,
                "block {}/{}: {:.1f} ms, RSS {:.1f} MiB", b + 1, a.blocks,
                generator.stats().last_block_ms, rss_mib());
  }
  close_video_outputs(outputs);
#ifdef LONGLIVE_WITH_RECORDER
  for (const auto& [what, source] : live_inputs) {
    const LiveVideoSource::Stats st = source->stats();
    std::cout << fmt::format(
        "{}: {} input frames, {} on the 16 fps grid, {} used, {} dropped (generation behind), "
        "{} repeated (input stalled), {} reconnects{}\n",
        what, st.captured, st.on_grid, st.handed_out, st.dropped, st.repeated, st.reconnects,
        st.error.empty() ? "" : "; " + st.error);
  }
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
  cmd->add_option("--output", a->output,
                  "Write an MP4 (H.264, 16 fps) decoded with the preset's live decoder");
  cmd->add_option(
      "--taehv", a->taehv,
      "TAEHV weights (taew2_1.pth or safetensors) for --output (default: the --weights folder's)");
  add_video_out_options(cmd, a->video_out);
  cmd->add_option("--latents-out", a->latents_out, "Write the latents [1, T, 16, h, w] here");
  cmd->add_option("--blocks", a->blocks, "Number of blocks")->check(CLI::Range(1, 1000000));
  cmd->add_option("--seed", a->seed, "Noise seed");
  cmd->add_option("--preset", a->preset, "Preset name");
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--device", a->device, "auto, cpu or cuda");
  cmd->add_option("--vace-video", a->vace_video,
                  "VACE control video (depth/pose/edges maps, or the video to inpaint), "
                  "resampled to 16 fps and looped");
  cmd->add_option("--vace-image", a->vace_image, "VACE reference image");
  cmd->add_option("--vace-mask", a->vace_mask,
                  "Inpainting mask image (white = generate, black = keep)");
  cmd->add_option("--vace-mode", a->vace_mode,
                  "conditioning, reference or inpaint (default: conditioning with a video, "
                  "reference with an image only)");
  cmd->add_option("--vace-scale", a->vace_scale, "VACE hint scale (default 1)");
  cmd->add_option("--vace-preprocess", a->vace_preprocess,
                  "Built-in preprocessor of the VACE control frames: gray or edges (Sobel)");
  cmd->add_option("--vace-file", a->vace_file,
                  "VACE weights (default: the --weights folder's VACE module)");
  cmd->add_option("--v2v-video", a->v2v_video,
                  "Video-to-video input (no VACE): each block starts from the video's frames "
                  "noised to --v2v-strength; resampled to 16 fps and looped");
  cmd->add_option("--v2v-strength", a->v2v_strength,
                  "Video-to-video noise strength in (0, 1] (default 0.6; 1 ignores the input)");
  cmd->add_option("--vace-camera", a->vace_camera,
                  "VACE control frames from a camera (/dev/videoN) or another --camera-format "
                  "input, live at 16 fps");
  cmd->add_option("--v2v-camera", a->v2v_camera,
                  "Video-to-video input from a camera (/dev/videoN), live at 16 fps");
  cmd->add_option("--camera-format", a->camera_format,
                  "FFmpeg input device of the cameras: v4l2 (default), x11grab, lavfi, ...");
  cmd->add_option("--camera-reconnect", a->camera_reconnect_s,
                  "Seconds a lost camera (unplugged, or its input ended) is reopened for, its last "
                  "frame held, before it fails (default 10; 0: fail at once)")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--height", a->height, "Video height (multiple of 16)");
  cmd->add_option("--width", a->width, "Video width (multiple of 16)");
  add_rank_options(cmd, a->ranks);
  return [a]() { return run(*a); };
});

}  // namespace
}  // namespace cli
}  // namespace longlive
