#pragma once
// FrameRing: N preallocated RGBA8 frames between the decoder (producer) and its consumer (the
// view/recorder dispatch). Slots live in device memory on a GPU, with a ready event per slot
// recorded on the producer's stream at publish(); on the CPU they are host memory.
//
// Protocol (single producer, single consumer, frames in order):
//   producer: s = acquire_write(); write s.rgba on the current stream; publish(s, frame_index)
//   consumer: s = acquire_read(); wait_ready(s, stream) or synchronize(s); read;
//             release(s, &stream)
// A slot is never handed to the producer again before the consumer released it: a full ring
// blocks the producer (back-pressure), an empty ring blocks the consumer. close() wakes both.
#include <ATen/core/Tensor.h>
#include <c10/core/Stream.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace longlive {

struct FrameSlot {
  int64_t slot = -1;         // index in the ring
  int64_t sequence = -1;     // how many frames went through the ring before this one
  int64_t frame_index = -1;  // set by publish()
  at::Tensor rgba;           // [H, W, 4] uint8 view of the slot's memory (alpha preset to 255)
  explicit operator bool() const { return slot >= 0; }
};

class FrameRing {
 public:
  using Timeout = std::chrono::milliseconds;
  static constexpr Timeout kForever = Timeout::max();

  FrameRing(int64_t slots, int64_t height, int64_t width, at::Device device = at::kCPU);
  ~FrameRing();
  FrameRing(const FrameRing&) = delete;
  FrameRing& operator=(const FrameRing&) = delete;

  // Producer. Empty slot when closed or timed out.
  FrameSlot acquire_write(Timeout timeout = kForever);
  // Records the slot's ready event on the device's current stream (GPU) and hands it to the
  // consumer. `slot` must come from acquire_write() and not be published yet.
  void publish(const FrameSlot& slot, int64_t frame_index);
  // Convenience for the decoder: frames [N, 3, H, W] in [0, 1] (device of the ring) become N
  // published slots with indices first_index... Returns false when the ring was closed.
  bool push_frames(const at::Tensor& frames, int64_t first_index);

  // Consumer. Empty slot when closed (and drained) or timed out.
  FrameSlot acquire_read(Timeout timeout = kForever);
  // Makes `stream` wait for the frame's writes without blocking the host (GPU; no-op on CPU).
  void wait_ready(const FrameSlot& slot, const c10::Stream& stream) const;
  // Blocks the host until the frame's writes are done (no-op on CPU).
  void synchronize(const FrameSlot& slot) const;
  // Frees the slot. With `consumer_stream` (GPU), the producer's next write to this slot waits
  // for the work queued on that stream so far (the consumer's reads), without a host sync.
  void release(const FrameSlot& slot, const c10::Stream* consumer_stream = nullptr);

  // Wakes everyone; acquire_write() returns empty from now on, acquire_read() once drained.
  void close();
  // Forgets published frames and reopens (new session). Call with no slot held.
  void reset();

  int64_t capacity() const { return static_cast<int64_t>(slots_.size()); }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  at::Device device() const { return device_; }
  // Frames published and not yet released.
  int64_t pending() const;

 private:
  enum class State { free, writing, ready, reading };
  struct Slot;
  Slot& checked(const FrameSlot& slot, State expected, const char* what);

  int64_t height_, width_;
  at::Device device_;
  std::vector<std::unique_ptr<Slot>> slots_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  int64_t written_ = 0, read_ = 0;
  bool closed_ = false;
};

}  // namespace longlive
