// longlive render : re-renders a recorded performance (session timeline) headless, typically at a
// higher-quality preset than the live session used ("the final cut").
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "command.h"
#include "longlive/async_decoder.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/performance.h"
#include "longlive/timeline.h"
#include "longlive/weights.h"
#include "rank_args.h"
#ifdef LONGLIVE_WITH_RECORDER
#include "longlive/control_input.h"
#include "longlive/recorder.h"
#endif

namespace longlive::cli {
namespace {

struct RenderArgs {
  std::string timeline;
  std::string preset;  // empty: the presets the timeline names
  std::string presets_dir = default_presets_dir();
  std::string model;
  bool tiny = false;
  std::string output;
  std::string latents_out;
  std::string device = "auto";
  RankArgs ranks;  // --gpus: the stream on several ranks
};

int run(const RenderArgs& a) {
  const Timeline timeline = load_timeline(a.timeline);
  ModelSpec model;
  if (a.tiny || (a.model.empty() && timeline.model == "tiny-random")) {
    model.tiny_random = true;
  } else {
    model.folder = a.model.empty() ? timeline.model : a.model;
    if (model.folder.empty())
      throw ConfigError(fmt::format("{}: names no model folder; give --model DIR", a.timeline));
  }
  model.device = pick_device(a.device);
  if (a.output.empty() && a.latents_out.empty())
    throw ConfigError("give --output out.mp4 and/or --latents-out latents.safetensors");
  // --preset replaces every preset of the timeline (the live one and any change).
  PresetLookup presets = [dir = a.presets_dir](const std::string& name) {
    return find_preset(dir, name);
  };
  if (!a.preset.empty()) {
    const Preset chosen = find_preset(a.presets_dir, a.preset);
    presets = [chosen](const std::string&) { return chosen; };
  }
  log::info("{}: {} blocks, {} events, preset {}, {}x{}, model {}, device {}", a.timeline,
            timeline.blocks, timeline.events.size(), a.preset.empty() ? timeline.preset : a.preset,
            timeline.height, timeline.width,
            model.tiny_random ? "tiny-random" : model.folder.string(), model.device->str());

#ifdef LONGLIVE_WITH_RECORDER
  std::unique_ptr<Recorder> recorder;
  if (!a.output.empty()) {
    RecorderOptions ro;
    ro.path = a.output;
    ro.width = timeline.width;
    ro.height = timeline.height;
    ro.metadata = {{"comment", fmt::format("LongLive Studio render of {} (preset {})", a.timeline,
                                           a.preset.empty() ? timeline.preset : a.preset)}};
    recorder = std::make_unique<Recorder>(ro);
  }
#else
  if (!a.output.empty()) throw ConfigError("--output: this build has no FFmpeg recorder");
#endif
  std::vector<at::Tensor> latents;
  std::string last_prompt;
  [[maybe_unused]] int64_t frames = 0;  // recorded so far (chapters); recorder builds only
  replay(
      timeline, model, presets,
      [&](const ReplayBlock& b) {
#ifdef LONGLIVE_WITH_RECORDER
        if (recorder) {
          b.session->decoder->submit(b.latents);
          const at::Tensor rgba = b.session->decoder->take();
          if (b.prompt != last_prompt) recorder->mark_prompt(b.prompt, frames);
          for (int64_t f = 0; f < rgba.size(0); ++f) recorder->push(rgba[f]);
          frames += rgba.size(0);
        }
#endif
        last_prompt = b.prompt;
        if (!a.latents_out.empty()) latents.push_back(b.latents.to(at::kCPU));
        log::debug("block {}/{}", b.index + 1, timeline.blocks);
      },
      a.timeline,
#ifdef LONGLIVE_WITH_RECORDER
      ffmpeg_input_opener(),  // the VACE / video-to-video events' files
#else
      InputOpener{},  // captured camera frames only
#endif
      a.ranks.plan());
#ifdef LONGLIVE_WITH_RECORDER
  if (recorder) {
    recorder->finish();
    std::cout << fmt::format("wrote {} ({} frames, {}, rendered on {}{})\n", a.output,
                             recorder->frames_written(), recorder->codec_name(),
                             model.device->str(),
                             a.ranks.gpus > 1 ? fmt::format(", {} ranks", a.ranks.gpus) : "");
  }
#endif
  if (!a.latents_out.empty()) {
    // One tensor per block (blocks of different presets may differ in length), plus 'latents'
    // [1, T, 16, h, w] when the timeline is one continuous video (one start: preset changes
    // continue the video), so
    // `longlive export --latents F --decoder wan` re-decodes it with the Wan VAE.
    std::map<std::string, at::Tensor> tensors;
    for (size_t i = 0; i < latents.size(); ++i)
      tensors[fmt::format("block.{:05d}", i)] = latents[i];
    const auto restarts = std::count_if(timeline.events.begin(), timeline.events.end(),
                                        [](auto& e) { return e.kind == EventKind::start; });
    if (restarts == 1 && !latents.empty()) tensors["latents"] = at::cat(latents, 1);
    save_safetensors(a.latents_out, tensors, {{"timeline", a.timeline}});
    std::cout << "wrote " << a.latents_out << " (" << latents.size() << " blocks)\n";
  }
  return 0;
}

const Registrar kRender("render", [](CLI::App& root) {
  auto* cmd = root.add_subcommand("render", "Re-render a recorded session timeline (final cut)");
  auto a = std::make_shared<RenderArgs>();
  cmd->add_option("--timeline", a->timeline, "Session timeline JSON (saved by the studio)")
      ->required();
  cmd->add_option("--preset", a->preset,
                  "Render every block with this preset (default: the timeline's presets)");
  cmd->add_option("--presets-dir", a->presets_dir, "Preset folder");
  cmd->add_option("--model", a->model, "Model folder (default: the timeline's)");
  cmd->add_flag("--tiny", a->tiny, "Use the tiny random test model");
  cmd->add_option("--device", a->device, "auto, cpu or cuda");
  add_rank_options(cmd, a->ranks);
  cmd->add_option("--output", a->output, "Write an MP4 (H.264, 16 fps), chapters per prompt");
  cmd->add_option("--latents-out", a->latents_out,
                  "Write every block's latents (block.N; also 'latents' for one continuous video, "
                  "for export --decoder wan)");
  return [a]() { return run(*a); };
});

}  // namespace
}  // namespace longlive::cli
