#include "runtime/dedicated_stream.h"

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>

namespace longlive {

DedicatedStream::DedicatedStream(c10::DeviceIndex device, bool high_priority)
    // "cuda" without an index is the current device, as for LibTorch's own streams.
    : device_(device < 0 ? c10::cuda::current_device() : device) {
  const c10::cuda::CUDAGuard guard(device_);
  int lowest = 0, highest = 0;  // CUDA counts priorities downwards: highest <= lowest
  C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lowest, &highest));
  // Non-blocking: no implicit ordering with the legacy default stream, like the pool's streams.
  C10_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking,
                                              high_priority ? highest : lowest));
}

DedicatedStream::~DedicatedStream() {
  // Work still queued completes first; the handle's resources go once it has.
  const c10::cuda::CUDAGuard guard(device_);
  (void)cudaStreamDestroy(stream_);
}

c10::cuda::CUDAStream DedicatedStream::get() const {
  return c10::cuda::getStreamFromExternal(stream_, device_);
}

}  // namespace longlive
#endif
