#pragma once
// OSC over UDP (liblo): every message to the port is parsed (parse_osc) and handed to the
// handler on liblo's receive thread. A message that does not parse, or that the handler rejects
// with an Error, is logged with its sender and dropped: the performance goes on.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "longlive/control.h"

namespace longlive {

constexpr int kDefaultOscPort = 9000;

class OscServer {
 public:
  using Handler = std::function<void(const ControlCommand&)>;
  // Listens on UDP `port` (0: a free port the system picks, see port()). IoError naming the port
  // when it cannot be opened (in use, no permission).
  OscServer(int port, Handler handler);
  ~OscServer();
  OscServer(const OscServer&) = delete;
  OscServer& operator=(const OscServer&) = delete;

  int port() const { return port_; }
  struct Stats {
    int64_t accepted = 0;
    int64_t rejected = 0;
    std::string last_rejection;  // "from host:port: /path: why"
  };
  Stats stats() const;

  // Decodes, validates and dispatches one message (liblo's thread calls it; tests may too).
  void receive(const OscMessage& message);

 private:
  struct Lo;
  Handler handler_;
  std::unique_ptr<Lo> lo_;
  int port_ = 0;
  mutable std::mutex mutex_;
  Stats stats_;
};

}  // namespace longlive
