#pragma once
// The debug overlay's content (F1), drawn with Dear ImGui into the video view: where the last
// block's time went (the engine's region timer; a "Kernels" tab lists the kernels of the last
// block the kernel profiler sampled, by region), the block latency of the last 200 blocks with
// prompt switches, transitions and preset changes marked, the prompt-switch latency as the user
// sees it, the latency of an input picked mid-stream (to its first conditioned frame), FPS, memory
// and prompt-cache hits (and whether the last switch's prompt was there). Only reads what it is
// given: no engine calls from the paint path.
#include <string>

#include "longlive/engine.h"

namespace longlive::ui {

// Where the embeddings of the newest prompt switch (or start) came from: the prompt cache (the
// prompt was encoded ahead: typed and left idle, or part of a loaded prompt set) or the text
// encoder on the worker at the switch.
enum class PromptSource { unknown, cache, encoded };
const char* to_string(PromptSource source);

// Follows PromptSource over consecutive stats: when `after` is the first block after a switch
// or a start, its prompt-cache counters against `before` tell the source (any miss: encoded;
// hits only: cache). Otherwise `last` is kept.
PromptSource next_prompt_source(const EngineStats& before, const EngineStats& after,
                                PromptSource last);

struct OverlayInput {
  EngineStats stats;
  PromptSource last_switch_source = PromptSource::unknown;
  double switch_latency_ms = 0;  // Enter pressed -> first frame of the new prompt on screen
  double display_fps = 0;        // frames shown per second by the view
  // Frames the view dropped instead of showing late (its queue past its bound, or older frames
  // skipped for a new prompt's first frame), since its last clear().
  int64_t display_dropped = 0;
  int64_t frame_index = 0;  // the frame on screen
  bool recording = false;
  double memory_gib = 0;       // device memory allocated (CUDA only)
  double peak_memory_gib = 0;  // peak allocated so far
  std::string upload;          // how frames reach the screen: "upload: host", "upload: CUDA-GL ..."
  std::string upload_note;     // why CUDA-GL interop is off, when it failed
  // Why there is no kernel table, shown in the Kernels tab while EngineStats::kernels is empty:
  // KernelProfiler::unavailable_reason() (empty: sampling works, no block sampled yet).
  std::string kernels_note;
  // Brings the Kernels tab to the front (from the next frame; screenshots, tests). While it stays
  // set the tab cannot be left: set it for a frame or two.
  bool select_kernels = false;
};

// What the overlay last showed, for tests and the screenshot check.
struct OverlayReport {
  int regions = 0;
  int kernel_rows = 0;        // kernel rows drawn (the Kernels tab is in front)
  bool kernels_view = false;  // the Kernels tab was in front
  int plotted_blocks = 0;
  int switch_markers = 0;
  int transition_markers = 0;  // blocks shaded as part of a prompt transition
  int preset_markers = 0;      // preset changes marked (and labelled) on the plot
  double switch_latency_ms = 0;
  PromptSource last_switch_source = PromptSource::unknown;  // as shown on the cache line
};

// Call between ImGuiLayer::new_frame() and render().
OverlayReport draw_debug_overlay(const OverlayInput& input);

}  // namespace longlive::ui
