#pragma once
// A cap on the memory LibTorch's CUDA caching allocator may hold on one device, so that a test
// gets a real out-of-memory error, raised by the allocator where the engine next asks for more
// (LONGLIVE_CAP_GPU_MEMORY, engine.cpp), instead of a faked one. The cap is the allocator's
// memory fraction (setMemoryFraction), which is process-wide: one owner sets it and puts the
// previous fraction back when it is lifted or goes.
#include <c10/core/Device.h>

#include <cstdint>
#include <optional>

namespace longlive {

class GpuMemoryCap {
 public:
  struct Applied {
    int64_t allocated_bytes = 0;  // taken by tensors on the device when the cap was set
    int64_t allowed_bytes = 0;    // what the allocator may hold from then on
    int64_t total_bytes = 0;      // the device's memory
  };

  GpuMemoryCap() = default;
  ~GpuMemoryCap();
  GpuMemoryCap(const GpuMemoryCap&) = delete;
  GpuMemoryCap& operator=(const GpuMemoryCap&) = delete;

  // Empties the allocator's cache, then lets it hold at most `headroom_bytes` more than the
  // tensors on `device` take now (all of the device's memory at most). Throws ConfigError for a
  // device that is not CUDA (and so in builds without CUDA).
  Applied apply(at::Device device, int64_t headroom_bytes);
  // Puts back the fraction the allocator had before apply(); nothing when no cap is set.
  void lift();
  bool active() const { return device_.has_value(); }

 private:
  std::optional<c10::DeviceIndex> device_;
  double previous_fraction_ = 1.0;
};

}  // namespace longlive
