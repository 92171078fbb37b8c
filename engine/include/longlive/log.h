#pragma once
// Engine logging: fmt-style formatting here, delivery through spdlog behind one settable
// callback so any front end (CLI, GUI banner, tests) can show engine messages.
//
// Why spdlog is not included here: LibTorch ships its own (newer) fmt headers that shadow the
// system fmt spdlog was built against, so spdlog lives in its own translation unit
// (src/log/log.cpp, built without LibTorch's include path) and this header only formats.
#include <fmt/format.h>

#include <functional>
#include <string>
#include <string_view>

namespace longlive::log {

enum class Level { trace, debug, info, warn, error, off };

// Sets the level of the "longlive" logger (stderr). Safe to call again.
void init(Level level);
void set_level(Level level);
Level level();
Level parse_level(std::string_view name);  // "trace".."off"; throws ConfigError otherwise

// Extra receiver for every message at or above the logger level (e.g. the GUI's log panel).
using Callback = std::function<void(Level, std::string_view)>;
void set_callback(Callback callback);

void write(Level level, std::string_view message);

inline bool enabled(Level at) { return at >= level() && at != Level::off; }

template <typename... Args>
void log_at(Level at, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(at)) write(at, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void trace(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::trace)) write(Level::trace, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::error)) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace longlive::log
