#pragma once
// Where the golden fixtures live: $LONGLIVE_FIXTURES, else ../shared/fixtures beside the repo.
#include <filesystem>
#include <string>

namespace longlive::test {

std::filesystem::path fixtures_dir();
// Full path of one fixture file; the test is skipped (not failed) only when the whole fixture
// folder is absent, and fails when the folder exists but the file is missing.
std::filesystem::path fixture(const std::string& name);
// A fresh temporary directory for one test, removed at process exit.
std::filesystem::path temp_dir(const std::string& tag);

}  // namespace longlive::test
