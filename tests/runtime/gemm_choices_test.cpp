// The file that keeps runtime/lt_gemm's algorithm choices between runs (runtime/gemm_choices.h).
#include "runtime/gemm_choices.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fixtures.h"
#include "longlive/log.h"

namespace longlive::lt_gemm {
namespace {

using test::temp_dir;

namespace fs = std::filesystem;

class ChoiceStoreTest : public ::testing::Test {
 protected:
  // A new folder per test (std::filesystem::remove_all is not used: the copy LibTorch exports
  // crashed here).
  void SetUp() override {
    dir_ = temp_dir("gemm-choices");
    log::set_callback([this](log::Level level, std::string_view text) {
      if (level == log::Level::warn) warnings_.emplace_back(text);
    });
  }
  void TearDown() override { log::set_callback(nullptr); }
  void write(const fs::path& file, const std::string& text) {
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
  }
  fs::path dir_;
  std::vector<std::string> warnings_;
};

TEST_F(ChoiceStoreTest, AChoiceRecordedIsFoundByTheNextStoreOfTheFile) {
  const fs::path file = dir_ / "cache" / "longlive" / "gemm-algorithms.json";
  {
    ChoiceStore store(file);
    EXPECT_FALSE(store.find("4680x8960x1536").has_value());
    EXPECT_TRUE(store.record("4680x8960x1536", 7));
    EXPECT_TRUE(store.record("4680x1536x1536", 0));
    EXPECT_EQ(store.find("4680x8960x1536"), 7);
  }
  ASSERT_TRUE(fs::exists(file)) << "its folders are created";
  const ChoiceStore again(file);
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(again.find("4680x8960x1536"), 7);
  EXPECT_EQ(again.find("4680x1536x1536"), 0);
  EXPECT_TRUE(warnings_.empty());
  // Nothing left beside it from the write.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file.parent_path())) ++entries;
  EXPECT_EQ(entries, 1u);
}

TEST_F(ChoiceStoreTest, WhatAnotherProcessRecordedMeanwhileIsKept) {
  const fs::path file = dir_ / "gemm-algorithms.json";
  ChoiceStore first(file), second(file);
  ASSERT_TRUE(first.record("a", 1));
  ASSERT_TRUE(second.record("b", 2));
  ASSERT_TRUE(first.record("a", 3));  // this store's own choice wins over the file's
  const ChoiceStore read(file);
  EXPECT_EQ(read.find("a"), 3);
  EXPECT_EQ(read.find("b"), 2);
}

TEST_F(ChoiceStoreTest, ABrokenFileIsNamedInAWarningNotUsedAndReplaced) {
  struct Case {
    std::string text, why;
  };
  for (const Case& c : {Case{"{\"a\": 1,", "not valid JSON"}, Case{"[1, 2]", "not a JSON object"},
                        Case{"{\"a\": -1}", "\"a\" is -1"}, Case{"{\"a\": \"x\"}", "\"a\" is"}}) {
    const fs::path file = dir_ / "gemm-algorithms.json";
    write(file, c.text);
    warnings_.clear();
    ChoiceStore store(file);
    EXPECT_FALSE(store.find("a").has_value()) << c.text;
    ASSERT_EQ(warnings_.size(), 1u) << c.text;
    EXPECT_NE(warnings_[0].find(file.string()), std::string::npos) << warnings_[0];
    EXPECT_NE(warnings_[0].find(c.why), std::string::npos) << warnings_[0];
    EXPECT_TRUE(store.record("b", 4)) << c.text;
    EXPECT_EQ(ChoiceStore(file).find("b"), 4) << c.text;
  }
}

// Its folder cannot be made (a file is in the way: root too gets the error), nor can a file be
// written into a read-only folder (for users other than root).
TEST_F(ChoiceStoreTest, AFileItCannotWriteCostsOneWarningAndTheChoiceStillHolds) {
  write(dir_ / "blocker", "a file, not a folder");
  const fs::path file = dir_ / "blocker" / "sub" / "gemm-algorithms.json";
  ChoiceStore store(file);
  EXPECT_FALSE(store.record("a", 1));
  EXPECT_FALSE(store.record("b", 2));
  EXPECT_EQ(store.find("a"), 1);
  EXPECT_EQ(store.find("b"), 2);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find(file.string()), std::string::npos) << warnings_[0];
  EXPECT_NE(warnings_[0].find("folder"), std::string::npos) << warnings_[0];

  if (geteuid() == 0) return;  // root writes into a read-only folder
  warnings_.clear();
  const fs::path locked = dir_ / "locked";
  fs::create_directories(locked);
  ASSERT_EQ(::chmod(locked.c_str(), 0500), 0);
  ChoiceStore read_only(locked / "gemm-algorithms.json");
  EXPECT_FALSE(read_only.record("a", 1));
  EXPECT_EQ(read_only.find("a"), 1);
  EXPECT_EQ(warnings_.size(), 1u);
  ::chmod(locked.c_str(), 0700);
}

TEST_F(ChoiceStoreTest, WithoutAFileChoicesHoldForTheProcess) {
  ChoiceStore store{fs::path{}};
  EXPECT_FALSE(store.record("a", 5));
  EXPECT_EQ(store.find("a"), 5);
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(ChoiceStoreTest, TheDefaultFileFollowsTheEnvironment) {
  const char* saved_file = std::getenv("LONGLIVE_GEMM_TUNING_FILE");
  const char* saved_cache = std::getenv("XDG_CACHE_HOME");
  const std::string file = saved_file ? saved_file : "", cache = saved_cache ? saved_cache : "";
  setenv("LONGLIVE_GEMM_TUNING_FILE", "/tmp/x.json", 1);
  EXPECT_EQ(ChoiceStore::default_file(), fs::path("/tmp/x.json"));
  unsetenv("LONGLIVE_GEMM_TUNING_FILE");
  setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  EXPECT_EQ(ChoiceStore::default_file(), fs::path("/tmp/xdg/longlive/gemm-algorithms.json"));
  unsetenv("XDG_CACHE_HOME");
  if (const char* home = std::getenv("HOME"); home && *home)
    EXPECT_EQ(ChoiceStore::default_file(),
              fs::path(home) / ".cache" / "longlive" / "gemm-algorithms.json");
  if (saved_file) setenv("LONGLIVE_GEMM_TUNING_FILE", file.c_str(), 1);
  if (saved_cache) setenv("XDG_CACHE_HOME", cache.c_str(), 1);
}

}  // namespace
}  // namespace longlive::lt_gemm
