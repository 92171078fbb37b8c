// MIDI binding logic (see longlive/midi.h).
#include "longlive/midi.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/style_lora.h"

namespace longlive {
namespace {

using nlohmann::json;

bool same_control(const MidiBinding& a, const MidiBinding& b) {
  const bool a_note = a.target.kind != MidiTarget::Kind::lora;  // prompt slots and bake: keys
  const bool b_note = b.target.kind != MidiTarget::Kind::lora;
  return a_note == b_note && a.channel == b.channel && a.number == b.number;
}

int read_int(const json& object, const std::string& key, int min, int max, const std::string& field,
             const std::string& origin) {
  const auto it = object.find(key);
  if (it == object.end()) throw ConfigError(fmt::format("{}: {}.{}: missing", origin, field, key));
  if (!it->is_number_integer())
    throw ConfigError(
        fmt::format("{}: {}.{}: expected an integer, got {}", origin, field, key, it->dump()));
  const int64_t v = it->get<int64_t>();
  if (v < min || v > max)
    throw ConfigError(
        fmt::format("{}: {}.{}: {} is outside {}..{}", origin, field, key, v, min, max));
  return static_cast<int>(v);
}

}  // namespace

std::string describe(const MidiTarget& t) {
  switch (t.kind) {
    case MidiTarget::Kind::lora:
      return "LoRA " + t.lora;
    case MidiTarget::Kind::prompt:
      return fmt::format("prompt slot {}", t.slot);
    case MidiTarget::Kind::bake:
      return "LoRA bake";
  }
  return "?";
}

void MidiBindings::arm(const MidiTarget& target) {
  std::lock_guard lock(mutex_);
  armed_ = target;
}

void MidiBindings::cancel() {
  std::lock_guard lock(mutex_);
  armed_.reset();
}

std::optional<MidiTarget> MidiBindings::armed() const {
  std::lock_guard lock(mutex_);
  return armed_;
}

MidiBindings::Result MidiBindings::handle(const MidiEvent& e) {
  using Type = MidiEvent::Type;
  Result result;
  const bool note_on = e.type == Type::note_on && e.value > 0;
  const bool cc = e.type == Type::control_change;
  std::lock_guard lock(mutex_);
  if (armed_) {
    // A fader learns a controller, a prompt slot a key; anything else waits.
    const bool fits = armed_->kind == MidiTarget::Kind::lora ? cc : note_on;
    if (!fits) return result;
    const MidiBinding b{*armed_, e.channel, e.number};
    bind_locked(b);
    armed_.reset();
    result.learned = b;
    return result;
  }
  for (const auto& b : bindings_) {
    if (b.channel != e.channel || b.number != e.number) continue;
    if (b.target.kind == MidiTarget::Kind::lora && cc) {
      ControlCommand c;
      c.kind = ControlCommand::Kind::lora_strength;
      c.name = b.target.lora;
      c.value = std::clamp(e.value, 0, 127) / 127.0 * kMaxLoraStrength;
      result.commands.push_back(std::move(c));
    } else if (b.target.kind == MidiTarget::Kind::prompt && note_on) {
      if (b.target.slot < 0 || static_cast<size_t>(b.target.slot) >= prompts_.prompts.size()) {
        log::warn("MIDI: note {} (channel {}) fires prompt slot {}, but the prompt set has {}",
                  e.number, e.channel + 1, b.target.slot, prompts_.prompts.size());
        continue;
      }
      ControlCommand c;
      c.kind = prompt_transition_.blocks > 0 ? ControlCommand::Kind::transition
                                             : ControlCommand::Kind::cut;
      c.mix = PromptMix::single(prompts_.prompts[static_cast<size_t>(b.target.slot)].text);
      c.transition = prompt_transition_;
      result.commands.push_back(std::move(c));
    } else if (b.target.kind == MidiTarget::Kind::bake && note_on) {
      ControlCommand c;
      c.kind = ControlCommand::Kind::lora_bake;
      result.commands.push_back(std::move(c));
    }
  }
  return result;
}

void MidiBindings::set_prompt_set(PromptSet prompts) {
  std::lock_guard lock(mutex_);
  prompts_ = std::move(prompts);
}

void MidiBindings::set_prompt_transition(const TransitionOptions& options) {
  std::lock_guard lock(mutex_);
  prompt_transition_ = options;
}

std::vector<MidiBinding> MidiBindings::bindings() const {
  std::lock_guard lock(mutex_);
  return bindings_;
}

void MidiBindings::bind(const MidiBinding& binding) {
  std::lock_guard lock(mutex_);
  bind_locked(binding);
}

void MidiBindings::bind_locked(const MidiBinding& b) {
  if (b.channel < 0 || b.channel > 15 || b.number < 0 || b.number > 127)
    throw ConfigError(fmt::format("MIDI binding of {}: channel {} / number {} out of range",
                                  describe(b.target), b.channel, b.number));
  std::erase_if(bindings_, [&](const MidiBinding& old) {
    return old.target == b.target || same_control(old, b);
  });
  bindings_.push_back(b);
}

void MidiBindings::unbind(const MidiTarget& target) {
  std::lock_guard lock(mutex_);
  std::erase_if(bindings_, [&](const MidiBinding& b) { return b.target == target; });
}

json MidiBindings::to_json() const {
  std::lock_guard lock(mutex_);
  json list = json::array();
  for (const auto& b : bindings_) {
    if (b.target.kind == MidiTarget::Kind::lora)
      list.push_back({{"lora", b.target.lora}, {"channel", b.channel}, {"cc", b.number}});
    else if (b.target.kind == MidiTarget::Kind::bake)
      list.push_back({{"bake", true}, {"channel", b.channel}, {"note", b.number}});
    else
      list.push_back({{"prompt", b.target.slot}, {"channel", b.channel}, {"note", b.number}});
  }
  return {{"version", kMidiBindingsVersion}, {"bindings", std::move(list)}};
}

void MidiBindings::load_json(std::string_view text, const std::string& origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw FormatError(fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
  auto fail = [&](const std::string& field, const std::string& what) {
    throw ConfigError(fmt::format("{}: {}: {}", origin, field, what));
  };
  if (!root.is_object()) fail("(top)", "expected an object");
  for (const auto& [key, value] : root.items())
    if (key != "version" && key != "bindings") fail(key, "unknown field");
  const int version = read_int(root, "version", 1, INT32_MAX, "(top)", origin);
  if (version > kMidiBindingsVersion)
    fail("version",
         fmt::format("{} is newer than this build reads ({})", version, kMidiBindingsVersion));
  const auto list = root.find("bindings");
  if (list == root.end() || !list->is_array()) fail("bindings", "expected an array");
  std::vector<MidiBinding> loaded;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& o = (*list)[i];
    const std::string field = fmt::format("bindings[{}]", i);
    if (!o.is_object()) fail(field, "expected an object");
    MidiBinding b;
    const bool lora = o.contains("lora"), prompt = o.contains("prompt"), bake = o.contains("bake");
    if (int(lora) + int(prompt) + int(bake) != 1)
      fail(field, "needs exactly one of \"lora\", \"prompt\" and \"bake\"");
    std::set<std::string> allowed = {"channel",
                                     lora     ? "lora"
                                     : prompt ? "prompt"
                                              : "bake",
                                     lora ? "cc" : "note"};
    for (const auto& [key, value] : o.items())
      if (!allowed.contains(key)) fail(field + "." + key, "unknown field");
    if (bake) {
      if (!o["bake"].is_boolean() || !o["bake"].get<bool>()) fail(field + ".bake", "expected true");
      b.target = {MidiTarget::Kind::bake, {}, 0};
      b.number = read_int(o, "note", 0, 127, field, origin);
    } else if (lora) {
      if (!o["lora"].is_string() || o["lora"].get<std::string>().empty())
        fail(field + ".lora", "expected a LoRA name");
      b.target = {MidiTarget::Kind::lora, o["lora"].get<std::string>(), 0};
      b.number = read_int(o, "cc", 0, 127, field, origin);
    } else {
      b.target = {MidiTarget::Kind::prompt,
                  {},
                  read_int(o, "prompt", 0, static_cast<int>(kMaxPromptSetSize) - 1, field, origin)};
      b.number = read_int(o, "note", 0, 127, field, origin);
    }
    b.channel = read_int(o, "channel", 0, 15, field, origin);
    loaded.push_back(std::move(b));
  }
  std::lock_guard lock(mutex_);
  bindings_.clear();
  for (const auto& b : loaded) bind_locked(b);
}

void MidiBindings::save(const std::filesystem::path& path) const {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json().dump(2) << '\n';
    if (!out) throw IoError(fmt::format("cannot write MIDI bindings '{}'", tmp.string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw IoError(fmt::format("cannot write MIDI bindings '{}': {}", path.string(), ec.message()));
}

void MidiBindings::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw IoError(fmt::format("cannot open MIDI bindings '{}'", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  load_json(text.str(), path.string());
}

}  // namespace longlive
