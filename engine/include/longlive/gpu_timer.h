#pragma once
// Device-side timing: CUDA events on the current stream when the device is CUDA, a host clock
// (after the work is done: CPU ops are synchronous) otherwise. Also peak-memory queries.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>

namespace longlive {

class GpuTimer {
 public:
  explicit GpuTimer(at::Device device);
  ~GpuTimer();
  void start();
  // Records the end and waits for it; returns milliseconds since start().
  double stop_ms();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct DeviceMemory {
  double allocated_gib = 0;
  double peak_allocated_gib = 0;
  double peak_reserved_gib = 0;
  // The device's free and total memory (cudaMemGetInfo: what the caching allocator holds counts
  // as used).
  double free_gib = 0, total_gib = 0;
};
DeviceMemory device_memory(at::Device device);
// The GPU's product name ("NVIDIA H200"), "CPU" for the CPU.
std::string device_name(at::Device device);
void reset_peak_memory(at::Device device);
void synchronize(at::Device device);

}  // namespace longlive
