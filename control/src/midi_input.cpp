// ALSA sequencer MIDI input (see longlive/midi_input.h).
#include "longlive/midi_input.h"

#include <alsa/asoundlib.h>
#include <fmt/format.h>
#include <poll.h>

#include <vector>

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {

struct MidiInput::Seq {
  snd_seq_t* handle = nullptr;
  ~Seq() {
    if (handle) snd_seq_close(handle);
  }
};

MidiInput::MidiInput(Handler handler, const std::string& client_name)
    : seq_(std::make_unique<Seq>()), handler_(std::move(handler)) {
  if (const int rc = snd_seq_open(&seq_->handle, "default", SND_SEQ_OPEN_INPUT, SND_SEQ_NONBLOCK);
      rc < 0) {
    seq_->handle = nullptr;
    throw IoError(
        fmt::format("cannot open the ALSA sequencer for MIDI input: {} (is the "
                    "snd-seq module loaded? `sudo modprobe snd-seq`)",
                    snd_strerror(rc)));
  }
  snd_seq_set_client_name(seq_->handle, client_name.c_str());
  port_ = snd_seq_create_simple_port(
      seq_->handle, "MIDI in", SND_SEQ_PORT_CAP_WRITE | SND_SEQ_PORT_CAP_SUBS_WRITE,
      SND_SEQ_PORT_TYPE_MIDI_GENERIC | SND_SEQ_PORT_TYPE_APPLICATION);
  if (port_ < 0)
    throw IoError(fmt::format("cannot create the ALSA sequencer port: {}", snd_strerror(port_)));
  log::info("MIDI: ALSA sequencer port {}:{} ('{}')", client(), port_, client_name);
  thread_ = std::thread([this] { run(); });
}

MidiInput::~MidiInput() {
  quit_ = true;
  if (thread_.joinable()) thread_.join();
}

int MidiInput::client() const { return snd_seq_client_id(seq_->handle); }

void MidiInput::connect_from(int client, int port) {
  if (const int rc = snd_seq_connect_from(seq_->handle, port_, client, port); rc < 0)
    throw IoError(
        fmt::format("cannot connect MIDI port {}:{} to ours: {}", client, port, snd_strerror(rc)));
}

void MidiInput::run() {
  const int n = snd_seq_poll_descriptors_count(seq_->handle, POLLIN);
  std::vector<pollfd> fds(static_cast<size_t>(n));
  snd_seq_poll_descriptors(seq_->handle, fds.data(), static_cast<unsigned>(n), POLLIN);
  while (!quit_) {
    if (poll(fds.data(), fds.size(), 100) <= 0) continue;  // wakes up to see quit_
    snd_seq_event_t* ev = nullptr;
    while (snd_seq_event_input(seq_->handle, &ev) >= 0 && ev) {
      MidiEvent e;
      switch (ev->type) {
        case SND_SEQ_EVENT_CONTROLLER:
          e = {MidiEvent::Type::control_change, ev->data.control.channel,
               static_cast<int>(ev->data.control.param), ev->data.control.value};
          break;
        case SND_SEQ_EVENT_NOTEON:
          e = {MidiEvent::Type::note_on, ev->data.note.channel, ev->data.note.note,
               ev->data.note.velocity};
          break;
        case SND_SEQ_EVENT_NOTEOFF:
          e = {MidiEvent::Type::note_off, ev->data.note.channel, ev->data.note.note,
               ev->data.note.velocity};
          break;
        default:
          continue;  // clock, sysex, port announcements: not ours
      }
      try {
        if (handler_) handler_(e);
      } catch (const std::exception& error) {
        log::warn("MIDI: event dropped: {}", error.what());
      }
    }
  }
}

}  // namespace longlive
