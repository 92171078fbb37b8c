#pragma once
// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw bytes.
// The file is memory-mapped; tensors are zero-copy views that keep the mapping alive.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace longlive::io {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as written in the header, e.g. "BF16"
  at::ScalarType scalar_type;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in header order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
};

// Parses and validates a header against the file size. `origin` names the file in errors.
// Throws FormatError describing the first problem found.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size,
                                           const std::string& origin);

// Maps the safetensors dtype name to ATen's scalar type; FormatError for unknown names.
at::ScalarType safetensors_dtype(const std::string& name, const std::string& origin,
                                 const std::string& tensor);

class MappedFile;

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const SafetensorsHeader& header() const { return header_; }
  const std::filesystem::path& path() const { return path_; }
  // Zero-copy CPU tensor viewing the mapped bytes (read-only memory: clone before writing).
  at::Tensor tensor(const SafetensorsEntry& entry) const;

 private:
  std::filesystem::path path_;
  std::shared_ptr<MappedFile> mapping_;
  SafetensorsHeader header_;
};

}  // namespace longlive::io
