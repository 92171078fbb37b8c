#pragma once
// Where the golden fixtures live: $LONGLIVE_FIXTURES, else ../shared/fixtures beside the repo.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace longlive::test {

std::filesystem::path fixtures_dir();
// Full path of one fixture file; the test is skipped (not failed) only when the whole fixture
// folder is absent, and fails when the folder exists but the file is missing.
std::filesystem::path fixture(const std::string& name);
// Whether the fixture folder holds one component's files ("dit", "lora", "umt5", "wanvae",
// "taehv", "vace"): a folder made by tests/reference/make_fixtures.py lists them in its
// config.json ("components"); a folder without one (the public set) holds a component unless it
// has other components' files and none of this one's (a set made without VACE, say).
bool fixture_has(const std::string& component);
// Each component's files (the public README's names), by component.
const std::map<std::string, std::vector<std::string>>& fixture_component_files();
// The TAEHV decoder weights for this folder: its own part files, or, for a generated folder that
// records `taehv.write_weights = false`, the public parts (the same seed and fixed architecture
// give identical tensors). Empty when neither exists.
std::filesystem::path taehv_weights_dir();
// A fresh temporary directory for one test, removed at process exit.
std::filesystem::path temp_dir(const std::string& tag);

}  // namespace longlive::test

// Skips the test when the fixture folder does not hold `component` (see fixture_has).
#define LONGLIVE_REQUIRE_FIXTURE(component)                                   \
  do {                                                                        \
    if (!::longlive::test::fixture_has(component))                            \
      GTEST_SKIP() << "fixture folder " << ::longlive::test::fixtures_dir()   \
                   << " does not hold the '" << (component) << "' component"; \
  } while (false)
