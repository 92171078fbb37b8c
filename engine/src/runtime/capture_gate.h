#pragma once
// CUDA graph captures and work on other threads that may synchronise the whole device exclude
// each other, per device. Synchronising a device while one of its streams captures is invalid
// whatever the capture mode: the capture breaks and the synchronising call fails. cuDNN's
// algorithm search does it (LibTorch keeps its found plans per thread, so a new thread searches
// again), and a VACE encode ahead on its own thread killed a DiT capture that way (bench --vace
// on an H100, 2026-12-05). A capture holds its device's gate exclusively for its few
// milliseconds; such work holds it shared while it runs, so a capture waits for it to end and it
// waits for a capture to end. Two captures on one device that wait for each other inside the
// forward (ranks sharing a GPU, should their forwards ever be captured with a collective inside)
// must not both take it.
#include <c10/core/Device.h>

#include <mutex>
#include <shared_mutex>

namespace longlive {

std::shared_mutex& capture_gate(c10::DeviceIndex device);

// DitGraphRunner around capture_begin .. capture_end.
inline std::unique_lock<std::shared_mutex> hold_for_capture(c10::DeviceIndex device) {
  return std::unique_lock(capture_gate(device));
}
// Other threads' device work that may synchronise the device.
inline std::shared_lock<std::shared_mutex> hold_outside_captures(c10::DeviceIndex device) {
  return std::shared_lock(capture_gate(device));
}

}  // namespace longlive
