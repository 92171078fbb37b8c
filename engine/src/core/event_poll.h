#pragma once
// Waiting for GPU work on the host while the thread stays useful: the event is polled and,
// between polls, the caller looks at its commands or hands decoded frames out.
#include <c10/core/Event.h>

#include <thread>

namespace longlive {

enum class PollTurn {
  stop,  // give up waiting
  busy,  // did some work: poll again at once
  idle,  // nothing to do: yield the core before polling again
};

// Polls `done` until its work has run, calling `between` between polls; false when `between`
// said stop first.
template <class Between>
bool poll_until(const c10::Event& done, Between&& between) {
  while (!done.query()) {
    switch (between()) {
      case PollTurn::stop:
        return false;
      case PollTurn::idle:
        std::this_thread::yield();
        break;
      case PollTurn::busy:
        break;
    }
  }
  return true;
}

}  // namespace longlive
