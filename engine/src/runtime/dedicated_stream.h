#pragma once
// A CUDA stream of our own rather than one of LibTorch's pool. Pool streams are handed out
// round-robin (32 per priority and device), so two users that each take one sooner or later
// share it: a thread encoding the next block's inputs ahead launched onto the stream a CUDA
// graph was being captured on, which invalidated the capture and failed the encode
// (cudaErrorStreamCaptureUnsupported; bench --vace on an H100, 2026-12-05). Graph captures, the
// decoder and work on threads of its own each keep one of these for their lifetime. The stream
// itself outlives its owner: handed back to a free list, not destroyed (dedicated_stream.cpp
// says why), so one owner at a time, but the same stream may serve a later owner.
#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

namespace longlive {

// CUDA schedules the blocks of a higher-priority stream's kernels first when SMs free up.
enum class StreamPriority {
  lowest,        // LibTorch's default; inputs encoded ahead
  above_lowest,  // one level up (the highest where the device has two): the DiT's replays
  highest,       // the decoder: a finished block's frames go out first
};

class DedicatedStream {
 public:
  DedicatedStream(c10::DeviceIndex device, StreamPriority priority);
  DedicatedStream(c10::DeviceIndex device, bool high_priority)
      : DedicatedStream(device, high_priority ? StreamPriority::highest : StreamPriority::lowest) {}
  ~DedicatedStream();
  DedicatedStream(const DedicatedStream&) = delete;
  DedicatedStream& operator=(const DedicatedStream&) = delete;

  c10::cuda::CUDAStream get() const;

 private:
  c10::DeviceIndex device_;
  StreamPriority priority_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace longlive
#endif
