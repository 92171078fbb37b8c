#include "runtime/dedicated_stream.h"

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <utility>

namespace longlive {
namespace {

// Streams are never destroyed, only handed back here for the next DedicatedStream of the same
// device and priority. LibTorch's caching allocator records an event on every stream a tensor was
// used on (recordStream) when that tensor is freed, and a tensor may outlive the owner of such a
// stream (an engine's kept latents or a delivered frame outlive the session's decoder): an event
// recorded on a destroyed stream fails ("context is destroyed", H100, 2026-12-05) inside the
// tensor's destructor, which ends the process. On a stream handed back it is harmless. The pool
// holds at most as many streams as were ever alive at once.
class StreamPool {
 public:
  static StreamPool& instance() {
    static auto* pool = new StreamPool;  // never destroyed: tensors may be freed at exit too
    return *pool;
  }
  cudaStream_t take(c10::DeviceIndex device, StreamPriority priority) {
    const std::lock_guard lock(mutex_);
    std::deque<cudaStream_t>& free = free_[{device, priority}];
    if (free.empty()) return nullptr;
    cudaStream_t stream = free.front();  // the longest idle first
    free.pop_front();
    return stream;
  }
  void give_back(c10::DeviceIndex device, StreamPriority priority, cudaStream_t stream) {
    const std::lock_guard lock(mutex_);
    free_[{device, priority}].push_back(stream);
  }

 private:
  std::mutex mutex_;
  std::map<std::pair<c10::DeviceIndex, StreamPriority>, std::deque<cudaStream_t>> free_;
};

}  // namespace

DedicatedStream::DedicatedStream(c10::DeviceIndex device, StreamPriority priority)
    // "cuda" without an index is the current device, as for LibTorch's own streams.
    : device_(device < 0 ? c10::cuda::current_device() : device), priority_(priority) {
  stream_ = StreamPool::instance().take(device_, priority_);
  if (stream_ != nullptr) return;
  const c10::cuda::CUDAGuard guard(device_);
  int lowest = 0, highest = 0;  // CUDA counts priorities downwards: highest <= lowest
  C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lowest, &highest));
  const int level = priority == StreamPriority::highest  ? highest
                    : priority == StreamPriority::lowest ? lowest
                                                         : std::max(highest, lowest - 1);
  // Non-blocking: no implicit ordering with the legacy default stream, like the pool's streams.
  C10_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, level));
}

DedicatedStream::~DedicatedStream() {
  // Work still queued runs on; the next owner's work queues behind it.
  StreamPool::instance().give_back(device_, priority_, stream_);
}

c10::cuda::CUDAStream DedicatedStream::get() const {
  return c10::cuda::getStreamFromExternal(stream_, device_);
}

}  // namespace longlive
#endif
