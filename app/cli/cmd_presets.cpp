// longlive presets : the shipped presets and what each trades.
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "longlive/preset.h"

namespace longlive::cli {
namespace {

const Registrar kPresets("presets", [](CLI::App& root) {
  auto* cmd = root.add_subcommand("presets", "List the presets with a one-line description");
  auto dir = std::make_shared<std::string>(default_presets_dir());
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--dir", *dir, "Preset folder");
  cmd->add_flag("--json", *json, "Print the full presets as JSON");
  return [dir, json]() {
    const auto presets = load_presets(*dir);
    if (*json) {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& p : presets) all.push_back(to_json(p));
      std::cout << all.dump(2) << "\n";
      return 0;
    }
    for (const auto& p : presets) {
      std::cout << fmt::format("{:<11} {:<5} {} steps  {}{}\n", p.name, to_string(p.dtype),
                               p.denoising_steps.size(), p.description,
                               p.quality_preserving ? "" : "  [trades quality]");
    }
    return 0;
  };
});

}  // namespace
}  // namespace longlive::cli
