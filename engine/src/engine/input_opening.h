#pragma once
// A video or camera picked while the engine generates is opened on a thread of its own
// (Engine::set_vace / set_v2v): a V4L2 camera takes a few hundred milliseconds to open and start
// streaming, and on the engine thread that stopped the video for as long. The pick's command
// waits in the engine's queue (with the commands after it, whose order is kept) until its
// source is open; the video goes on meanwhile. Then, while the command applies, the engine
// offers the opening to LiveInputs' opener (OfferedInputs), which hands its source out instead
// of opening the input again.
#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "longlive/timeline.h"
#include "longlive/vace.h"

namespace longlive {

class InputOpening {
 public:
  // Starts opening `source` at height x width with `opener.frames` on a thread of its own;
  // `done` runs on that thread once it is open or has failed.
  InputOpening(const InputOpener& opener, InputSource source, int height, int width,
               std::function<void()> done);
  ~InputOpening();  // waits for the open; a source opened and never taken is closed
  InputOpening(const InputOpening&) = delete;
  InputOpening& operator=(const InputOpening&) = delete;

  bool done() const { return done_.load(); }
  // Whether this is the opening of `source` at height x width.
  bool is_for(const InputSource& source, int height, int width) const;
  // The opened source (then null here), or the open's failure rethrown. Only once done().
  std::shared_ptr<VaceFrameSource> take();
  // Closes a source opened and not taken (the device is free for another open).
  void discard();

 private:
  InputSource source_;
  int height_, width_;
  std::shared_ptr<VaceFrameSource> opened_;
  std::exception_ptr failure_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// LiveInputs' opener on an Engine: while a pick's command applies, its opening is offered, and
// frames() hands that opening's source out when it is for the same source and size; any other
// open (a timeline played, a different size) opens as `base` does, the offered one closed first
// (a camera cannot be opened twice).
class OfferedInputs {
  struct State;

 public:
  explicit OfferedInputs(InputOpener base);
  const InputOpener& base() const { return state_->base; }
  InputOpener opener() const;  // for Performance::set_inputs

  // `opening` is offered while this lives (on the engine thread, around applying its command);
  // what was not taken is closed when it ends.
  class Offer {
   public:
    Offer(const OfferedInputs& inputs, std::shared_ptr<InputOpening> opening);
    ~Offer();
    Offer(const Offer&) = delete;
    Offer& operator=(const Offer&) = delete;

   private:
    std::shared_ptr<State> state_;
    std::shared_ptr<InputOpening> opening_;
  };

 private:
  struct State {  // shared with the opener handed to LiveInputs
    InputOpener base;
    std::mutex mutex;
    std::shared_ptr<InputOpening> offered;
  };
  std::shared_ptr<State> state_;
};

}  // namespace longlive
