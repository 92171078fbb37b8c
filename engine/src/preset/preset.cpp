#include "longlive/preset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {
namespace {

using nlohmann::json;

template <typename E, size_t N>
struct EnumNames {
  std::array<std::pair<E, const char*>, N> items;
  std::string name(E v) const {
    for (const auto& [e, n] : items)
      if (e == v) return n;
    return "?";
  }
  std::string allowed() const {
    std::vector<std::string> names;
    for (const auto& [e, n] : items) names.emplace_back(n);
    return fmt::format("{}", fmt::join(names, ", "));
  }
  std::optional<E> parse(const std::string& s) const {
    for (const auto& [e, n] : items)
      if (s == n) return e;
    return std::nullopt;
  }
};

const EnumNames<ComputeDType, 4> kComputeDType{{{{ComputeDType::bf16, "bf16"},
                                                 {ComputeDType::fp16, "fp16"},
                                                 {ComputeDType::fp32, "fp32"},
                                                 {ComputeDType::fp8, "fp8"}}}};
const EnumNames<KvDType, 4> kKvDType{{{{KvDType::bf16, "bf16"},
                                       {KvDType::fp16, "fp16"},
                                       {KvDType::fp32, "fp32"},
                                       {KvDType::int8, "int8"}}}};
const EnumNames<DecoderKind, 2> kDecoder{
    {{{DecoderKind::taehv, "taehv"}, {DecoderKind::wan, "wan"}}}};
const EnumNames<PlacementDevice, 2> kPlacement{
    {{{PlacementDevice::gpu, "gpu"}, {PlacementDevice::cpu, "cpu"}}}};
const EnumNames<InputEncoderKind, 2> kInputEncoder{
    {{{InputEncoderKind::wan, "wan"}, {InputEncoderKind::taehv, "taehv"}}}};

// Reads fields of one JSON object, remembering which keys were consumed.
class FieldReader {
 public:
  FieldReader(const json& object, std::string origin)
      : object_(object), origin_(std::move(origin)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw ConfigError(fmt::format("{}: field '{}': {}", origin_, field, what));
  }

  const json* find(const std::string& field) {
    seen_.insert(field);
    auto it = object_.find(field);
    return it == object_.end() ? nullptr : &*it;
  }

  void read(const std::string& field, std::string& out) {
    if (const json* v = find(field)) {
      if (!v->is_string()) fail(field, fmt::format("expected a string, got {}", v->dump()));
      out = v->get<std::string>();
    }
  }
  void read(const std::string& field, bool& out) {
    if (const json* v = find(field)) {
      if (!v->is_boolean()) fail(field, fmt::format("expected true or false, got {}", v->dump()));
      out = v->get<bool>();
    }
  }
  void read(const std::string& field, double& out, double lo, double hi) {
    if (const json* v = find(field)) {
      if (!v->is_number()) fail(field, fmt::format("expected a number, got {}", v->dump()));
      out = v->get<double>();
      if (!(out >= lo && out <= hi))
        fail(field, fmt::format("{} is outside [{}, {}]", out, lo, hi));
    }
  }
  void read(const std::string& field, int& out, int lo, int hi) {
    if (const json* v = find(field)) {
      if (!v->is_number_integer())
        fail(field, fmt::format("expected an integer, got {}", v->dump()));
      const auto value = v->get<int64_t>();
      if (value < lo || value > hi)
        fail(field, fmt::format("{} is outside [{}, {}]", value, lo, hi));
      out = static_cast<int>(value);
    }
  }
  template <typename E, size_t N>
  void read(const std::string& field, E& out, const EnumNames<E, N>& names) {
    if (const json* v = find(field)) {
      if (!v->is_string())
        fail(field, fmt::format("expected one of {}, got {}", names.allowed(), v->dump()));
      auto parsed = names.parse(v->get<std::string>());
      if (!parsed)
        fail(field, fmt::format("'{}' is not one of {}", v->get<std::string>(), names.allowed()));
      out = *parsed;
    }
  }

  void reject_unknown() const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (!seen_.count(it.key())) {
        throw ConfigError(fmt::format("{}: unknown field '{}' (known fields: {})", origin_,
                                      it.key(), fmt::join(seen_, ", ")));
      }
    }
  }

 private:
  const json& object_;
  std::string origin_;
  std::set<std::string> seen_;
};

}  // namespace

std::string to_string(ComputeDType v) { return kComputeDType.name(v); }
std::string to_string(KvDType v) { return kKvDType.name(v); }
std::string to_string(DecoderKind v) { return kDecoder.name(v); }
std::string to_string(PlacementDevice v) { return kPlacement.name(v); }
std::string to_string(InputEncoderKind v) { return kInputEncoder.name(v); }

