#pragma once
// Quality export of a studio session: the engine's latents of the current video re-decoded with
// the Wan VAE (instead of the live TAEHV frames), slice by slice straight into the recorder.
// Qt-free; the export dialog runs it on a worker thread.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "longlive/performance.h"
#include "longlive/recorder.h"
#include "longlive/weights.h"

namespace longlive::ui {

// What a Wan VAE export of the current video needs. Gathered on the UI thread, so it only holds
// tensor handles (the engine's per-block CPU copies); the worker concatenates them.
struct SessionLatents {
  std::vector<at::Tensor> blocks;   // [1, F, 16, h, w] on the CPU, in order
  ModelSpec model;                  // where the Wan VAE weights are
  std::vector<PromptMark> prompts;  // chapters, in frames of the whole video (dropped included)
  // Latent frames of the video's start the engine no longer keeps (EngineOptions::
  // max_kept_latent_bytes): `blocks` start there.
  int64_t dropped_latent_frames = 0;

  bool empty() const { return blocks.empty(); }
  int64_t latent_frames() const;
  int64_t video_frames() const;  // what the Wan 2.1 VAE makes of them: 1 + 4 (T - 1)
  // The kept part in frames of the live video (1 + 4 (T - 1) frames from T latent frames, so
  // latent frame k >= 1 covers frames 4k - 3 .. 4k): first and last, and the chapters in frames
  // of the export (the one in effect at the kept start at 0).
  int64_t first_kept_frame() const;
  int64_t last_kept_frame() const;
  std::vector<PromptMark> kept_prompts() const;
  // "" when the whole video is kept; else one line for the user, e.g. "The first 12.3 s of this
  // video are no longer kept (memory cap); kept: frames 197..4096 (12.3 s to 256.0 s)."
  std::string dropped_start_text(double fps = 16) const;
};

struct WanExportOptions {
  // Device bytes the decode may hold beyond the weights (0: unlimited); tiles when needed.
  int64_t memory_budget_bytes = 0;
  std::optional<at::Device> device;  // default: the first CUDA device when there is one
};

// Decodes the latents with the Wan VAE and writes the MP4 (size from the latents and the VAE's
// scale). `status` gets a line per stage; `progress(done, total)` follows the frames and returning
// false cancels: the partial file is removed and false is returned. Errors (no latents, no VAE
// weights, out of memory) throw naming the file; a failed export leaves no partial file.
bool export_session_wan(const SessionLatents& latents, RecorderOptions options,
                        const WanExportOptions& wan,
                        const std::function<bool(int64_t, int64_t)>& progress,
                        const std::function<void(const std::string&)>& status = {});

}  // namespace longlive::ui
