#pragma once
// The LONGLIVE_* switches read from the environment (A/B toggles between two ways of doing a
// thing, test hooks).
#include <cstdlib>
#include <string_view>

namespace longlive {

// Whether the environment sets `name` to exactly `value`.
inline bool env_is(const char* name, std::string_view value) {
  const char* env = std::getenv(name);
  return env != nullptr && value == env;
}

}  // namespace longlive
