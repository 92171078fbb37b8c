#include "longlive/timeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/replace_file.h"
#include "longlive/error.h"
#include "longlive/style_lora.h"

namespace longlive {
namespace {

using nlohmann::json;

constexpr std::pair<EventKind, const char*> kKinds[] = {{EventKind::start, "start"},
                                                        {EventKind::cut, "cut"},
                                                        {EventKind::transition, "transition"},
                                                        {EventKind::preset, "preset"},
                                                        {EventKind::pause, "pause"},
                                                        {EventKind::resume, "resume"},
                                                        {EventKind::stop, "stop"},
                                                        {EventKind::lora, "lora"},
                                                        {EventKind::lora_bake, "lora_bake"},
                                                        {EventKind::lora_unload, "lora_unload"},
                                                        {EventKind::vace, "vace"},
                                                        {EventKind::vace_off, "vace_off"},
                                                        {EventKind::vace_scale, "vace_scale"},
                                                        {EventKind::v2v, "v2v"},
                                                        {EventKind::v2v_off, "v2v_off"},
                                                        {EventKind::v2v_strength, "v2v_strength"}};

constexpr std::pair<InputKind, const char*> kInputKinds[] = {{InputKind::none, "none"},
                                                             {InputKind::video, "video"},
                                                             {InputKind::camera, "camera"},
                                                             {InputKind::image, "image"},
                                                             {InputKind::frames, "frames"}};

// One JSON object of the file: typed reads by key, unknown keys rejected, errors name the path.
class ObjectReader {
 public:
  ObjectReader(const json& value, std::string path, const std::string& origin)
      : path_(std::move(path)), origin_(origin) {
    if (!value.is_object()) fail(path_, fmt::format("expected an object, got {}", value.dump()));
    object_ = &value;
  }

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw ConfigError(fmt::format("{}: {}: {}", origin_, field, what));
  }
  std::string field(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  const json* find(const std::string& key, bool required) {
    seen_.insert(key);
    const auto it = object_->find(key);
    if (it == object_->end()) {
      if (required) fail(field(key), "missing");
      return nullptr;
    }
    return &*it;
  }
  std::string string(const std::string& key, bool required = true) {
    const json* v = find(key, required);
    if (!v) return {};
    if (!v->is_string()) fail(field(key), fmt::format("expected a string, got {}", v->dump()));
    return v->get<std::string>();
  }
  int64_t integer(const std::string& key, int64_t min, bool required = true, int64_t fallback = 0) {
    const json* v = find(key, required);
    if (!v) return fallback;
    if (!v->is_number_integer())
      fail(field(key), fmt::format("expected an integer, got {}", v->dump()));
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail(field(key), fmt::format("{} is too large", v->dump()));
    const int64_t n = v->get<int64_t>();
    if (n < min) fail(field(key), fmt::format("{} must be >= {}", n, min));
    return n;
  }
  uint64_t unsigned_integer(const std::string& key) {
    const json* v = find(key, true);
    if (!v->is_number_unsigned())
      fail(field(key), fmt::format("expected an integer >= 0, got {}", v->dump()));
    return v->get<uint64_t>();
  }
  double number(const std::string& key, bool required, double fallback) {
    const json* v = find(key, required);
    if (!v) return fallback;
    if (!v->is_number()) fail(field(key), fmt::format("expected a number, got {}", v->dump()));
    return v->get<double>();
  }
  bool boolean(const std::string& key, bool fallback) {
    const json* v = find(key, false);
    if (!v) return fallback;
    if (!v->is_boolean())
      fail(field(key), fmt::format("expected true or false, got {}", v->dump()));
    return v->get<bool>();
  }
  // After all reads: any key not read is unknown.
  void finish() const {
    for (const auto& [key, value] : object_->items())
      if (!seen_.contains(key)) fail(field(key), "unknown field");
  }

 private:
  const json* object_ = nullptr;
  std::string path_;
  const std::string& origin_;
  std::set<std::string> seen_;
};

Interpolation read_interpolation(ObjectReader& r, const std::string& key, Interpolation fallback,
                                 const std::string& origin) {
  const std::string text = r.string(key, false);
  if (text.empty()) return fallback;
  try {
    return parse_interpolation(text, r.field(key));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", origin, e.what()));
  }
}

PromptMix read_mix(ObjectReader& r, const std::string& origin) {
  PromptMix mix;
  const json* prompts = r.find("prompts", true);
  if (!prompts->is_array()) r.fail(r.field("prompts"), "expected an array of {text, weight}");
  for (size_t i = 0; i < prompts->size(); ++i) {
    ObjectReader p((*prompts)[i], fmt::format("{}[{}]", r.field("prompts"), i), origin);
    WeightedPrompt w;
    w.text = p.string("text");
    w.weight = p.number("weight", false, 1.0);
    p.finish();
    mix.prompts.push_back(std::move(w));
  }
  mix.blend = read_interpolation(r, "blend", Interpolation::linear, origin);
  try {
    mix.validate(r.field("prompts"));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", origin, e.what()));
  }
  return mix;
}

// Parses one JSON document; the timeline and prompt-set readers then check its fields.
json parse_document(std::string_view text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // also out_of_range: a number too large for a double
    throw FormatError(fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
}

// The version is read first: a newer file may use fields this build does not know, and should
// fail on its version rather than on one of those.
int64_t read_version(ObjectReader& r, int64_t supported) {
  const int64_t version = r.integer("version", 1);
  if (version > supported)
    r.fail("version", fmt::format("{} is newer than this build reads ({}); update LongLive Studio",
                                  version, supported));
  return version;
}

json source_json(const InputSource& s) {
  return json{{"kind", to_string(s.kind)},
              {"path", s.path},
              {"format", s.format},
              {"offset", s.offset},
              {"preprocess", s.preprocess}};
}

InputSource read_source(ObjectReader& e, const std::string& origin) {
  ObjectReader r(*e.find("source", true), e.field("source"), origin);
  InputSource s;
  const std::string kind = r.string("kind");
  try {
    s.kind = parse_input_kind(kind);
  } catch (const ConfigError& error) {
    r.fail(r.field("kind"), error.what());
  }
  s.path = r.string("path", false);
  s.format = r.string("format", false);
  s.offset = r.integer("offset", 0, false, 0);
  s.preprocess = r.string("preprocess", false);
  if (s.preprocess != "" && s.preprocess != "gray" && s.preprocess != "edges")
    r.fail(r.field("preprocess"),
           fmt::format("'{}' is not a preprocessor (\"\", gray, edges)", s.preprocess));
  if (s.kind != InputKind::none && s.path.empty()) r.fail(r.field("path"), "empty");
  r.finish();
  return s;
}

double read_unit(ObjectReader& e, const std::string& key, double min, double max, bool open_min) {
  const double v = e.number(key, true, 0.0);
  if (!std::isfinite(v) || v < min || v > max || (open_min && v == min))
    e.fail(e.field(key), fmt::format("{} is outside {}{}..{}]", v, open_min ? "(" : "[", min, max));
  return v;
}

json mix_json(const PromptMix& mix) {
  json prompts = json::array();
  for (const auto& p : mix.prompts) prompts.push_back({{"text", p.text}, {"weight", p.weight}});
  return prompts;
}

}  // namespace

std::string to_string(EventKind kind) {
  for (const auto& [k, name] : kKinds)
    if (k == kind) return name;
  return "?";
}

std::string to_string(InputKind kind) {
  for (const auto& [k, name] : kInputKinds)
    if (k == kind) return name;
  return "?";
}

InputKind parse_input_kind(const std::string& name) {
  for (const auto& [k, n] : kInputKinds)
    if (name == n) return k;
  throw ConfigError(fmt::format(
      "input kind '{}' is unknown; expected none, video, camera, image or frames", name));
}

std::string InputSource::describe() const {
  if (kind == InputKind::none) return "none";
  std::string text = fmt::format("{} '{}'", to_string(kind), path);
  if (offset > 0) text += fmt::format(" from frame {}", offset);
  if (!preprocess.empty()) text += fmt::format(" ({})", preprocess);
  return text;
}

std::vector<std::string> Timeline::presets() const {
  std::vector<std::string> names{preset};
  for (const auto& e : events)
    if (e.kind == EventKind::preset &&
        std::find(names.begin(), names.end(), e.preset) == names.end())
      names.push_back(e.preset);
  return names;
}

json to_json(const Timeline& t) {
  json events = json::array();
  for (const auto& e : t.events) {
    json j{{"block", e.block}, {"time_ms", e.time_ms}, {"type", to_string(e.kind)}};
    switch (e.kind) {
      case EventKind::start:
        j["seed"] = e.seed;
        [[fallthrough]];
      case EventKind::cut:
        j["prompts"] = mix_json(e.mix);
        j["blend"] = to_string(e.mix.blend);
        break;
      case EventKind::transition:
        j["prompts"] = mix_json(e.mix);
        j["blend"] = to_string(e.mix.blend);
        j["transition"] = {{"blocks", e.transition.blocks},
                           {"interpolation", to_string(e.transition.interpolation)},
                           {"recache", e.transition.recache_at_end}};
        break;
      case EventKind::preset:
        j["preset"] = e.preset;
        break;
      case EventKind::lora:
        j["lora"] = e.lora;
        j["file"] = e.lora_file;
        j["strength"] = e.strength;
        break;
      case EventKind::vace:
        j["source"] = source_json(e.vace.source);
        j["mode"] = e.vace.mode;
        j["scale"] = e.vace.scale;
        j["reference"] = e.vace.reference;
        j["mask"] = e.vace.mask;
        break;
      case EventKind::v2v:
        j["source"] = source_json(e.v2v.source);
        j["strength"] = e.v2v.strength;
        break;
      case EventKind::vace_scale:
        j["scale"] = e.strength;
        break;
      case EventKind::v2v_strength:
        j["strength"] = e.strength;
        break;
      default:
        break;
    }
    events.push_back(std::move(j));
  }
  return json{{"version", t.version},       {"model", t.model}, {"preset", t.preset},
              {"height", t.height},         {"width", t.width}, {"blocks", t.blocks},
              {"events", std::move(events)}};
}

Timeline parse_timeline(std::string_view text, const std::string& origin) {
  const json root = parse_document(text, origin);
  ObjectReader r(root, "", origin);
  Timeline t;
  t.version = static_cast<int>(read_version(r, kTimelineVersion));
  t.model = r.string("model", false);
  t.preset = r.string("preset");
  if (t.preset.empty()) r.fail("preset", "empty preset name");
  t.height = static_cast<int>(r.integer("height", 16));
  t.width = static_cast<int>(r.integer("width", 16));
  if (t.height % 16 || t.width % 16)
    r.fail("height",
           fmt::format("{}x{}: height and width must be multiples of 16", t.height, t.width));
  t.blocks = r.integer("blocks", 0);
  const json* events = r.find("events", true);
  if (!events->is_array()) r.fail("events", "expected an array");
  r.finish();

  for (size_t i = 0; i < events->size(); ++i) {
    const std::string path = fmt::format("events[{}]", i);
    ObjectReader e((*events)[i], path, origin);
    TimelineEvent ev;
    const std::string type = e.string("type");
    const auto kind = std::find_if(std::begin(kKinds), std::end(kKinds),
                                   [&](const auto& k) { return type == k.second; });
    if (kind == std::end(kKinds)) {
      std::vector<std::string> names;
      for (const auto& k : kKinds) names.emplace_back(k.second);
      e.fail(e.field("type"),
             fmt::format("'{}' is not an event type ({})", type, fmt::join(names, ", ")));
    }
    ev.kind = kind->first;
    ev.block = e.integer("block", 0);
    ev.time_ms = e.number("time_ms", false, 0.0);
    if (ev.block > t.blocks)
      e.fail(e.field("block"),
             fmt::format("{} is past the timeline's {} blocks", ev.block, t.blocks));
    if (i > 0 && ev.block < t.events.back().block)
      e.fail(e.field("block"), fmt::format("{} is before the previous event's block {} (events "
                                           "must be in order)",
                                           ev.block, t.events.back().block));
    if (i == 0 && (ev.kind != EventKind::start || ev.block != 0))
      e.fail(e.field("type"), "the first event must be a start at block 0");
    switch (ev.kind) {
      case EventKind::start:
        ev.seed = e.unsigned_integer("seed");
        ev.mix = read_mix(e, origin);
        break;
      case EventKind::cut:
        ev.mix = read_mix(e, origin);
        break;
      case EventKind::transition: {
        ev.mix = read_mix(e, origin);
        ObjectReader tr(*e.find("transition", true), e.field("transition"), origin);
        ev.transition.blocks = tr.integer("blocks", 0);
        ev.transition.interpolation =
            read_interpolation(tr, "interpolation", Interpolation::slerp, origin);
        ev.transition.recache_at_end = tr.boolean("recache", false);
        tr.finish();
        break;
      }
      case EventKind::preset:
        ev.preset = e.string("preset");
        if (ev.preset.empty()) e.fail(e.field("preset"), "empty preset name");
        break;
      case EventKind::lora:
        ev.lora = e.string("lora");
        if (ev.lora.empty()) e.fail(e.field("lora"), "empty LoRA name");
        ev.lora_file = e.string("file");
        if (ev.lora_file.empty()) e.fail(e.field("file"), "empty LoRA file");
        ev.strength = e.number("strength", true, 0.0);
        if (!std::isfinite(ev.strength) || ev.strength < 0 || ev.strength > kMaxLoraStrength)
          e.fail(e.field("strength"),
                 fmt::format("{} is outside 0..{}", ev.strength, kMaxLoraStrength));
        break;
      case EventKind::vace:
        ev.vace.source = read_source(e, origin);
        ev.vace.mode = e.string("mode");
        if (ev.vace.mode != "conditioning" && ev.vace.mode != "reference" &&
            ev.vace.mode != "inpaint")
          e.fail(e.field("mode"),
                 fmt::format("'{}' is not a VACE mode (conditioning, reference, inpaint)",
                             ev.vace.mode));
        ev.vace.scale = read_unit(e, "scale", 0.0, kMaxVaceScale, false);
        ev.vace.reference = e.string("reference", false);
        ev.vace.mask = e.string("mask", false);
        break;
      case EventKind::v2v:
        ev.v2v.source = read_source(e, origin);
        if (ev.v2v.source.kind == InputKind::none) e.fail(e.field("source.kind"), "none");
        ev.v2v.strength = read_unit(e, "strength", 0.0, 1.0, true);
        break;
      case EventKind::vace_scale:
        ev.strength = read_unit(e, "scale", 0.0, kMaxVaceScale, false);
        break;
      case EventKind::v2v_strength:
        ev.strength = read_unit(e, "strength", 0.0, 1.0, true);
        break;
      default:
        break;
    }
    e.finish();
    if (!t.events.empty() && t.events.back().kind == EventKind::stop)
      e.fail(path, "an event after the stop event");
    t.events.push_back(std::move(ev));
  }
  if (t.events.empty()) r.fail("events", "empty: a timeline starts with a start event");
  return t;
}

namespace {

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open {} '{}'", what, path.string()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const std::filesystem::path& path, const json& content, const char* what) {
  replace_file(path, what, [&](std::ostream& out) { out << content.dump(2) << '\n'; });
}

}  // namespace

Timeline load_timeline(const std::filesystem::path& path) {
  return parse_timeline(read_file(path, "timeline"), path.string());
}

void save_timeline(const std::filesystem::path& path, const Timeline& timeline) {
  write_file(path, to_json(timeline), "timeline");
}

json to_json(const PromptSet& set) {
  return json{{"version", kPromptSetVersion},
              {"blend", to_string(set.blend)},
              {"prompts", mix_json(PromptMix{set.prompts, set.blend})}};
}

PromptSet parse_prompt_set(std::string_view text, const std::string& origin) {
  const json root = parse_document(text, origin);
  ObjectReader r(root, "", origin);
  read_version(r, kPromptSetVersion);
  PromptSet set;
  set.blend = read_interpolation(r, "blend", Interpolation::linear, origin);
  const json* prompts = r.find("prompts", true);
  if (!prompts->is_array() || prompts->empty() || prompts->size() > kMaxPromptSetSize)
    r.fail("prompts",
           fmt::format("expected an array of 1 to {} {{text, weight}}", kMaxPromptSetSize));
  for (size_t i = 0; i < prompts->size(); ++i) {
    ObjectReader p((*prompts)[i], fmt::format("prompts[{}]", i), origin);
    WeightedPrompt w;
    w.text = p.string("text");
    w.weight = p.number("weight", false, 1.0);
    if (!std::isfinite(w.weight) || w.weight < 0)
      p.fail(p.field("weight"), fmt::format("{} must be finite and >= 0", w.weight));
    if (std::all_of(w.text.begin(), w.text.end(), [](unsigned char c) { return std::isspace(c); }))
      p.fail(p.field("text"), "the prompt is empty");
    p.finish();
    set.prompts.push_back(std::move(w));
  }
  r.finish();
  return set;
}

PromptSet load_prompt_set(const std::filesystem::path& path) {
  return parse_prompt_set(read_file(path, "prompt set"), path.string());
}

void save_prompt_set(const std::filesystem::path& path, const PromptSet& set) {
  write_file(path, to_json(set), "prompt set");
}

void remember_prompt(std::vector<std::string>& recent, const std::string& prompt, size_t limit) {
  std::erase(recent, prompt);
  recent.insert(recent.begin(), prompt);
  if (recent.size() > limit) recent.resize(limit);
}

void check_presets(const Timeline& timeline, const PresetLookup& lookup,
                   const std::string& origin) {
  auto check = [&](const std::string& name, const std::string& where) {
    try {
      lookup(name);
    } catch (const Error& e) {
      throw ConfigError(
          fmt::format("{}: {}: preset '{}' cannot be used: {}", origin, where, name, e.what()));
    }
  };
  check(timeline.preset, "preset");
  for (size_t i = 0; i < timeline.events.size(); ++i)
    if (timeline.events[i].kind == EventKind::preset)
      check(timeline.events[i].preset, fmt::format("events[{}].preset", i));
}

}  // namespace longlive
