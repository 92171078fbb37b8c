#pragma once
// Subcommand registry of the `longlive` CLI. Each cmd_*.cpp defines one static Registrar that adds
// its subcommand; main.cpp parses and runs the chosen one.
#include <c10/core/Device.h>
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace longlive::cli {

// Called once with the root app; returns the action to run when the subcommand is chosen.
using Setup = std::function<std::function<int()>(CLI::App& root)>;

struct Command {
  std::string name;
  Setup setup;
};

std::vector<Command>& registry();

struct Registrar {
  Registrar(std::string name, Setup setup) {
    registry().push_back({std::move(name), std::move(setup)});
  }
};

// Directory of the shipped presets (next to the binary when installed, else the source tree).
std::string default_presets_dir();

// The value of a --device option: auto (the first CUDA device when there is one), cpu or cuda.
// ConfigError naming the value, or saying that no CUDA device is available.
c10::Device pick_device(const std::string& name);

}  // namespace longlive::cli
