#include "runtime/side_stream.h"

#include <fmt/format.h>

#include "longlive/error.h"
#include "longlive/log.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <deque>
#include <map>
#include <utility>

#include "runtime/dedicated_stream.h"
#endif

namespace longlive {

#ifdef LONGLIVE_WITH_CUDA
namespace {

// One side stream per thread and device, made on first use and kept for the thread's life: a
// stream of our own (never one of LibTorch's pool, which another user may be capturing on), and
// the same one on every call so that LibTorch's per-stream cuBLAS workspace is made once, on an
// eager call before any graph capture uses it.
c10::cuda::CUDAStream side_stream_of(c10::DeviceIndex device, bool high_priority) {
  thread_local std::map<std::pair<c10::DeviceIndex, bool>, std::unique_ptr<DedicatedStream>>
      streams;
  std::unique_ptr<DedicatedStream>& stream = streams[{device, high_priority}];
  if (!stream) stream = std::make_unique<DedicatedStream>(device, high_priority);
  return stream->get();
}

}  // namespace

struct SideStream::Impl {
  c10::cuda::CUDAStream origin;
  c10::cuda::CUDAStream side;
  std::deque<at::cuda::CUDAEvent> marks;  // deque: marks stay put as more are added
};

bool SideStream::usable(c10::Device device) { return device.is_cuda(); }

SideStream::SideStream(c10::Device device, bool high_priority) {
  if (!device.is_cuda())
    throw Error(fmt::format("a side stream needs a CUDA device, not {}", device.str()));
  const c10::cuda::CUDAGuard guard(device);
  const c10::cuda::CUDAStream origin = c10::cuda::getCurrentCUDAStream(device.index());
  impl_.reset(new Impl{origin, side_stream_of(origin.device_index(), high_priority), {}});
  at::cuda::CUDAEvent fork;
  fork.record(impl_->origin);
  fork.block(impl_->side);
}

SideStream::~SideStream() {
  try {
    at::cuda::CUDAEvent join;
    join.record(impl_->side);
    join.block(impl_->origin);
  } catch (const std::exception& e) {
    // Only a broken context gets here; the next CUDA call reports it.
    log::error("joining the side stream failed: {}", e.what());
  }
}

void SideStream::run(const std::function<void()>& work) {
  const c10::cuda::CUDAStreamGuard guard(impl_->side);
  work();
}

size_t SideStream::mark() {
  impl_->marks.emplace_back();
  impl_->marks.back().record(impl_->side);
  return impl_->marks.size() - 1;
}

void SideStream::wait(size_t index) const {
  if (index >= impl_->marks.size())
    throw Error(fmt::format("side stream: no mark {} ({} recorded)", index, impl_->marks.size()));
  impl_->marks[index].block(c10::cuda::getCurrentCUDAStream(impl_->origin.device_index()));
}

#else

struct SideStream::Impl {};

bool SideStream::usable(c10::Device) { return false; }

SideStream::SideStream(c10::Device device, bool) {
  throw Error(
      fmt::format("a side stream needs CUDA, and this build has none (device {})", device.str()));
}

SideStream::~SideStream() = default;

void SideStream::run(const std::function<void()>& work) { work(); }

size_t SideStream::mark() { return 0; }

void SideStream::wait(size_t) const {}

#endif

}  // namespace longlive
