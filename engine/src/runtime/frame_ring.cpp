// FrameRing: slots advance free -> writing -> ready -> reading -> free, strictly in ring order
// for both sides, so a slot can only be written again after its consumer released it.
#include "longlive/frame_ring.h"

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "longlive/error.h"

namespace longlive {

struct FrameRing::Slot {
  State state = State::free;
  at::Tensor rgba;
  std::optional<c10::Event> ready;     // producer's writes done (GPU)
  std::optional<c10::Event> consumed;  // consumer's reads done (GPU, when it passed a stream)
  int64_t sequence = -1, frame_index = -1;
};

namespace {
const char* state_name(int s) {
  static const char* names[] = {"free", "being written", "ready", "being read"};
  return names[s];
}
}  // namespace

FrameRing::FrameRing(int64_t slots, int64_t height, int64_t width, at::Device device)
    : height_(height), width_(width), device_(device) {
  if (slots < 1 || height < 1 || width < 1)
    throw ConfigError(
        fmt::format("FrameRing needs at least one slot of at least 1x1 pixels, got "
                    "{} slots of {}x{}",
                    slots, width, height));
  for (int64_t i = 0; i < slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->rgba = at::empty({height, width, 4}, at::TensorOptions(at::kByte).device(device));
    slot->rgba.select(2, 3).fill_(255);  // alpha is written once
    if (!device.is_cpu()) {
      slot->ready.emplace(device.type());
      slot->consumed.emplace(device.type());
    }
    slots_.push_back(std::move(slot));
  }
}

FrameRing::~FrameRing() { close(); }

FrameRing::Slot& FrameRing::checked(const FrameSlot& slot, State expected, const char* what) {
  if (slot.slot < 0 || slot.slot >= capacity())
    throw Error(fmt::format("FrameRing::{}: not a slot of this ring", what));
  Slot& s = *slots_[size_t(slot.slot)];
  if (s.state != expected || s.sequence != slot.sequence)
    throw Error(fmt::format("FrameRing::{}: slot {} (frame {}) is {}, expected {}", what, slot.slot,
                            slot.sequence, state_name(int(s.state)), state_name(int(expected))));
  return s;
}

FrameSlot FrameRing::acquire_write(Timeout timeout) {
  std::unique_lock lock(mutex_);
  const size_t index = size_t(written_ % capacity());
  Slot& s = *slots_[index];
  auto writable = [&] { return closed_ || s.state == State::free; };
  if (timeout == kForever)
    changed_.wait(lock, writable);
  else if (!changed_.wait_for(lock, timeout, writable))
    return {};
  if (closed_) return {};
  s.state = State::writing;
  s.sequence = written_++;
  s.frame_index = -1;
  lock.unlock();
  if (s.consumed) {
    // The producer's stream must not overwrite what the consumer's stream may still be reading.
    const c10::impl::VirtualGuardImpl guard(device_.type());
    s.consumed->block(guard.getStream(device_));
  }
  return {static_cast<int64_t>(index), s.sequence, -1, s.rgba};
}

void FrameRing::publish(const FrameSlot& slot, int64_t frame_index) {
  Slot* s = nullptr;
  {
    std::lock_guard lock(mutex_);
    s = &checked(slot, State::writing, "publish");
  }
  if (s->ready) {
    const c10::impl::VirtualGuardImpl guard(device_.type());
    s->ready->record(guard.getStream(device_));
  }
  {
    std::lock_guard lock(mutex_);
    s->frame_index = frame_index;
    s->state = State::ready;
  }
  changed_.notify_all();
}

bool FrameRing::push_frames(const at::Tensor& frames, int64_t first_index) {
  if (frames.dim() != 4 || frames.size(1) != 3 || frames.size(2) != height_ ||
      frames.size(3) != width_)
    throw ConfigError(
        fmt::format("FrameRing::push_frames: frames have shape [{}], expected [N, 3, "
                    "{}, {}]",
                    fmt::join(frames.sizes(), ", "), height_, width_));
  const at::Tensor rgb =
      frames.to(device_).clamp(0, 1).mul(255.0).round_().to(at::kByte).permute({0, 2, 3, 1});
  for (int64_t i = 0; i < frames.size(0); ++i) {
    const FrameSlot slot = acquire_write();
    if (!slot) return false;
    slot.rgba.narrow(2, 0, 3).copy_(rgb[i]);
    publish(slot, first_index + i);
  }
  return true;
}

FrameSlot FrameRing::acquire_read(Timeout timeout) {
  std::unique_lock lock(mutex_);
  const size_t index = size_t(read_ % capacity());
  Slot& s = *slots_[index];
  auto readable = [&] { return s.state == State::ready && s.sequence == read_; };
  auto done = [&] { return readable() || closed_; };
  if (timeout == kForever)
    changed_.wait(lock, done);
  else if (!changed_.wait_for(lock, timeout, done))
    return {};
  if (!readable()) return {};  // closed and drained
  s.state = State::reading;
  ++read_;
  return {static_cast<int64_t>(index), s.sequence, s.frame_index, s.rgba};
}

void FrameRing::wait_ready(const FrameSlot& slot, const c10::Stream& stream) const {
  const Slot& s = *slots_.at(size_t(slot.slot));
  if (s.ready) s.ready->block(stream);
}

void FrameRing::synchronize(const FrameSlot& slot) const {
  const Slot& s = *slots_.at(size_t(slot.slot));
  if (s.ready) s.ready->synchronize();
}

void FrameRing::release(const FrameSlot& slot, const c10::Stream* consumer_stream) {
  {
    std::lock_guard lock(mutex_);
    Slot& s = checked(slot, State::reading, "release");
    if (s.consumed && consumer_stream) s.consumed->record(*consumer_stream);
    s.state = State::free;
  }
  changed_.notify_all();
}

void FrameRing::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
}

void FrameRing::reset() {
  {
    std::lock_guard lock(mutex_);
    for (auto& s : slots_) {
      s->state = State::free;
      s->sequence = s->frame_index = -1;
    }
    written_ = read_ = 0;
    closed_ = false;
  }
  changed_.notify_all();
}

int64_t FrameRing::pending() const {
  std::lock_guard lock(mutex_);
  int64_t n = 0;
  for (const auto& s : slots_) n += s->state == State::ready || s->state == State::reading;
  return n;
}

}  // namespace longlive
