#include "wan_export.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "live_recording.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/session.h"
#include "longlive/wan_vae.h"

namespace longlive::ui {
namespace {

// Thrown from the decoder's sink to leave the decode when the user cancels.
struct Cancelled {};

}  // namespace

int64_t SessionLatents::latent_frames() const {
  int64_t t = 0;
  for (const at::Tensor& b : blocks) t += b.size(1);
  return t;
}

int64_t SessionLatents::video_frames() const {
  const int64_t t = latent_frames();
  return t > 0 ? 1 + 4 * (t - 1) : 0;
}

int64_t SessionLatents::first_kept_frame() const {
  return dropped_latent_frames > 0 ? 4 * dropped_latent_frames - 3 : 0;
}

int64_t SessionLatents::last_kept_frame() const {
  const int64_t t = dropped_latent_frames + latent_frames();
  return t > 0 ? 4 * (t - 1) : -1;
}

std::vector<PromptMark> SessionLatents::kept_prompts() const {
  const int64_t start = first_kept_frame();
  std::vector<PromptMark> marks;
  for (const PromptMark& p : prompts) {
    if (p.frame <= start)
      marks.assign(1, {0, p.text});  // the last one before the kept start is in effect there
    else
      marks.push_back({p.frame - start, p.text});
  }
  return marks;
}

std::string SessionLatents::dropped_start_text(double fps) const {
  if (dropped_latent_frames == 0) return {};
  const int64_t first = first_kept_frame(), last = last_kept_frame();
  return fmt::format(
      "The first {:.1f} s of this video are no longer kept (the engine keeps the most recent "
      "latents within its memory cap, setting recording/kept_latents_mib); kept: frames {}..{} "
      "({:.1f} s to {:.1f} s).",
      first / fps, first, last, first / fps, (last + 1) / fps);
}

bool export_session_wan(const SessionLatents& latents, RecorderOptions options,
                        const WanExportOptions& wan,
                        const std::function<bool(int64_t, int64_t)>& progress,
                        const std::function<void(const std::string&)>& status) {
  const std::string what = fmt::format("exporting '{}' with the Wan VAE", options.path.string());
  if (latents.empty())
    throw ConfigError(fmt::format("{}: the session has no latents yet (press Start)", what));
  auto say = [&](const std::string& line) {
    log::info("{}: {}", what, line);
    if (status) status(line);
  };
  const at::Device device =
      wan.device.value_or(at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU));
  say(latents.model.tiny_random ? "building the tiny random Wan VAE" : "loading the Wan VAE");
  // The Wan VAE, dtype and device mapping every export uses (SessionFactory::export_decoder).
  std::unique_ptr<WanVaeDecoder> vae;
  try {
    vae = SessionFactory(latents.model).export_decoder(device);
  } catch (const IoError& e) {
    throw IoError(fmt::format("{}; export the live frames instead", e.what()));
  }
  const WanVaeDecoder& decoder = *vae;
  const at::Tensor z = at::cat(latents.blocks, 1);
  if (z.dim() != 5 || z.size(0) != 1 || z.size(2) != decoder.config().z_dim)
    throw ConfigError(fmt::format("{}: latents are [{}], the VAE expects [1, T, {}, h, w]", what,
                                  fmt::join(z.sizes(), ", "), decoder.config().z_dim));
  const int64_t scale = decoder.config().spatial_scale();
  options.height = static_cast<int>(z.size(3) * scale);
  options.width = static_cast<int>(z.size(4) * scale);
  const int64_t total = decoder.frames_for(z.size(1), true);
  if (progress && !progress(0, total)) return false;  // cancelled while the VAE loaded

  Recorder recorder(options);  // IoError naming the path: nothing of ours to clean up
  auto discard_file = [&] { discard_recording(recorder); };
  try {
    if (const std::string gone = latents.dropped_start_text(); !gone.empty()) say(gone);
    for (const PromptMark& p : latents.kept_prompts()) recorder.mark_prompt(p.text, p.frame);
    WanVaeExportOptions eo;
    eo.memory_budget_bytes = wan.memory_budget_bytes;
    say(fmt::format("decoding {} latent frames on {}", z.size(1), device.str()));
    int64_t done = 0;
    const WanVaeExportPlan plan = decode_wan_vae_video(decoder, z, eo, [&](const at::Tensor& px) {
      const at::Tensor rgba = frames_to_rgba8(px);
      for (int64_t f = 0; f < rgba.size(0); ++f) {
        recorder.push(rgba[f]);
        if (progress && !progress(++done, total)) throw Cancelled{};
      }
    });
    recorder.finish();
    say(fmt::format("wrote {} frames ({})", recorder.frames_written(),
                    plan.exact() ? std::string("untiled")
                                 : fmt::format("{}x{} tiles", plan.tiles_y, plan.tiles_x)));
  } catch (const Cancelled&) {
    discard_file();
    return false;
  } catch (const c10::OutOfMemoryError& e) {
    discard_file();
    throw OutOfMemoryError(fmt::format(
        "{}: out of {} memory with a budget of {} MiB; lower recording/wan_vae_memory_mib (tiles "
        "the decode) or stop the video first ({})",
        what, device.is_cpu() ? "host" : "GPU", wan.memory_budget_bytes >> 20,
        e.what_without_backtrace()));
  } catch (...) {
    discard_file();
    throw;
  }
  return true;
}

}  // namespace longlive::ui
