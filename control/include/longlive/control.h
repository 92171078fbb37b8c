#pragma once
// Remote control of a live session: OSC messages (osc_server.h) and MIDI bindings (midi.h) become
// ControlCommands, which reach the Engine through its own command queue, so they are the same
// timeline events as the studio's controls and replay exactly. No Qt: the CLI can use it too.
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "longlive/prompt_mix.h"
#include "longlive/timeline.h"

namespace longlive {

class Engine;

struct ControlCommand {
  enum class Kind {
    start,       // mix, seed
    cut,         // mix
    transition,  // mix, transition
    preset,      // name
    pause,
    resume,
    stop,
    lora_strength,  // name, value (0..kMaxLoraStrength)
    lora_load,      // file, name (empty: after the file)
    lora_bake,      // (none): merge the faders that are up into the weights
    lora_unload,    // (none): unload every style LoRA (their side path goes; bakes stay)
    record,         // on
    vace_scale,     // value (0..kMaxVaceScale): the VACE input's hint scale
    v2v_strength,   // value (0..1): the video-to-video input's strength
    stream_out,     // on, file: the URL (empty: the front end's own)
    camera_out,     // on, file: the v4l2loopback device (empty: the front end's own)
  };
  Kind kind = Kind::stop;
  PromptMix mix;
  uint64_t seed = 0;
  TransitionOptions transition;
  std::string name;
  std::string file;
  double value = 0;
  bool on = false;
};
std::string to_string(ControlCommand::Kind kind);
// One line for logs: "lora_strength glow 0.8".
std::string describe(const ControlCommand& command);

// Ranges checked before a command is sent on.
constexpr int64_t kMaxTransitionBlocks = 256;  // (kMaxVaceScale: timeline.h)

// One OSC message, decoded from the wire (numbers as int64 or double, strings, booleans as int).
using OscArg = std::variant<int64_t, double, std::string>;
struct OscMessage {
  std::string path;
  std::vector<OscArg> args;
  std::string sender;             // "host:port", for logs
  std::string unsupported_types;  // OSC type tags not decoded (blobs, MIDI, ...): rejected
};
// The command an OSC message asks for (addresses in docs/control.md). ConfigError saying what is
// wrong (unknown address, argument types, a value out of range) otherwise.
ControlCommand parse_osc(const OscMessage& message);

// What a front end does itself (the engine neither records nor sends video out).
struct FrontEndControls {
  std::function<void(bool on)> record;
  // stream_out / camera_out commands.
  std::function<void(const ControlCommand&)> video_out;
};

// Sends commands to an Engine. Presets are looked up by name; record and video-out commands go
// to the front end's controls: without one they are logged and dropped. Throws ConfigError for
// an unknown preset.
class EngineControl {
 public:
  EngineControl(Engine& engine, PresetLookup presets, FrontEndControls front_end = {});
  void apply(const ControlCommand& command);

 private:
  Engine& engine_;
  PresetLookup presets_;
  FrontEndControls front_end_;
};

}  // namespace longlive
