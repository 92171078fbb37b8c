#include "fixtures.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

namespace longlive::test {

std::filesystem::path fixtures_dir() {
  if (const char* env = std::getenv("LONGLIVE_FIXTURES"); env && *env) return env;
  return std::filesystem::path(LONGLIVE_SOURCE_DIR).parent_path() / "shared" / "fixtures";
}

std::filesystem::path fixture(const std::string& name) {
  const auto dir = fixtures_dir();
  const auto path = dir / name;
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "fixture missing: " << path
                  << " (set LONGLIVE_FIXTURES to the folder holding the golden fixtures)";
  }
  return path;
}

namespace {
// The folder's config.json, or null for the public set (which has none).
nlohmann::json folder_config() {
  const auto path = fixtures_dir() / "config.json";
  if (!std::filesystem::exists(path)) return nullptr;
  std::ifstream in(path);
  return nlohmann::json::parse(in);  // a broken manifest should fail loudly, not skip tests
}

bool holds_any(const std::vector<std::string>& names) {
  const auto dir = fixtures_dir();
  return std::ranges::any_of(
      names, [&](const std::string& n) { return std::filesystem::exists(dir / n); });
}

// Without a manifest (the public set, or a set made by another harness), a component is held
// unless the folder holds other components' files and none of its own (a set made before that
// component existed, such as one without VACE). A folder with some of a component's files and not
// the others fails in fixture(), naming the file; one with no fixture file at all fails too.
bool held_without_manifest(const std::string& component) {
  const auto& files = fixture_component_files();
  const auto own = files.find(component);
  if (own == files.end() || holds_any(own->second)) return true;
  return std::ranges::none_of(files, [](const auto& entry) { return holds_any(entry.second); });
}
}  // namespace

const std::map<std::string, std::vector<std::string>>& fixture_component_files() {
  static const std::map<std::string, std::vector<std::string>> files = {
      {"dit",
       {"dit_weights.safetensors", "dit_stream.safetensors",
        "dit_stream_no_global_sink.safetensors"}},
      {"lora", {"dit_lora.safetensors", "dit_lora_io.safetensors"}},
      {"umt5", {"umt5_weights.safetensors", "umt5_io.safetensors"}},
      {"wanvae", {"wanvae_weights.safetensors", "wanvae_io.safetensors"}},
      {"taehv", {"taehv_io.safetensors"}},
      {"vace",
       {"vace_dit_weights.safetensors", "vace_module.safetensors", "vace_stream.safetensors",
        "vace_masks.safetensors"}},
  };
  return files;
}

bool fixture_has(const std::string& component) {
  const auto config = folder_config();
  if (config.is_null() || !config.contains("components")) return held_without_manifest(component);
  for (const auto& c : config.at("components"))
    if (c.get<std::string>() == component) return true;
  return false;
}

std::filesystem::path taehv_weights_dir() {
  const auto own = fixtures_dir();
  if (std::filesystem::exists(own / "taehv_decoder_weights.part0.safetensors")) return own;
  const auto config = folder_config();
  const bool shares_public_weights = !config.is_null() && config.contains("taehv") &&
                                     !config["taehv"].value("write_weights", true);
  const auto shared =
      std::filesystem::path(LONGLIVE_SOURCE_DIR).parent_path() / "shared" / "fixtures";
  if (shares_public_weights &&
      std::filesystem::exists(shared / "taehv_decoder_weights.part0.safetensors"))
    return shared;
  return {};
}

std::filesystem::path temp_dir(const std::string& tag) {
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() /
             ("longlive-test-" + tag + "-" + std::to_string(rd()));
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace longlive::test
