#pragma once
// An environment variable set while this lives, unset again after (the engine's switches are
// unset by default): a test that throws or fails midway leaves no switch behind for the next.
#include <cstdlib>

namespace longlive::test {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

}  // namespace longlive::test
