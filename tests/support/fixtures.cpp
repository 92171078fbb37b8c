#include "fixtures.h"

#include <gtest/gtest.h>

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
}  // namespace

bool fixture_has(const std::string& component) {
  const auto config = folder_config();
  if (config.is_null() || !config.contains("components")) return true;
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
