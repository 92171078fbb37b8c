#include "longlive/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "longlive/error.h"

namespace longlive::log {
namespace {

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::trace:
      return spdlog::level::trace;
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
    case Level::off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

Level from_spdlog(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return Level::trace;
    case spdlog::level::debug:
      return Level::debug;
    case spdlog::level::info:
      return Level::info;
    case spdlog::level::warn:
      return Level::warn;
    case spdlog::level::err:
    case spdlog::level::critical:
      return Level::error;
    default:
      return Level::off;
  }
}

// Forwards formatted messages to the user callback, if one is set.
class CallbackSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void set(Callback callback) {
    std::lock_guard lock(mutex_);
    callback_ = std::move(callback);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!callback_) return;
    callback_(from_spdlog(msg.level), std::string_view(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

 private:
  Callback callback_;
};

struct State {
  std::shared_ptr<CallbackSink> callback_sink = std::make_shared<CallbackSink>();
  std::shared_ptr<spdlog::logger> logger;
  State() {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    logger = std::make_shared<spdlog::logger>("longlive",
                                              spdlog::sinks_init_list{console, callback_sink});
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    logger->set_level(spdlog::level::info);
  }
};

State& state() {
  static State s;
  return s;
}

}  // namespace

void init(Level level) { set_level(level); }

void set_level(Level level) { state().logger->set_level(to_spdlog(level)); }

Level level() { return from_spdlog(state().logger->level()); }

void write(Level level, std::string_view message) {
  state().logger->log(to_spdlog(level), "{}", message);
}

Level parse_level(std::string_view name) {
  if (name == "trace") return Level::trace;
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  throw ConfigError("unknown log level '" + std::string(name) +
                    "' (expected trace, debug, info, warn, error or off)");
}

void set_callback(Callback callback) { state().callback_sink->set(std::move(callback)); }

}  // namespace longlive::log