Preset parse_preset(std::string_view json_text, const std::string& origin) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ConfigError(fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
  if (!root.is_object())
    throw ConfigError(fmt::format("{}: a preset must be a JSON object", origin));

  Preset p;
  FieldReader r(root, origin);
  r.read("name", p.name);
  r.read("description", p.description);
  if (const json* steps = r.find("denoising_steps")) {
    if (!steps->is_array() || steps->empty())
      r.fail("denoising_steps", "expected a non-empty list of timesteps in (0, 1000]");
    p.denoising_steps.clear();
    for (const auto& s : *steps) {
      if (!s.is_number()) r.fail("denoising_steps", fmt::format("{} is not a number", s.dump()));
      const double v = s.get<double>();
      if (!(v > 0 && v <= 1000))
        r.fail("denoising_steps", fmt::format("{} is outside (0, 1000]", v));
      if (!p.denoising_steps.empty() && v >= p.denoising_steps.back())
        r.fail("denoising_steps", fmt::format("must be strictly decreasing, but {} follows {}", v,
                                              p.denoising_steps.back()));
      p.denoising_steps.push_back(v);
    }
  }
  r.read("warp_denoising_step", p.warp_denoising_step);
  r.read("timestep_shift", p.timestep_shift, 0.01, 100.0);
  r.read("local_attn_frames", p.local_attn_frames, 1, 1024);
  r.read("sink_frames", p.sink_frames, 0, 1024);
  r.read("frames_per_block", p.frames_per_block, 1, 64);
  r.read("global_sink", p.global_sink);
  r.read("dtype", p.dtype, kComputeDType);
  r.read("kv_dtype", p.kv_dtype, kKvDType);
  r.read("cuda_graphs", p.cuda_graphs);
  r.read("fused_kernels", p.fused_kernels);
  // Fields of older presets that described what every session does (decode on its own stream,
  // cached prompt embeddings) and were never read: accepted, ignored, with a warning.
  for (const char* retired : {"async_decode", "prompt_cache"})
    if (r.find(retired))
      log::warn("{}: field '{}' is no longer read (every session does it): remove it", origin,
                retired);
  r.read("memory_pool", p.memory_pool);
  r.read("decoder", p.decoder, kDecoder);
  r.read("height", p.height, 16, 2048);
  r.read("width", p.width, 16, 2048);
  r.read("text_encoder_device", p.text_encoder_device, kPlacement);
  r.read("quality_preserving", p.quality_preserving);
  r.read("vace_hint_reuse", p.vace_hint_reuse);
  r.read("input_encoder", p.input_encoder, kInputEncoder);
  r.reject_unknown();

  if (p.height % 16 != 0) r.fail("height", fmt::format("{} is not a multiple of 16", p.height));
  if (p.width % 16 != 0) r.fail("width", fmt::format("{} is not a multiple of 16", p.width));
  if (p.local_attn_frames < p.sink_frames + p.frames_per_block) {
    r.fail("local_attn_frames",
           fmt::format("window of {} frames must hold the sink ({}) plus one block ({})",
                       p.local_attn_frames, p.sink_frames, p.frames_per_block));
  }
  return p;
}

Preset load_preset(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw IoError(fmt::format("cannot open preset file '{}'", path.string()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  Preset p = parse_preset(buffer.str(), path.string());
  if (p.name.empty()) p.name = path.stem().string();
  return p;
}

std::vector<Preset> load_presets(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir))
    throw IoError(fmt::format("preset folder '{}' does not exist", dir.string()));
  std::vector<Preset> presets;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") presets.push_back(load_preset(entry.path()));
  }
  static const std::vector<std::string> kOrder = {"quality", "balanced",  "speed",
                                                  "turbo",   "turbo_fp8", "ultra"};
  auto rank = [](const std::string& name) {
    auto it = std::find(kOrder.begin(), kOrder.end(), name);
    if (it != kOrder.end()) return static_cast<int>(it - kOrder.begin());
    return name == "low_memory" ? 1000 : 500;
  };
  std::sort(presets.begin(), presets.end(), [&](const Preset& a, const Preset& b) {
    return std::make_pair(rank(a.name), a.name) < std::make_pair(rank(b.name), b.name);
  });
  return presets;
}

Preset find_preset(const std::filesystem::path& dir, const std::string& name) {
  std::vector<std::string> names;
  for (auto& p : load_presets(dir)) {
    if (p.name == name) return p;
    names.push_back(p.name);
  }
  throw ConfigError(fmt::format("no preset '{}' in '{}' (available: {})", name, dir.string(),
                                fmt::join(names, ", ")));
}

nlohmann::json to_json(const Preset& p) {
  return json{{"name", p.name},
              {"description", p.description},
              {"denoising_steps", p.denoising_steps},
              {"warp_denoising_step", p.warp_denoising_step},
              {"timestep_shift", p.timestep_shift},
              {"local_attn_frames", p.local_attn_frames},
              {"sink_frames", p.sink_frames},
              {"frames_per_block", p.frames_per_block},
              {"global_sink", p.global_sink},
              {"dtype", to_string(p.dtype)},
              {"kv_dtype", to_string(p.kv_dtype)},
              {"cuda_graphs", p.cuda_graphs},
              {"fused_kernels", p.fused_kernels},
              {"memory_pool", p.memory_pool},
              {"decoder", to_string(p.decoder)},
              {"height", p.height},
              {"width", p.width},
              {"text_encoder_device", to_string(p.text_encoder_device)},
              {"quality_preserving", p.quality_preserving},
              {"vace_hint_reuse", p.vace_hint_reuse},
              {"input_encoder", to_string(p.input_encoder)}};
}

}  // namespace longlive
