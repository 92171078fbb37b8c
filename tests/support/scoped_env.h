#pragma once
// An environment variable set while this lives, then restored: unset again (the engine's switches
// are unset by default) or given back the value it had (LONGLIVE_FIXTURES, set by ctest for a
// fixture folder). A test that throws or fails midway leaves no switch behind for the next.
#include <cstdlib>
#include <optional>
#include <string>

namespace longlive::test {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* before = std::getenv(name)) before_ = before;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (before_)
      ::setenv(name_, before_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> before_;
};

}  // namespace longlive::test
