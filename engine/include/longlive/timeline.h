#pragma once
// Session timeline: every control event of a performance (prompts, blends, transitions, cuts,
// preset changes, seed, pause, style-LoRA faders) with the block it took effect before, saved as
// versioned JSON (schema in docs/performing.md). A Performance applies live commands and replayed
// events through the same code, so a replay with the same model, preset and seed is bit-identical.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "longlive/preset.h"
#include "longlive/prompt_mix.h"

namespace longlive {

// The newest schema this build reads and the one it writes (2: style-LoRA fader events; 3: VACE
// and video-to-video inputs; 4: style-LoRA bakes; 5: style-LoRA unloads).
constexpr int kTimelineVersion = 5;

enum class EventKind {
  start,
  cut,
  transition,
  preset,
  pause,
  resume,
  stop,
  lora,
  lora_bake,     // the faders that are up merged into the weights, then set to 0 (no payload)
  lora_unload,   // every style LoRA unloaded (bakes stay in the weights; no payload)
  vace,          // VACE input set (TimelineEvent::vace)
  vace_off,      // VACE input cleared
  vace_scale,    // VACE scale moved (TimelineEvent::strength)
  v2v,           // video-to-video input set (TimelineEvent::v2v)
  v2v_off,       // video-to-video input cleared
  v2v_strength,  // video-to-video strength moved (TimelineEvent::strength)
};
std::string to_string(EventKind kind);

// Where control frames come from (VACE, video-to-video; docs/vace.md).
//   video   a video file (resampled to 16 fps, looped), from frame `offset`
//   camera  a live input (FFmpeg input device `format`: v4l2 /dev/videoN, lavfi, x11grab)
//   image   one picture, repeated
//   frames  frames captured from a camera during a session (raw RGB8, replayed exactly)
enum class InputKind { none, video, camera, image, frames };
std::string to_string(InputKind kind);
InputKind parse_input_kind(const std::string& name);  // ConfigError naming the choices

struct InputSource {
  InputKind kind = InputKind::none;
  std::string path;              // file, or the camera's device
  std::string format;            // camera: the FFmpeg input device (empty: v4l2)
  int64_t offset = 0;            // video, frames: the first frame used (frames taken before it)
  std::string preprocess;        // built-in preprocessor: "" (none), "gray", "edges"
  std::string describe() const;  // "video 'in.mp4'", "camera '/dev/video0'", ...
  bool operator==(const InputSource&) const = default;
};

// The largest VACE hint scale the controls and timelines accept.
constexpr double kMaxVaceScale = 2.0;

// A VACE input: mode conditioning (frames), reference (`reference` image only) or inpaint
// (frames + `mask` image), with its hint scale.
struct VaceRequest {
  InputSource source;
  std::string mode = "conditioning";
  double scale = 1.0;
  std::string reference;  // reference image file (optional in conditioning)
  std::string mask;       // inpaint: mask image file, white = generate
  bool operator==(const VaceRequest&) const = default;
};

struct V2vRequest {
  InputSource source;
  double strength = 0.6;  // (0, 1]: 1 is the plain stream
  bool operator==(const V2vRequest&) const = default;
};

struct TimelineEvent {
  EventKind kind = EventKind::start;
  int64_t block = 0;   // applied before this block, counted from the session's first block
  double time_ms = 0;  // wall time since the session began (informational)
  PromptMix mix;       // start, cut, transition
  uint64_t seed = 0;   // start
  TransitionOptions transition;  // transition
  std::string preset;            // preset (by name)
  // lora: a style-LoRA fader moved to `strength` (0..kMaxLoraStrength); the file is loaded when
  // no LoRA of that name is (a replay loads it from there).
  std::string lora;
  std::string lora_file;
  double strength = 0;  // lora; vace_scale: the scale; v2v_strength: the strength
  VaceRequest vace;     // vace
  V2vRequest v2v;       // v2v
  bool operator==(const TimelineEvent&) const = default;
};

struct Timeline {
  int version = kTimelineVersion;
  std::string model;   // "tiny-random" or the model folder (informational)
  std::string preset;  // preset in effect at the first block
  int height = 0;      // video size of the session
  int width = 0;
  int64_t blocks = 0;  // blocks generated in all
  std::vector<TimelineEvent> events;

  // Names of every preset the timeline uses (the initial one first, no duplicates).
  std::vector<std::string> presets() const;
};

nlohmann::json to_json(const Timeline& timeline);
// Strict: unknown keys, wrong types, bad values, events out of order and versions newer than
// kTimelineVersion are rejected with ConfigError naming `origin` and the field
// (e.g. "t.json: events[2].transition.blocks: ..."); text that is not JSON is a FormatError.
Timeline parse_timeline(std::string_view json_text, const std::string& origin);
Timeline load_timeline(const std::filesystem::path& path);
void save_timeline(const std::filesystem::path& path, const Timeline& timeline);

// A performer's prompt list (the studio's blend rows and setlist), JSON:
//   {"version": 1, "blend": "linear", "prompts": [{"text": "...", "weight": 1.0}, ...]}
// 1 to kMaxPromptSetSize prompts; weights >= 0 (a zero weight keeps a prompt out of the blend).
constexpr int kPromptSetVersion = 1;
constexpr size_t kMaxPromptSetSize = 64;
struct PromptSet {
  std::vector<WeightedPrompt> prompts;
  Interpolation blend = Interpolation::linear;
};
nlohmann::json to_json(const PromptSet& set);
PromptSet parse_prompt_set(std::string_view json_text, const std::string& origin);
PromptSet load_prompt_set(const std::filesystem::path& path);
void save_prompt_set(const std::filesystem::path& path, const PromptSet& set);

// Most recent first, no duplicates (by exact text), at most `limit` entries.
void remember_prompt(std::vector<std::string>& recent, const std::string& prompt,
                     size_t limit = 20);

// Resolves every preset name of the timeline up front (fail before rendering, not midway):
// ConfigError naming the timeline, the event and the missing preset.
using PresetLookup = std::function<Preset(const std::string& name)>;
void check_presets(const Timeline& timeline, const PresetLookup& lookup, const std::string& origin);

}  // namespace longlive
