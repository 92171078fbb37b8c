#include "io/safetensors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/mapped_file.h"
#include "longlive/error.h"

namespace longlive::io {

at::ScalarType safetensors_dtype(const std::string& name, const std::string& origin,
                                 const std::string& tensor) {
  static const std::map<std::string, at::ScalarType> kTypes = {{"F64", at::kDouble},
                                                               {"F32", at::kFloat},
                                                               {"F16", at::kHalf},
                                                               {"BF16", at::kBFloat16},
                                                               {"I64", at::kLong},
                                                               {"I32", at::kInt},
                                                               {"I16", at::kShort},
                                                               {"I8", at::kChar},
                                                               {"U8", at::kByte},
                                                               {"BOOL", at::kBool},
                                                               {"F8_E4M3", at::kFloat8_e4m3fn},
                                                               {"F8_E5M2", at::kFloat8_e5m2}};
  auto it = kTypes.find(name);
  if (it == kTypes.end()) {
    throw FormatError(fmt::format(
        "{}: tensor '{}' has unknown dtype '{}' (expected one of F64, F32, F16, BF16, I64, I32, "
        "I16, I8, U8, BOOL, F8_E4M3, F8_E5M2)",
        origin, tensor, name));
  }
  return it->second;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size,
                                           const std::string& origin) {
  if (size < 8) {
    throw FormatError(
        fmt::format("{}: file is {} bytes, too short for a safetensors header "
                    "(truncated?)",
                    origin, size));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8) {
    throw FormatError(fmt::format(
        "{}: header length {} exceeds the file's remaining {} bytes (truncated or not a "
        "safetensors file)",
        origin, header_len, size - 8));
  }
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(fmt::format("{}: header is not valid JSON: {}", origin, e.what()));
  }
  if (!json.is_object()) throw FormatError(fmt::format("{}: header is not a JSON object", origin));

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = size - header.data_offset;
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    const auto& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object())
        throw FormatError(fmt::format("{}: __metadata__ is not an object", origin));
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string())
          throw FormatError(
              fmt::format("{}: __metadata__ value '{}' is not a string", origin, m.key()));
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets") || !value["dtype"].is_string() ||
        !value["shape"].is_array() || !value["data_offsets"].is_array() ||
        value["data_offsets"].size() != 2) {
      throw FormatError(
          fmt::format("{}: tensor '{}' needs {{\"dtype\": str, \"shape\": [int], \"data_offsets\": "
                      "[begin, end]}}",
                      origin, name));
    }
    SafetensorsEntry entry;
    entry.name = name;
    entry.dtype = value["dtype"].get<std::string>();
    entry.scalar_type = safetensors_dtype(entry.dtype, origin, name);
    uint64_t numel = 1;
    for (const auto& d : value["shape"]) {
      if (!d.is_number_unsigned())
        throw FormatError(
            fmt::format("{}: tensor '{}' has a non-integer or negative dimension", origin, name));
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t{1} << 62) / dim)
        throw FormatError(fmt::format("{}: tensor '{}' shape overflows", origin, name));
      numel *= dim;
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw FormatError(fmt::format("{}: tensor '{}' has non-integer data_offsets", origin, name));
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size) {
      throw FormatError(fmt::format(
          "{}: tensor '{}' data_offsets [{}, {}) lie outside the {} data bytes (truncated file?)",
          origin, name, entry.begin, entry.end, data_size));
    }
    const uint64_t expected = numel * at::elementSize(entry.scalar_type);
    if (entry.end - entry.begin != expected) {
      throw FormatError(fmt::format("{}: tensor '{}' spans {} bytes but shape [{}] of {} needs {}",
                                    origin, name, entry.end - entry.begin,
                                    fmt::join(entry.shape, ", "), entry.dtype, expected));
    }
    header.entries.push_back(std::move(entry));
  }
  // Byte ranges must not overlap (empty tensors occupy nothing).
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : header.entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) {
    return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1]->end > sorted[i]->begin && sorted[i]->end > sorted[i]->begin) {
      throw FormatError(fmt::format("{}: tensors '{}' and '{}' overlap in the data section", origin,
                                    sorted[i - 1]->name, sorted[i]->name));
    }
  }
  return header;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = std::make_shared<MappedFile>(path);
  file.header_ =
      parse_safetensors_header(file.mapping_->data(), file.mapping_->size(), path.string());
  return file;
}

at::Tensor SafetensorsFile::tensor(const SafetensorsEntry& entry) const {
  const uint8_t* base = mapping_->data() + header_.data_offset + entry.begin;
  auto keep_alive = mapping_;
  const auto options = at::TensorOptions().dtype(entry.scalar_type).device(at::kCPU);
  if (entry.end == entry.begin) return at::empty(entry.shape, options);
  // A bool holding anything but 0 or 1 is undefined behaviour for every kernel that reads it.
  if (entry.scalar_type == at::kBool) {
    const uint8_t* bad =
        std::find_if(base, base + (entry.end - entry.begin), [](uint8_t v) { return v > 1; });
    if (bad != base + (entry.end - entry.begin))
      throw FormatError(
          fmt::format("{}: tensor '{}' is BOOL but its byte {} holds {} (booleans are 0 or 1)",
                      path_.string(), entry.name, bad - base, *bad));
  }
  // Unaligned data cannot be viewed safely as wider types: copy those (rare; writers align).
  if (reinterpret_cast<uintptr_t>(base) % at::elementSize(entry.scalar_type) != 0) {
    auto out = at::empty(entry.shape, options);
    std::memcpy(out.data_ptr(), base, entry.end - entry.begin);
    return out;
  }
  return at::from_blob(
      const_cast<uint8_t*>(base), entry.shape, [keep_alive](void*) mutable { keep_alive.reset(); },
      options);
}

}  // namespace longlive::io
