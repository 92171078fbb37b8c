// longlive inspect FILE... : tensors of checkpoint files.
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "longlive/weights.h"

namespace longlive::cli {
namespace {

const Registrar kInspect("inspect", [](CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "inspect", "List the tensors of checkpoint files (name, dtype, shape, bytes)");
  struct Args {
    std::vector<std::string> files;
    std::string key;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("files", args->files, "safetensors, *.index.json or .pt/.pth files")->required();
  cmd->add_option("--key", args->key,
                  "For .pt files: the top-level dict entry to read (e.g. generator)");
  cmd->add_flag("--json", args->json, "Print JSON instead of a table");
  return [args]() {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& file : args->files) {
      const auto description = io::describe_weights(WeightStore::open(file, args->key), file);
      if (args->json) {
        all.push_back(description);
      } else {
        std::cout << io::format_weights_table(description) << "\n";
      }
    }
    if (args->json) std::cout << all.dump(2) << "\n";
    return 0;
  };
});

}  // namespace
}  // namespace longlive::cli
