#pragma once
// Polling the studio's Engine from a bench: its stats until a condition holds, with a deadline,
// and the engine's errors surfaced (a stuck or failed engine is not waited for).
#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "longlive/engine.h"
#include "longlive/error.h"

namespace longlive::cli {

// The Engine's stats, polled until `done` holds. Error, naming `who` (the bench) and what it
// waited for, after `limit` or when the engine reported an error (into `errors`).
inline EngineStats wait_until(const Engine& engine,
                              const std::function<bool(const EngineStats&)>& done,
                              const std::vector<std::string>& errors, std::mutex& errors_mutex,
                              const char* who, const char* what,
                              std::chrono::seconds limit = std::chrono::seconds(600)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const EngineStats s = engine.stats();
    if (done(s)) return s;
    {
      std::lock_guard lock(errors_mutex);
      if (!errors.empty() || s.state == "error")
        throw Error(fmt::format("{}: the engine stopped while {}: {}", who, what,
                                errors.empty() ? s.state : errors.front()));
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(fmt::format("{}: gave up waiting while {} (state {}, {} blocks)", who, what,
                              s.state, s.blocks));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace longlive::cli
