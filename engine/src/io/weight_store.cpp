#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"

#include "longlive/error.h"
#include "longlive/weights.h"

namespace longlive {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_string(at::IntArrayRef shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

WeightStore open_safetensors(const std::filesystem::path& path) {
  auto file = io::SafetensorsFile::open(path);
  WeightStore store;
  for (const auto& entry : file.header().entries)
    store.add(entry.name, file.tensor(entry), path.string());
  store.add_metadata(file.header().metadata);
  return store;
}

WeightStore open_sharded(const std::filesystem::path& index_path) {
  std::ifstream in(index_path);
  if (!in) throw IoError(fmt::format("cannot open shard index '{}'", index_path.string()));
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(fmt::format("{}: not valid JSON: {}", index_path.string(), e.what()));
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object())
    throw FormatError(fmt::format("{}: missing object field 'weight_map'", index_path.string()));
  std::set<std::string> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw FormatError(
          fmt::format("{}: weight_map['{}'] is not a file name", index_path.string(), it.key()));
    shards.insert(it.value().get<std::string>());
  }
  WeightStore store;
  for (const auto& shard : shards) store.merge(open_safetensors(index_path.parent_path() / shard));
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!store.contains(it.key()))
      throw WeightError(
          fmt::format("{}: tensor '{}' is listed in the index but missing from shard '{}'",
                      index_path.string(), it.key(), it.value().get<std::string>()));
  }
  return store;
}

}  // namespace

WeightStore WeightStore::open(const std::filesystem::path& path, std::string_view dict_key) {
  if (!std::filesystem::exists(path))
    throw IoError(fmt::format("checkpoint '{}' does not exist", path.string()));
  const std::string name = path.filename().string();
  WeightStore store;
  if (ends_with(name, ".index.json")) {
    store = open_sharded(path);
  } else if (ends_with(name, ".safetensors")) {
    store = open_safetensors(path);
  } else {
    store = io::load_torch_checkpoint(path, dict_key);
  }
  store.sources_ = {path.string()};
  return store;
}

void WeightStore::merge(const WeightStore& other) {
  for (const auto& [name, entry] : other.tensors_) {
    auto [it, inserted] = tensors_.emplace(name, entry);
    if (!inserted) {
      throw WeightError(fmt::format("tensor '{}' appears in both '{}' and '{}'", name,
                                    it->second.source, entry.source));
    }
  }
  for (const auto& [k, v] : other.metadata_) metadata_[k] = v;
  sources_.insert(sources_.end(), other.sources_.begin(), other.sources_.end());
}

void WeightStore::add(const std::string& name, const at::Tensor& tensor,
                      const std::string& source) {
  tensors_[name] = Entry{tensor, source};
  if (std::find(sources_.begin(), sources_.end(), source) == sources_.end())
    sources_.push_back(source);
}

void WeightStore::add_metadata(const std::map<std::string, std::string>& metadata) {
  for (const auto& [k, v] : metadata) metadata_[k] = v;
}

WeightStore WeightStore::strip_prefix(std::string_view prefix) const {
  WeightStore out;
  out.metadata_ = metadata_;
  out.sources_ = sources_;
  for (const auto& [name, entry] : tensors_) {
    if (name.rfind(prefix, 0) == 0) out.tensors_.emplace(name.substr(prefix.size()), entry);
  }
  return out;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) out.push_back(name);
  return out;
}

const at::Tensor& WeightStore::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw WeightError(fmt::format("tensor '{}' not found in {}", name, describe_sources()));
  }
  return it->second.tensor;
}

const at::Tensor& WeightStore::require(const std::string& name, at::IntArrayRef shape,
                                       at::ScalarType dtype) const {
  const at::Tensor& t = get(name);
  if (t.sizes() != shape) {
    throw WeightError(fmt::format("{}: tensor '{}' has shape {}, expected {}", source_of(name),
                                  name, shape_string(t.sizes()), shape_string(shape)));
  }
  if (dtype != at::ScalarType::Undefined && t.scalar_type() != dtype) {
    throw WeightError(fmt::format("{}: tensor '{}' has dtype {}, expected {}", source_of(name),
                                  name, c10::toString(t.scalar_type()), c10::toString(dtype)));
  }
  return t;
}

const std::string& WeightStore::source_of(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw WeightError(fmt::format("tensor '{}' not found in {}", name, describe_sources()));
  return it->second.source;
}

std::string WeightStore::describe_sources() const {
  if (sources_.empty()) return "an empty weight store";
  return fmt::format("'{}'", fmt::join(sources_, "', '"));
}

}  // namespace longlive
