#include "fixtures.h"

#include <gtest/gtest.h>

#include <cstdlib>
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

std::filesystem::path temp_dir(const std::string& tag) {
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() /
             ("longlive-test-" + tag + "-" + std::to_string(rd()));
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace longlive::test
