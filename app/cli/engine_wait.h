#pragma once
// What the benches that drive the studio's Engine (bench_input_latency, bench_switch_latency)
// share: its options for a timing run, its errors collected, its stats polled until a condition
// holds, and random moments of a block to act at.
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "longlive/engine.h"
#include "longlive/error.h"

namespace longlive::cli {

// Every block replays its graphs (no region-profiled, eager, or CUPTI-sampled blocks), and
// nothing is kept for an export.
inline EngineOptions timing_engine_options() {
  EngineOptions options;
  options.profile_every = 1 << 30;
  options.kernel_sampling = false;
  options.max_kept_latent_bytes = 0;
  return options;
}

// The engine's errors (on_error), for wait_until.
struct EngineErrors {
  std::mutex mutex;
  std::vector<std::string> messages;
  void collect_from(Engine::Callbacks& callbacks) {
    callbacks.on_error = [this](const std::string& e) {
      std::lock_guard lock(mutex);
      messages.push_back(e);
    };
  }
};

// The Engine's stats, polled until `done` holds. Error, naming `who` (the bench) and what it
// waited for, after `limit` or when the engine reported an error.
inline EngineStats wait_until(const Engine& engine,
                              const std::function<bool(const EngineStats&)>& done,
                              EngineErrors& errors, const char* who, const char* what,
                              std::chrono::seconds limit = std::chrono::seconds(600)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const EngineStats s = engine.stats();
    if (done(s)) return s;
    {
      std::lock_guard lock(errors.mutex);
      if (!errors.messages.empty() || s.state == "error")
        throw Error(fmt::format("{}: the engine stopped while {}: {}", who, what,
                                errors.messages.empty() ? s.state : errors.messages.front()));
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(fmt::format("{}: gave up waiting while {} (state {}, {} blocks)", who, what,
                              s.state, s.blocks));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Random moments of a block, the same ones each run (seeded): after a block ended, waits a
// uniform fraction of `block_ms`.
class RandomMoments {
 public:
  void wait_within(double block_ms) {
    std::this_thread::sleep_for(
        std::chrono::duration<double, std::milli>(phase_(random_) * block_ms));
  }

 private:
  std::mt19937 random_{7};
  std::uniform_real_distribution<double> phase_{0.0, 1.0};
};

}  // namespace longlive::cli
