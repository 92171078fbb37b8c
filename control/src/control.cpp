// OSC address parsing and the Engine binding (see longlive/control.h, docs/control.md).
#include "longlive/control.h"

#include <fmt/format.h>

#include <cmath>
#include <string_view>

#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/log.h"
#include "longlive/style_lora.h"

namespace longlive {
namespace {

constexpr std::string_view kRoot = "/longlive/";

// Typed reads of one message's arguments; errors name the address and the argument.
class Args {
 public:
  explicit Args(const OscMessage& m) : m_(m) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw ConfigError(fmt::format("{}: {}", m_.path, what));
  }
  size_t size() const { return m_.args.size(); }
  void expect(size_t min, size_t max, const char* signature) const {
    if (size() < min || size() > max)
      fail(fmt::format("{} arguments, expected {}", size(), signature));
  }
  std::string text(size_t i, const char* what) const {
    const auto* s = std::get_if<std::string>(&m_.args.at(i));
    if (!s) fail(fmt::format("argument {} ({}) must be a string", i + 1, what));
    return *s;
  }
  double number(size_t i, const char* what, double min, double max) const {
    const OscArg& a = m_.args.at(i);
    double v = 0;
    if (const auto* n = std::get_if<int64_t>(&a))
      v = static_cast<double>(*n);
    else if (const auto* d = std::get_if<double>(&a))
      v = *d;
    else
      fail(fmt::format("argument {} ({}) must be a number", i + 1, what));
    if (!std::isfinite(v) || v < min || v > max)
      fail(fmt::format("{} {} is outside {}..{}", what, v, min, max));
    return v;
  }
  int64_t integer(size_t i, const char* what, int64_t min, int64_t max) const {
    const double v = number(i, what, static_cast<double>(min), static_cast<double>(max));
    if (v != std::floor(v)) fail(fmt::format("{} {} must be a whole number", what, v));
    return static_cast<int64_t>(v);
  }

 private:
  const OscMessage& m_;
};

// (text, weight) pairs from argument `first` on, checked as a blend.
PromptMix read_blend(const Args& a, size_t first, const std::string& path) {
  if (a.size() <= first || (a.size() - first) % 2 != 0 || (a.size() - first) / 2 > kMaxBlendPrompts)
    a.fail(fmt::format("expected 1 to {} (prompt, weight) pairs", kMaxBlendPrompts));
  PromptMix mix;
  for (size_t i = first; i < a.size(); i += 2)
    mix.prompts.push_back({a.text(i, "prompt"), a.number(i + 1, "weight", 0, 1e6)});
  mix.validate(path);
  return mix;
}

PromptMix read_prompt(const Args& a, size_t i, const std::string& path) {
  PromptMix mix = PromptMix::single(a.text(i, "prompt"));
  mix.validate(path);
  return mix;
}

Interpolation read_curve(const Args& a, size_t i, const std::string& path) {
  if (i >= a.size()) return Interpolation::slerp;
  return parse_interpolation(a.text(i, "curve"), path + " curve");
}

}  // namespace

std::string to_string(ControlCommand::Kind kind) {
  using K = ControlCommand::Kind;
  switch (kind) {
    case K::start:
      return "start";
    case K::cut:
      return "cut";
    case K::transition:
      return "transition";
    case K::preset:
      return "preset";
    case K::pause:
      return "pause";
    case K::resume:
      return "resume";
    case K::stop:
      return "stop";
    case K::lora_strength:
      return "lora_strength";
    case K::lora_load:
      return "lora_load";
    case K::lora_bake:
      return "lora_bake";
    case K::lora_unload:
      return "lora_unload";
    case K::record:
      return "record";
    case K::vace_scale:
      return "vace_scale";
    case K::v2v_strength:
      return "v2v_strength";
    case K::stream_out:
      return "stream_out";
    case K::camera_out:
      return "camera_out";
  }
  return "?";
}

