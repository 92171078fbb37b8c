#pragma once
// MIDI input through the ALSA sequencer: a client named "LongLive Studio" with one writable port
// that controllers and other apps connect to (`aconnect`, or connect_from()). Control changes and
// notes arrive as MidiEvents on the input's own thread; feed them to MidiBindings::handle.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "longlive/midi.h"

namespace longlive {

class MidiInput {
 public:
  using Handler = std::function<void(const MidiEvent&)>;
  // IoError when the sequencer cannot be opened (no /dev/snd/seq: the snd-seq module is not
  // loaded, or a container without sound devices).
  explicit MidiInput(Handler handler, const std::string& client_name = "LongLive Studio");
  ~MidiInput();
  MidiInput(const MidiInput&) = delete;
  MidiInput& operator=(const MidiInput&) = delete;

  int client() const;  // ALSA client and port numbers ("client:port" for aconnect)
  int port() const { return port_; }
  // Subscribes our port to a source port (a controller's), e.g. (20, 0). IoError if refused.
  void connect_from(int client, int port);

 private:
  void run();
  struct Seq;
  std::unique_ptr<Seq> seq_;
  Handler handler_;
  int port_ = -1;
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

}  // namespace longlive
