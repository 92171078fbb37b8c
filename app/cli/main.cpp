#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include <ATen/Context.h>
#include <fmt/format.h>

#include "command.h"
#include "longlive/engine.h"
#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

std::string default_presets_dir() {
  if (const char* env = std::getenv("LONGLIVE_PRESETS"); env && *env) return env;
  // Installed (the .deb): <prefix>/bin/longlive next to <prefix>/share/longlive-studio/presets.
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path().parent_path() / "share/longlive-studio/presets";
    if (std::filesystem::is_directory(installed, ec)) return installed.string();
  }
  return std::string(LONGLIVE_SOURCE_DIR) + "/presets";
}

c10::Device pick_device(const std::string& name) {
  if (name == "cpu") return c10::kCPU;
  if (name == "cuda" || name == "auto") {
    if (at::hasCUDA()) return c10::Device(c10::kCUDA, 0);
    if (name == "cuda") throw ConfigError("--device cuda: no CUDA device is available");
    return c10::kCPU;
  }
  throw ConfigError(fmt::format("--device '{}': expected auto, cpu or cuda", name));
}

}  // namespace longlive::cli

int main(int argc, char** argv) {
  using namespace longlive;
  keep_large_host_buffers_out_of_the_heap();  // long runs (soak, render) keep RSS flat
  CLI::App app{"LongLive Studio command line: generate, benchmark, inspect checkpoints"};
  app.require_subcommand(1);  // --version answers without one
  bool verbose = false;
  std::string log_level = "info";
  app.add_flag("-v,--verbose", verbose, "Log debug messages");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off");
  app.set_version_flag("--version", std::string("longlive ") + LONGLIVE_VERSION);

  auto& commands = cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<std::string, std::function<int()>> actions;
  for (auto& command : commands) actions[command.name] = command.setup(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    log::init(verbose ? log::Level::debug : log::parse_level(log_level));
    for (auto* sub : app.get_subcommands()) return actions.at(sub->get_name())();
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
