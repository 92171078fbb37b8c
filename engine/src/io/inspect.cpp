#include "longlive/weights.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

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
  nlohmann::json out = {{"file", file},
                        {"tensors", tensors},
                        {"count", tensors.size()},
                        {"parameters", parameters},
                        {"bytes", bytes}};
  // VACE weights (a Wan2_1-VACE_module file, or the vace_* part of a Wan2.1-VACE model).
  for (const auto& name : store.names()) {
    const std::string patch = "vace_patch_embedding.weight";
    if (name.size() < patch.size() || name.compare(name.size() - patch.size(), patch.size(), patch))
      continue;
    const std::string prefix = name.substr(0, name.size() - patch.size());
    int64_t blocks = 0;
    while (store.contains(fmt::format("{}vace_blocks.{}.modulation", prefix, blocks))) ++blocks;
    int64_t vace_parameters = 0;
    for (const auto& n : store.names())
      if (n.find("vace_") != std::string::npos) vace_parameters += store.get(n).numel();
    const at::Tensor& w = store.get(name);
    nlohmann::json vace = {{"blocks", blocks},
                           {"context_channels", w.dim() == 5 ? w.size(1) : 0},
                           {"dim", w.size(0)},
                           {"parameters", vace_parameters},
                           {"base_dit_included", store.contains(prefix + "blocks.0.modulation")}};
    if (const auto it = store.metadata().find("vace_layers"); it != store.metadata().end())
      vace["layers"] = nlohmann::json::parse(it->second, nullptr, false);
    out["vace"] = vace;
    break;
  }
  return out;
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
  if (d.contains("vace")) {
    const auto& v = d["vace"];
    const int64_t blocks = v["blocks"].get<int64_t>();
    out += fmt::format(
        "VACE: {} blocks (dim {}), context {} channels, {} parameters{}; hints feed {}\n", blocks,
        v["dim"].get<int64_t>(), v["context_channels"].get<int64_t>(),
        v["parameters"].get<int64_t>(),
        v["base_dit_included"].get<bool>() ? ", with a base DiT" : "",
        v.contains("layers") ? fmt::format("DiT layers {}", v["layers"].dump())
                             : fmt::format("every L/{}-th layer of an L-layer DiT (1.3B: {} of 30)",
                                           blocks, blocks == 15 ? "0, 2, ..., 28" : "see docs"));
  }
  return out;
}

}  // namespace longlive::io