std::string describe(const ControlCommand& c) {
  using K = ControlCommand::Kind;
  switch (c.kind) {
    case K::start:
      return fmt::format("start '{}' seed {}", c.mix.label(), c.seed);
    case K::cut:
      return fmt::format("cut '{}'", c.mix.label());
    case K::transition:
      return fmt::format("transition '{}' over {} blocks ({})", c.mix.label(), c.transition.blocks,
                         to_string(c.transition.interpolation));
    case K::preset:
      return "preset " + c.name;
    case K::lora_strength:
      return fmt::format("lora_strength {} {}", c.name, c.value);
    case K::lora_load:
      return fmt::format("lora_load {} as '{}'", c.file, c.name);
    case K::record:
      return c.on ? "record on" : "record off";
    case K::vace_scale:
    case K::v2v_strength:
      return fmt::format("{} {}", to_string(c.kind), c.value);
    case K::stream_out:
    case K::camera_out:
      if (!c.on) return to_string(c.kind) + " off";
      return to_string(c.kind) + " on" + (c.file.empty() ? "" : " " + c.file);
    default:
      return to_string(c.kind);
  }
}

ControlCommand parse_osc(const OscMessage& m) {
  using K = ControlCommand::Kind;
  const Args a(m);
  if (!std::string_view(m.path).starts_with(kRoot))
    a.fail(fmt::format("not a LongLive address (they start with {})", kRoot));
  const std::string_view address = std::string_view(m.path).substr(kRoot.size());
  ControlCommand c;
  auto none = [&](K kind) {
    a.expect(0, 0, "none");
    c.kind = kind;
    return c;
  };
  if (address == "start") {
    a.expect(1, 2, "(prompt[, seed])");
    c.kind = K::start;
    c.mix = read_prompt(a, 0, m.path);
    if (a.size() > 1) c.seed = static_cast<uint64_t>(a.integer(1, "seed", 0, INT64_MAX));
    return c;
  }
  if (address == "prompt") {
    a.expect(1, 1, "(prompt)");
    c.kind = K::cut;
    c.mix = read_prompt(a, 0, m.path);
    return c;
  }
  if (address == "transition") {
    a.expect(2, 3, "(prompt, blocks[, curve])");
    c.kind = K::transition;
    c.mix = read_prompt(a, 0, m.path);
    c.transition.blocks = a.integer(1, "blocks", 0, kMaxTransitionBlocks);
    c.transition.interpolation = read_curve(a, 2, m.path);
    return c;
  }
  if (address == "blend") {
    c.kind = K::cut;
    c.mix = read_blend(a, 0, m.path);
    return c;
  }
  if (address == "blend/transition") {
    if (a.size() < 4) a.fail("expected (blocks, curve, prompt, weight[, prompt, weight ...])");
    c.kind = K::transition;
    c.transition.blocks = a.integer(0, "blocks", 0, kMaxTransitionBlocks);
    c.transition.interpolation = read_curve(a, 1, m.path);
    c.mix = read_blend(a, 2, m.path);
    return c;
  }
  if (address == "preset") {
    a.expect(1, 1, "(name)");
    c.kind = K::preset;
    c.name = a.text(0, "preset name");
    if (c.name.empty()) a.fail("empty preset name");
    return c;
  }
  if (address == "pause") return none(K::pause);
  if (address == "resume") return none(K::resume);
  if (address == "stop") return none(K::stop);
  if (address == "lora") {
    a.expect(2, 2, "(name, strength)");
    c.kind = K::lora_strength;
    c.name = a.text(0, "LoRA name");
    c.value = a.number(1, "strength", 0, kMaxLoraStrength);
    if (c.name.empty()) a.fail("empty LoRA name");
    return c;
  }
  if (address == "lora/load") {
    a.expect(1, 2, "(file[, name])");
    c.kind = K::lora_load;
    c.file = a.text(0, "file");
    if (a.size() > 1) c.name = a.text(1, "name");
    if (c.file.empty()) a.fail("empty file name");
    return c;
  }
  // Before lora/<name>: a LoRA named "bake" or "unload" is moved with /longlive/lora (name,
  // strength).
  if (address == "lora/bake") return none(K::lora_bake);
  if (address == "lora/unload") return none(K::lora_unload);
  if (address.starts_with("lora/")) {
    a.expect(1, 1, "(strength)");
    c.kind = K::lora_strength;
    c.name = std::string(address.substr(5));
    c.value = a.number(0, "strength", 0, kMaxLoraStrength);
    return c;
  }
  if (address == "record") {
    a.expect(1, 1, "(1 = on, 0 = off)");
    c.kind = K::record;
    c.on = a.integer(0, "record", 0, 1) == 1;
    return c;
  }
  if (address == "vace/scale") {
    a.expect(1, 1, "(scale)");
    c.kind = K::vace_scale;
    c.value = a.number(0, "scale", 0, kMaxVaceScale);
    return c;
  }
  if (address == "v2v/strength") {
    a.expect(1, 1, "(strength)");
    c.kind = K::v2v_strength;
    c.value = a.number(0, "strength", 0, 1);
    return c;
  }
  if (address == "out/stream" || address == "out/camera") {
    // (1 | 0): on with the front end's URL/device, or off; (text): on with this URL/device.
    a.expect(1, 1, address == "out/stream" ? "(1 | 0 | url)" : "(1 | 0 | device)");
    c.kind = address == "out/stream" ? K::stream_out : K::camera_out;
    if (std::holds_alternative<std::string>(m.args[0])) {
      c.file = a.text(0, address == "out/stream" ? "url" : "device");
      if (c.file.empty())
        a.fail("empty " + std::string(address == "out/stream" ? "url" : "device"));
      c.on = true;
    } else {
      c.on = a.integer(0, "on", 0, 1) == 1;
    }
    return c;
  }
  a.fail("unknown address (see docs/control.md)");
}

