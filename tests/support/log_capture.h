#pragma once
// The engine's warnings and errors logged while this lives (log::set_callback), from any thread.
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "longlive/log.h"

namespace longlive::test {

class LogCapture {
 public:
  LogCapture() {
    log::set_callback([this](log::Level level, std::string_view message) {
      std::lock_guard lock(mutex_);
      if (level >= log::Level::warn) lines_.emplace_back(message);
    });
  }
  ~LogCapture() { log::set_callback(nullptr); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  // Whether a line logged so far contains `text`.
  bool has(std::string_view text) const {
    std::lock_guard lock(mutex_);
    for (const std::string& line : lines_)
      if (line.find(text) != std::string::npos) return true;
    return false;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

}  // namespace longlive::test
