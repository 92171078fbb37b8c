#pragma once
// MIDI bindings: controllers (CC) move LoRA faders, notes fire prompts of a prompt set. The
// binding logic needs no hardware (tests feed it events); a MIDI input (ALSA sequencer or any
// other) only turns bytes into MidiEvents. Thread-safe: the input thread calls handle() while the
// UI arms targets.
//
// MIDI learn: arm() a target (a fader or a prompt slot), move a controller or hit a key: the next
// CC (for a fader) or note-on (for a prompt slot) binds it. The control's previous binding and
// the target's previous binding are replaced; other events while armed are ignored.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "longlive/control.h"
#include "longlive/timeline.h"

namespace longlive {

struct MidiEvent {
  enum class Type { control_change, note_on, note_off };
  Type type = Type::control_change;
  int channel = 0;  // 0..15
  int number = 0;   // controller or note, 0..127
  int value = 0;    // controller value or velocity, 0..127 (note-on with velocity 0 = note-off)
};

struct MidiTarget {
  enum class Kind { lora, prompt, bake };  // bake: the LoRA panel's Bake button (a key)
  Kind kind = Kind::lora;
  std::string lora;  // lora: the fader's LoRA name
  int slot = 0;      // prompt: index into the prompt set
  bool operator==(const MidiTarget&) const = default;
};
std::string describe(const MidiTarget& target);  // "LoRA glow", "prompt slot 3", "LoRA bake"

struct MidiBinding {
  MidiTarget target;
  int channel = 0;
  int number = 0;  // CC number for a fader, note for a prompt slot
  bool operator==(const MidiBinding&) const = default;
};

constexpr int kMidiBindingsVersion = 1;

class MidiBindings {
 public:
  // Arms MIDI learn for `target` (replacing an armed one).
  void arm(const MidiTarget& target);
  void cancel();
  std::optional<MidiTarget> armed() const;

  // One event. While armed: a fitting event binds the target (returned in `learned`), nothing
  // else happens. Otherwise: the commands its bindings ask for — a fader's strength is
  // value / 127 * kMaxLoraStrength; a prompt slot's note-on cuts (or transitions, see
  // set_prompt_transition) to that prompt of the prompt set; the bake's note-on bakes. Unbound
  // events give nothing; a slot past the prompt set's end is logged and ignored.
  struct Result {
    std::vector<ControlCommand> commands;
    std::optional<MidiBinding> learned;
  };
  Result handle(const MidiEvent& event);

  void set_prompt_set(PromptSet prompts);
  void set_prompt_transition(const TransitionOptions& options);  // blocks 0: hard cut (default)

  std::vector<MidiBinding> bindings() const;
  void bind(const MidiBinding& binding);  // as learn does (replaces control's and target's)
  void unbind(const MidiTarget& target);

  // {"version": 1, "bindings": [{"lora": "glow", "channel": 0, "cc": 21},
  //                              {"prompt": 2, "channel": 0, "note": 60},
  //                              {"bake": true, "channel": 0, "note": 48}]}
  nlohmann::json to_json() const;
  // Strict: unknown keys, wrong types and values out of range are ConfigErrors naming `origin`
  // and the field ("bindings.json: bindings[1].cc: 130 is outside 0..127").
  void load_json(std::string_view text, const std::string& origin);
  void save(const std::filesystem::path& path) const;
  void load(const std::filesystem::path& path);

 private:
  void bind_locked(const MidiBinding& binding);
  mutable std::mutex mutex_;
  std::optional<MidiTarget> armed_;
  std::vector<MidiBinding> bindings_;
  PromptSet prompts_;
  TransitionOptions prompt_transition_;
};

}  // namespace longlive