EngineControl::EngineControl(Engine& engine, PresetLookup presets, FrontEndControls front_end)
    : engine_(engine), presets_(std::move(presets)), front_end_(std::move(front_end)) {}

void EngineControl::apply(const ControlCommand& c) {
  using K = ControlCommand::Kind;
  switch (c.kind) {
    case K::start:
      engine_.start(c.mix, c.seed);
      break;
    case K::cut:
      engine_.cut(c.mix);
      break;
    case K::transition:
      engine_.transition(c.mix, c.transition);
      break;
    case K::preset:
      if (!presets_) throw ConfigError("preset " + c.name + ": this front end has no presets");
      engine_.set_preset(presets_(c.name));  // an unknown name throws here, before the engine
      break;
    case K::pause:
      engine_.pause();
      break;
    case K::resume:
      engine_.resume();
      break;
    case K::stop:
      engine_.stop();
      break;
    case K::lora_strength:
      engine_.set_lora_strength(c.name, c.value);
      break;
    case K::lora_load:
      engine_.load_lora(c.file, c.name);
      break;
    case K::lora_bake:  // with no fader up the engine reports it (on_error)
      engine_.bake_loras();
      break;
    case K::lora_unload:  // with none loaded the engine reports it (on_error)
      engine_.unload_loras();
      break;
    case K::record:
      if (front_end_.record)
        front_end_.record(c.on);
      else
        log::warn("control: {} ignored (this front end records nothing)", describe(c));
      break;
    case K::vace_scale:  // without an input the engine reports it (on_error)
      engine_.set_vace_scale(c.value);
      break;
    case K::v2v_strength:
      engine_.set_v2v_strength(c.value);
      break;
    case K::stream_out:
    case K::camera_out:
      if (front_end_.video_out)
        front_end_.video_out(c);
      else
        log::warn("control: {} ignored (this front end has no video out)", describe(c));
      break;
  }
}

}  // namespace longlive
