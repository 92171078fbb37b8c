#include "longlive/inspect.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace longlive::io {

nlohmann::json describe_weights(const WeightStore& store, const std::string& file) {
  nlohmann::json tensors = nlohmann::json::array();
  int64_t parameters = 0;
  int64_t bytes = 0;
  for (const auto& name : store.names()) {
    const at::Tensor& t = store.get(name);
    const int64_t nbytes = t.numel() * static_cast<int64_t>(t.element_size());
    tensors.push_back({{"name", name},
                       {"dtype", c10::toString(t.scalar_type())},
                       {"shape", t.sizes().vec()},
                       {"bytes", nbytes}});
    parameters += t.numel();
    bytes += nbytes;
  }
  return {{"file", file},
          {"tensors", tensors},
          {"count", tensors.size()},
          {"parameters", parameters},
          {"bytes", bytes}};
}

std::string format_weights_table(const nlohmann::json& d) {
  size_t name_width = 4;
  for (const auto& t : d["tensors"])
    name_width = std::max(name_width, t["name"].get<std::string>().size());
  std::string out = fmt::format("{}\n{:<{}}  {:<14} {:<22} {:>12}\n", d["file"].get<std::string>(),
                                "name", name_width, "dtype", "shape", "bytes");
  for (const auto& t : d["tensors"]) {
    out += fmt::format("{:<{}}  {:<14} {:<22} {:>12}\n", t["name"].get<std::string>(), name_width,
                       t["dtype"].get<std::string>(),
                       fmt::format("[{}]", fmt::join(t["shape"].get<std::vector<int64_t>>(), ", ")),
                       t["bytes"].get<int64_t>());
  }
  out += fmt::format("total: {} tensors, {} parameters, {:.2f} MiB\n", d["count"].get<size_t>(),
                     d["parameters"].get<int64_t>(), d["bytes"].get<int64_t>() / (1024.0 * 1024.0));
  return out;
}

}  // namespace longlive::io
