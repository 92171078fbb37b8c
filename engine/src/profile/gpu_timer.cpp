#include "longlive/profiler.h"

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace longlive {

struct GpuTimer::Impl {
  at::Device device;
  std::unique_ptr<c10::Event> begin, end;
  std::chrono::steady_clock::time_point host_begin;
};

GpuTimer::GpuTimer(at::Device device)
    : impl_(std::make_unique<Impl>(Impl{device, nullptr, nullptr, {}})) {
  if (device.is_cuda()) {
    impl_->begin =
        std::make_unique<c10::Event>(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
    impl_->end =
        std::make_unique<c10::Event>(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
  }
}

GpuTimer::~GpuTimer() = default;

void GpuTimer::start() {
  if (impl_->begin) {
    const auto* guard = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    impl_->begin->record(guard->getStream(impl_->device));
  } else {
    impl_->host_begin = std::chrono::steady_clock::now();
  }
}

double GpuTimer::stop_ms() {
  if (impl_->end) {
    const auto* guard = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    impl_->end->record(guard->getStream(impl_->device));
    impl_->end->synchronize();
    return impl_->begin->elapsedTime(*impl_->end);
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                   impl_->host_begin)
      .count();
}

DeviceMemory device_memory(at::Device device) {
  DeviceMemory m;
#ifdef LONGLIVE_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    m.allocated_gib = stats.allocated_bytes[all].current / kGiB;
    m.peak_allocated_gib = stats.allocated_bytes[all].peak / kGiB;
    m.reserved_gib = stats.reserved_bytes[all].current / kGiB;
    m.peak_reserved_gib = stats.reserved_bytes[all].peak / kGiB;
    size_t free = 0, total = 0;
    const c10::cuda::CUDAGuard guard(device.index() < 0 ? 0 : device.index());
    if (cudaMemGetInfo(&free, &total) == cudaSuccess) {
      m.free_gib = free / kGiB;
      m.total_gib = total / kGiB;
    } else {
      (void)cudaGetLastError();
    }
  }
#endif
  return m;
}

std::string device_name(at::Device device) {
#ifdef LONGLIVE_WITH_CUDA
  cudaDeviceProp properties{};
  if (device.is_cuda() &&
      cudaGetDeviceProperties(&properties, device.index() < 0 ? 0 : device.index()) == cudaSuccess)
    return properties.name;
#endif
  return device.is_cpu() ? "CPU" : device.str();
}

void reset_peak_memory(at::Device device) {
#ifdef LONGLIVE_WITH_CUDA
  if (device.is_cuda())
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
}

void synchronize(at::Device device) {
  if (device.is_cuda())
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
        ->synchronizeDevice(device.index() < 0 ? 0 : device.index());
}

void wait_for_current_stream(at::Device device) {
  if (!device.is_cuda()) return;
  c10::Event done(c10::DeviceType::CUDA);
  done.record(c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(device));
  done.synchronize();
}

}  // namespace longlive
