#pragma once
// Named tensors from checkpoint files (safetensors, sharded safetensors, PyTorch .pt/.pth zip
// pickles), looked up by their original state_dict names with shape/dtype checks.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace longlive {

class WeightStore {
 public:
  WeightStore() = default;

  // Opens one checkpoint: *.safetensors, *.safetensors.index.json (shards), *.pt/*.pth/*.bin.
  // For a pickle holding nested dicts, `dict_key` selects one entry (e.g. "generator"); nested
  // dict names are otherwise joined with '.'.
  static WeightStore open(const std::filesystem::path& path, std::string_view dict_key = {});

  // Adds every tensor of another store; a name present twice is an error naming both files.
  void merge(const WeightStore& other);
  // Adds one tensor (tests, generated weights).
  void add(const std::string& name, const at::Tensor& tensor,
           const std::string& source = "<memory>");

  void add_metadata(const std::map<std::string, std::string>& metadata);

  // Returns a store whose names have `prefix` removed (names without it are dropped),
  // e.g. strip_prefix("model.") for LongLive's generator dict.
  WeightStore strip_prefix(std::string_view prefix) const;

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  size_t size() const { return tensors_.size(); }
  std::vector<std::string> names() const;  // sorted

  // The tensor (zero-copy where the format allows); WeightError naming the files if missing.
  const at::Tensor& get(const std::string& name) const;
  // Like get(), and checks the shape (and dtype unless Undefined). The error names the file,
  // the tensor, the expected and the actual shape/dtype.
  const at::Tensor& require(const std::string& name, at::IntArrayRef shape,
                            at::ScalarType dtype = at::ScalarType::Undefined) const;
  const std::string& source_of(const std::string& name) const;

  // `__metadata__` of safetensors files (string -> string), merged over all files.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The files this store was read from, for messages.
  std::string describe_sources() const;

 private:
  struct Entry {
    at::Tensor tensor;
    std::string source;
  };
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> sources_;
};

}  // namespace longlive
