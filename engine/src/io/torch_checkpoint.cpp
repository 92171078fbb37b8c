#include "io/torch_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/torch_zip_check.h"
#include "longlive/error.h"

namespace longlive::io {
namespace {

// Nested dicts deeper than this are not a state dict (and would only grow the stack).
constexpr int kMaxDictDepth = 32;

void collect(const c10::IValue& value, const std::string& prefix, WeightStore& store,
             const std::string& origin, int depth = 0) {
  if (depth > kMaxDictDepth)
    throw FormatError(fmt::format("{}: dicts nested deeper than {} levels at '{}'", origin,
                                  kMaxDictDepth, prefix));
  if (value.isTensor()) {
    store.add(prefix, value.toTensor(), origin);
  } else if (value.isGenericDict()) {
    for (const auto& item : value.toGenericDict()) {
      if (!item.key().isString()) continue;  // non-string keys carry no weights we use
      const std::string key = item.key().toStringRef();
      collect(item.value(), prefix.empty() ? key : prefix + "." + key, store, origin, depth + 1);
    }
  }
  // Other values (ints, strings, configs) are not weights and are skipped.
}

}  // namespace

WeightStore load_torch_checkpoint(const std::filesystem::path& path, std::string_view dict_key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open checkpoint '{}'", path.string()));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  return read_torch_checkpoint(bytes, path.string(), dict_key);
}

WeightStore read_torch_checkpoint(const std::vector<char>& bytes, const std::string& origin,
                                  std::string_view dict_key) {
  // Sizes, opcodes and globals first: LibTorch's reader trusts them (see torch_zip_check.h).
  check_torch_zip(bytes.data(), bytes.size(), origin);
  c10::IValue root;
  try {
    root = torch::jit::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw FormatError(fmt::format("{}: not a readable PyTorch checkpoint ({})", origin,
                                  e.what_without_backtrace()));
  } catch (const std::exception& e) {
    // LibTorch's zip and pickle readers also throw plain std:: exceptions on malformed input.
    throw FormatError(fmt::format("{}: not a readable PyTorch checkpoint ({})", origin, e.what()));
  }
  WeightStore store;
  if (!dict_key.empty()) {
    if (!root.isGenericDict())
      throw FormatError(
          fmt::format("{}: top level is not a dict, cannot select '{}'", origin, dict_key));
    auto dict = root.toGenericDict();
    auto it = dict.find(c10::IValue(std::string(dict_key)));
    if (it == dict.end())
      throw WeightError(fmt::format("{}: has no top-level entry '{}'", origin, dict_key));
    collect(it->value(), "", store, origin);
  } else {
    collect(root, "", store, origin);
  }
  return store;
}

}  // namespace longlive::io
