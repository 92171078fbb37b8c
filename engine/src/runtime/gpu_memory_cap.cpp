#include "runtime/gpu_memory_cap.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>

#include "longlive/error.h"
#include "longlive/log.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/Context.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace longlive {

GpuMemoryCap::~GpuMemoryCap() {
  try {
    lift();
  } catch (const std::exception& e) {
    log::warn("the GPU memory cap could not be lifted: {}", e.what());
  }
}

GpuMemoryCap::Applied GpuMemoryCap::apply(at::Device device, int64_t headroom_bytes) {
  if (!device.is_cuda())
    throw ConfigError(
        fmt::format("a GPU memory cap needs a CUDA device; this engine runs on {}", device.str()));
#ifdef LONGLIVE_WITH_CUDA
  lift();
  // The allocator has one state per device only once CUDA is initialised (a cap at load may come
  // before the process's first CUDA tensor).
  at::globalContext().lazyInitDevice(at::kCUDA);
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  const c10::cuda::CUDAGuard guard(index);
  namespace allocator = c10::cuda::CUDACachingAllocator;
  // Cached blocks nobody uses go first: what stays reserved is what tensors hold (and the free
  // rest of the segments they are in).
  allocator::emptyCache();
  size_t free_bytes = 0, total = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));  // the total setMemoryFraction multiplies
  const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  Applied applied;
  applied.allocated_bytes = allocator::getDeviceStats(index).allocated_bytes[aggregate].current;
  applied.total_bytes = static_cast<int64_t>(total);
  const double fraction = std::min(
      1.0, static_cast<double>(applied.allocated_bytes + std::max<int64_t>(headroom_bytes, 0)) /
               static_cast<double>(total));
  applied.allowed_bytes = static_cast<int64_t>(fraction * static_cast<double>(total));
  previous_fraction_ = allocator::getMemoryFraction(index);
  allocator::setMemoryFraction(fraction, index);
  device_ = index;
  return applied;
#else
  (void)headroom_bytes;
  throw ConfigError("a GPU memory cap needs a build with CUDA");
#endif
}

void GpuMemoryCap::lift() {
  if (!device_) return;
  const c10::DeviceIndex index = *device_;
  device_.reset();
#ifdef LONGLIVE_WITH_CUDA
  c10::cuda::CUDACachingAllocator::setMemoryFraction(previous_fraction_, index);
#else
  (void)index;  // never reached: apply() sets no cap without CUDA
  (void)previous_fraction_;
#endif
}

}  // namespace longlive
