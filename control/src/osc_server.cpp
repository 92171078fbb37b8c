// The OSC UDP server on liblo's own receive thread (see longlive/osc_server.h).
#include "longlive/osc_server.h"

#include <fmt/format.h>
#include <lo/lo.h>

#include <cstdint>
#include <cstring>

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {

struct OscServer::Lo {
  lo_server_thread thread = nullptr;
  std::string bind_error;
  ~Lo() {
    if (thread) {
      lo_server_thread_stop(thread);
      lo_server_thread_free(thread);
    }
  }
};

namespace {

// liblo reports bind failures through this callback, not through the return value's errno.
thread_local std::string* g_bind_error = nullptr;
void on_lo_error(int number, const char* message, const char* where) {
  const std::string text = fmt::format("{} ({}{}{})", message ? message : "?", number,
                                       where ? ", " : "", where ? where : "");
  if (g_bind_error)
    *g_bind_error = text;
  else
    log::warn("OSC: {}", text);
}

// liblo's argument pointers point into the message at OSC's 4-byte padding, while lo_arg is a
// union with 8-byte members: reading a member through the pointer is a misaligned access
// (UBSan, on every string argument after an odd number of 4-byte words). Read the bytes instead.
template <typename T>
T arg_value(const lo_arg* arg) {
  T value;
  std::memcpy(&value, arg, sizeof value);
  return value;
}
std::string arg_text(const lo_arg* arg) { return std::string(reinterpret_cast<const char*>(arg)); }

int on_message(const char* path, const char* types, lo_arg** argv, int argc, lo_message msg,
               void* user) {
  OscMessage m;
  m.path = path ? path : "";
  if (lo_address source = lo_message_get_source(msg)) {
    const char* host = lo_address_get_hostname(source);
    const char* port = lo_address_get_port(source);
    m.sender = fmt::format("{}:{}", host ? host : "?", port ? port : "?");
  }
  for (int i = 0; i < argc; ++i) {
    switch (types[i]) {
      case LO_INT32:
        m.args.emplace_back(static_cast<int64_t>(arg_value<int32_t>(argv[i])));
        break;
      case LO_INT64:
        m.args.emplace_back(arg_value<int64_t>(argv[i]));
        break;
      case LO_FLOAT:
        m.args.emplace_back(static_cast<double>(arg_value<float>(argv[i])));
        break;
      case LO_DOUBLE:
        m.args.emplace_back(arg_value<double>(argv[i]));
        break;
      case LO_TRUE:
        m.args.emplace_back(int64_t{1});
        break;
      case LO_FALSE:
        m.args.emplace_back(int64_t{0});
        break;
      case LO_STRING:
        m.args.emplace_back(arg_text(argv[i]));
        break;
      case LO_SYMBOL:
        m.args.emplace_back(arg_text(argv[i]));
        break;
      default:
        m.unsupported_types.push_back(types[i]);
    }
  }
  auto* server = static_cast<OscServer*>(user);
  server->receive(m);
  return 0;  // handled: no other method sees it
}

}  // namespace

OscServer::OscServer(int port, Handler handler)
    : handler_(std::move(handler)), lo_(std::make_unique<Lo>()) {
  if (port < 0 || port > 65535) throw ConfigError(fmt::format("OSC port {} is not 0..65535", port));
  const std::string port_text = std::to_string(port);
  g_bind_error = &lo_->bind_error;
  lo_->thread =
      lo_server_thread_new_with_proto(port == 0 ? nullptr : port_text.c_str(), LO_UDP, on_lo_error);
  g_bind_error = nullptr;
  if (!lo_->thread)
    throw IoError(fmt::format("cannot listen for OSC on UDP port {}: {}", port,
                              lo_->bind_error.empty() ? "liblo gave no reason" : lo_->bind_error));
  port_ = lo_server_thread_get_port(lo_->thread);
  lo_server_thread_add_method(lo_->thread, nullptr, nullptr, on_message, this);
  if (lo_server_thread_start(lo_->thread) != 0)
    throw IoError(fmt::format("cannot start the OSC receive thread on UDP port {}", port_));
  log::info("OSC: listening on UDP port {}", port_);
}

OscServer::~OscServer() {
  lo_.reset();  // stops the receive thread before the handler, lock and counters go
}

OscServer::Stats OscServer::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void OscServer::receive(const OscMessage& message) {
  std::string why;
  try {
    if (!message.unsupported_types.empty())
      throw ConfigError(fmt::format("{}: unsupported OSC argument type(s) '{}'", message.path,
                                    message.unsupported_types));
    const ControlCommand command = parse_osc(message);
    if (handler_) handler_(command);
    log::debug("OSC from {}: {}", message.sender, describe(command));
    std::lock_guard lock(mutex_);
    ++stats_.accepted;
    return;
  } catch (const Error& e) {
    why = e.what();
  }
  log::warn("OSC: ignored a message from {}: {}", message.sender, why);
  std::lock_guard lock(mutex_);
  ++stats_.rejected;
  stats_.last_rejection = fmt::format("from {}: {}", message.sender, why);
}

}  // namespace longlive
