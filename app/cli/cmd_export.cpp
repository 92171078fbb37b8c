// longlive export : frames or latents (safetensors) to an MP4 through the recorder.
#ifdef LONGLIVE_WITH_RECORDER
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <iostream>

#include "command.h"
#include "longlive/decoder.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/recorder.h"
#include "longlive/session.h"
#include "longlive/taehv.h"
#include "longlive/wan_vae.h"
#include "longlive/weights.h"

namespace longlive::cli {
namespace {

struct ExportArgs {
  std::string frames, latents, output, taehv, codec = "auto", prompt, device = "auto";
  std::string decoder, vae;
  bool random_taehv = false, random_vae = false, fragmented = false, no_sidecar = false;
  int crf = 18, fps = 16, block_frames = 3;
  double memory_budget_mib = 0;
  uint64_t seed = 0;
};

std::string meta(const WeightStore& store, const std::string& key) {
  const auto& m = store.metadata();
  const auto it = m.find(key);
  return it == m.end() ? std::string() : it->second;
}

// Session facts saved next to the tensors (by `generate --latents-out`) go into the MP4.
void copy_session_facts(const WeightStore& store, RecorderOptions& o) {
  o.model = meta(store, "model");
  o.preset = meta(store, "preset");
  if (const auto seed = meta(store, "seed"); !seed.empty()) {
    try {
      o.seed = std::stoull(seed);
    } catch (const std::exception&) {
      log::warn("ignoring seed '{}' from the input metadata", seed);
    }
  }
}

// Quality export: the Wan VAE decodes the whole session slice by slice (tiled when the memory
// budget asks for it); every finished slice goes to the recorder at once.
int export_latents_wan(const ExportArgs& a, RecorderOptions o, const at::Tensor& latents,
                       at::Device device) {
  // The same Wan VAE, dtype and device mapping as the studio's export (SessionFactory).
  ModelSpec model;
  if (!a.vae.empty())
    model.wan_vae_file = a.vae;
  else if (a.random_vae)
    model.tiny_random = true;  // the tiny model's random VAE
  else
    throw ConfigError("--decoder wan needs --vae Wan2.1_VAE.pth (or --random-vae for a test)");
  model.device = device;
  const std::unique_ptr<WanVaeDecoder> vae = SessionFactory(model).export_decoder();
  const WanVaeDecoder& decoder = *vae;
  const int64_t scale = decoder.config().spatial_scale();
  o.height = static_cast<int>(latents.size(3) * scale);
  o.width = static_cast<int>(latents.size(4) * scale);
  Recorder recorder(o);
  if (!a.prompt.empty()) recorder.mark_prompt(a.prompt, 0);
  WanVaeExportOptions options;
  options.memory_budget_bytes = static_cast<int64_t>(a.memory_budget_mib * 1024 * 1024);
  const WanVaeExportPlan plan =
      decode_wan_vae_video(decoder, latents, options, [&](const at::Tensor& frames) {
        const at::Tensor rgba = frames_to_rgba8(frames);
        for (int64_t f = 0; f < rgba.size(0); ++f) recorder.push(rgba[f]);
      });
  recorder.finish();
  std::cout << fmt::format(
      "wrote {} ({} frames from {} latent frames, Wan VAE {}, {}, {:.1f} KiB)\n", a.output,
      recorder.frames_written(), latents.size(1),
      plan.exact() ? std::string("untiled")
                   : fmt::format("{}x{} tiles", plan.tiles_y, plan.tiles_x),
      recorder.codec_name(), recorder.bytes_written() / 1024.0);
  return 0;
}

// Decodes [1, T, 16, h, w] latents block by block (the decoder keeps its temporal state) and
// records each block's frames as they come, so memory stays at one block of pixels.
int export_latents(const ExportArgs& a, RecorderOptions o) {
  const WeightStore store = WeightStore::open(a.latents);
  const at::Tensor latents = store.get("latents");
  if (latents.dim() != 5 || latents.size(0) != 1 || latents.size(2) != 16)
    throw WeightError(fmt::format("'{}': tensor 'latents' must be [1, T, 16, h, w], got {}",
                                  a.latents, fmt::join(latents.sizes(), ", ")));
  copy_session_facts(store, o);
  const at::Device device = pick_device(a.device);
  const bool wan = a.decoder == "wan" || (a.decoder.empty() && (!a.vae.empty() || a.random_vae));
  if (!a.decoder.empty() && a.decoder != "wan" && a.decoder != "taehv")
    throw ConfigError(fmt::format("--decoder '{}': expected taehv or wan", a.decoder));
  if (wan) return export_latents_wan(a, o, latents, device);
  std::unique_ptr<StreamingDecoder> decoder;
  if (!a.taehv.empty()) {
    decoder = make_taehv_decoder(load_taehv_weights(a.taehv),
                                 {device, device.is_cpu() ? at::kFloat : at::kHalf});
  } else if (a.random_taehv) {
    decoder = make_taehv_decoder(make_random_taehv_weights(a.seed), {device, at::kFloat});
  } else {
    throw ConfigError("--latents needs --taehv taew2_1.pth (or --random-taehv for a test)");
  }
  o.height = static_cast<int>(latents.size(3) * 8);
  o.width = static_cast<int>(latents.size(4) * 8);
  Recorder recorder(o);
  if (!a.prompt.empty()) recorder.mark_prompt(a.prompt, 0);
  decoder->reset();
  const int64_t total = latents.size(1);
  for (int64_t t = 0; t < total; t += a.block_frames) {
    const at::Tensor block = latents.narrow(1, t, std::min<int64_t>(a.block_frames, total - t));
    const at::Tensor rgba = frames_to_rgba8(decoder->decode(block.to(device)));
    for (int64_t f = 0; f < rgba.size(0); ++f) recorder.push(rgba[f]);
    log::debug("export: latent frames {}/{}", std::min<int64_t>(t + a.block_frames, total), total);
  }
  recorder.finish();
  std::cout << fmt::format("wrote {} ({} frames from {} latent frames, {}, {:.1f} KiB)\n", a.output,
                           recorder.frames_written(), total, recorder.codec_name(),
                           recorder.bytes_written() / 1024.0);
  return 0;
}

int export_frames(const ExportArgs& a, RecorderOptions o) {
  const WeightStore store = WeightStore::open(a.frames);
  copy_session_facts(store, o);
  const at::Tensor frames = store.get("frames");
  std::vector<PromptMark> prompts;
  if (!a.prompt.empty()) prompts.push_back({0, a.prompt});
  record_frames_to_mp4(frames, o, prompts);
  const DecodedVideo check = read_video(a.output, false);
  std::cout << fmt::format("wrote {} ({} frames, {}x{}, {})\n", a.output, check.frames, check.width,
                           check.height, check.codec);
  return 0;
}

const Registrar kExport("export", [](CLI::App& root) {
  auto* cmd =
      root.add_subcommand("export", "Write an MP4 (H.264, 16 fps) from saved frames or latents");
  auto a = std::make_shared<ExportArgs>();
  auto* frames = cmd->add_option(
      "--frames", a->frames,
      "safetensors with 'frames' [N, 3, H, W] float in [0, 1] or [N, H, W, 4] uint8");
  auto* latents = cmd->add_option(
      "--latents", a->latents,
      "safetensors with 'latents' [1, T, 16, h, w] (decoded with TAEHV or the Wan VAE)");
  frames->excludes(latents);
  cmd->add_option("--output", a->output, "Output MP4")->required();
  cmd->add_option("--taehv", a->taehv, "TAEHV weights (taew2_1.pth) to decode --latents");
  cmd->add_flag("--random-taehv", a->random_taehv, "Decode --latents with random TAEHV (tests)");
  cmd->add_option("--decoder", a->decoder,
                  "Decoder for --latents: taehv or wan (default: wan when --vae/--random-vae)");
  cmd->add_option("--vae", a->vae, "Wan VAE weights (Wan2.1_VAE.pth) for --decoder wan");
  cmd->add_flag("--random-vae", a->random_vae,
                "Decode --latents with a tiny random Wan VAE (tests)");
  cmd->add_option("--memory-budget-mib", a->memory_budget_mib,
                  "Wan VAE: device memory the decode may use (0: unlimited; tiles when needed)");
  cmd->add_option("--block-frames", a->block_frames, "Latent frames decoded at a time")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--codec", a->codec, "auto, libx264, libx265, h264_nvenc, hevc_nvenc");
  cmd->add_option("--crf", a->crf, "Quality: x264/x265 CRF, NVENC cq (lower is better)");
  cmd->add_option("--fps", a->fps, "Frames per second")->check(CLI::PositiveNumber);
  cmd->add_option("--prompt", a->prompt, "Prompt to record as the first chapter");
  cmd->add_option("--seed", a->seed,
                  "Seed of --random-taehv (--random-vae is the tiny model's VAE, seed 0)");
  cmd->add_option("--device", a->device, "auto, cpu or cuda (latent decoding)");
  cmd->add_flag("--fragmented", a->fragmented, "Keep the fragmented MP4 (no faststart remux)");
  cmd->add_flag("--no-sidecar", a->no_sidecar, "Do not write <output>.json");
  return [a]() {
    if (a->frames.empty() == a->latents.empty())
      throw ConfigError("export needs exactly one of --frames or --latents");
    RecorderOptions o;
    o.path = a->output;
    o.codec = a->codec;
    o.crf = a->crf;
    o.fps = a->fps;
    o.faststart = !a->fragmented;
    o.write_sidecar = !a->no_sidecar;
    return a->latents.empty() ? export_frames(*a, o) : export_latents(*a, o);
  };
});

}  // namespace
}  // namespace longlive::cli
#endif
