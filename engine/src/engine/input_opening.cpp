#include "input_opening.h"

#include <fmt/format.h>

#include <chrono>
#include <utility>

#include "encode_ahead.h"
#include "longlive/elapsed.h"
#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {

InputOpening::InputOpening(const InputOpener& opener, InputSource source, int height, int width,
                           std::function<void()> done)
    : source_(std::move(source)), height_(height), width_(width) {
  if (!opener.frames) throw ConfigError("InputOpening: the opener cannot open videos or cameras");
  thread_ = std::thread([this, open = opener.frames, done = std::move(done)] {
    const auto opening = std::chrono::steady_clock::now();
    try {
      opened_ = open(source_, height_, width_);
    } catch (...) {
      failure_ = std::current_exception();
    }
    if (input_trace())
      log::info("input trace: {} opened beside the video in {:.1f} ms{}", source_.describe(),
                ms_since(opening), failure_ ? " (failed)" : "");
    done_ = true;  // publishes opened_ / failure_ (sequentially consistent)
    if (done) done();
  });
}

InputOpening::~InputOpening() {
  if (thread_.joinable()) thread_.join();
}

bool InputOpening::is_for(const InputSource& source, int height, int width) const {
  return source == source_ && height == height_ && width == width_;
}

std::shared_ptr<VaceFrameSource> InputOpening::take() {
  if (!done()) throw Error("InputOpening::take before the open finished");
  if (failure_) std::rethrow_exception(failure_);
  if (!opened_)
    throw Error(fmt::format("{} was opened once and taken already", source_.describe()));
  return std::exchange(opened_, nullptr);
}

void InputOpening::discard() {
  if (done()) opened_.reset();
}

OfferedInputs::OfferedInputs(InputOpener base) : state_(std::make_shared<State>()) {
  state_->base = std::move(base);
}

InputOpener OfferedInputs::opener() const {
  InputOpener opener = state_->base;
  if (!opener.frames) return opener;
  opener.frames = [state = state_](const InputSource& source, int height,
                                   int width) -> std::shared_ptr<VaceFrameSource> {
    std::shared_ptr<InputOpening> offered;
    {
      std::lock_guard lock(state->mutex);
      offered = std::exchange(state->offered, nullptr);  // one open per offer
    }
    if (offered && offered->done()) {
      if (offered->is_for(source, height, width)) return offered->take();
      offered->discard();  // another source or size: the device freed before it opens again
    }
    return state->base.frames(source, height, width);
  };
  return opener;
}

OfferedInputs::Offer::Offer(const OfferedInputs& inputs, std::shared_ptr<InputOpening> opening)
    : state_(inputs.state_), opening_(std::move(opening)) {
  if (!opening_) return;
  std::lock_guard lock(state_->mutex);
  state_->offered = opening_;
}

OfferedInputs::Offer::~Offer() {
  if (!opening_) return;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->offered == opening_) state_->offered.reset();
  }
  opening_->discard();  // not taken (the command failed before it opened its input)
}

}  // namespace longlive
