#include "io/torch_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "longlive/error.h"

namespace longlive::io {
namespace {

void collect(const c10::IValue& value, const std::string& prefix, WeightStore& store,
             const std::string& origin) {
  if (value.isTensor()) {
    store.add(prefix, value.toTensor(), origin);
  } else if (value.isGenericDict()) {
    for (const auto& item : value.toGenericDict()) {
      if (!item.key().isString()) continue;  // non-string keys carry no weights we use
      const std::string key = item.key().toStringRef();
      collect(item.value(), prefix.empty() ? key : prefix + "." + key, store, origin);
    }
  }
  // Other values (ints, strings, configs) are not weights and are skipped.
}

}  // namespace

WeightStore load_torch_checkpoint(const std::filesystem::path& path, std::string_view dict_key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open checkpoint '{}'", path.string()));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue root;
  try {
    root = torch::jit::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw FormatError(fmt::format("{}: not a readable PyTorch checkpoint ({})", path.string(),
                                  e.what_without_backtrace()));
  }
  WeightStore store;
  if (!dict_key.empty()) {
    if (!root.isGenericDict())
      throw FormatError(
          fmt::format("{}: top level is not a dict, cannot select '{}'", path.string(), dict_key));
    auto dict = root.toGenericDict();
    auto it = dict.find(c10::IValue(std::string(dict_key)));
    if (it == dict.end())
      throw WeightError(fmt::format("{}: has no top-level entry '{}'", path.string(), dict_key));
    collect(it->value(), "", store, path.string());
  } else {
    collect(root, "", store, path.string());
  }
  return store;
}

}  // namespace longlive::io
