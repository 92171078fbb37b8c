#include "longlive/profiler.h"

#include <ATen/ATen.h>
#include <c10/core/Event.h>

#include <algorithm>

#ifdef LONGLIVE_WITH_CUDA
#include <nvtx3/nvToolsExt.h>  // header-only: ranges show up in Nsight Systems
#endif

namespace longlive {
namespace {
thread_local RegionProfiler* active_profiler = nullptr;
}

struct RegionProfiler::Impl {
  explicit Impl(at::Device d) : device(d) {}
  at::Device device;
  struct Region {
    std::string name;
    size_t begin_event = 0, end_event = 0;
    std::chrono::steady_clock::time_point host_begin, host_end;
  };
  std::vector<Region> regions;
  // Events are reused across collect() calls: creating CUDA events per region would cost more
  // than recording them.
  std::vector<std::unique_ptr<c10::Event>> events;
  size_t used_events = 0;

  size_t next_event() {
    if (used_events == events.size()) {
      events.push_back(
          std::make_unique<c10::Event>(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT));
    }
    return used_events++;
  }
  void record(size_t event) {
    events[event]->record(c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
                              ->getStream(c10::Device(c10::DeviceType::CUDA, device_index())));
  }
  c10::DeviceIndex device_index() const { return device.index() < 0 ? 0 : device.index(); }
};

RegionProfiler::RegionProfiler(at::Device device) : impl_(std::make_unique<Impl>(device)) {}

RegionProfiler::~RegionProfiler() { deactivate(); }

void RegionProfiler::activate() { active_profiler = this; }

void RegionProfiler::deactivate() {
  if (active_profiler == this) active_profiler = nullptr;
}

RegionProfiler* RegionProfiler::active() { return active_profiler; }

size_t RegionProfiler::begin(const char* name) {
  Impl::Region region;
  region.name = name;
  if (impl_->device.is_cuda()) {
#ifdef LONGLIVE_WITH_CUDA
    nvtxRangePushA(name);
#endif
    region.begin_event = impl_->next_event();
    impl_->record(region.begin_event);
  } else {
    region.host_begin = std::chrono::steady_clock::now();
  }
  impl_->regions.push_back(std::move(region));
  return impl_->regions.size() - 1;
}

void RegionProfiler::end(size_t index) {
  auto& region = impl_->regions.at(index);
  if (impl_->device.is_cuda()) {
    region.end_event = impl_->next_event();
    impl_->record(region.end_event);
#ifdef LONGLIVE_WITH_CUDA
    nvtxRangePop();
#endif
  } else {
    region.host_end = std::chrono::steady_clock::now();
  }
}

RegionTimes RegionProfiler::collect() {
  RegionTimes times;
  auto& regions = impl_->regions;
  if (regions.empty()) return times;
  const bool cuda = impl_->device.is_cuda();
  if (cuda) impl_->events[regions.back().end_event]->synchronize();
  auto elapsed = [&](const Impl::Region& from, size_t from_event, const Impl::Region& to,
                     size_t to_event) {
    if (cuda) return impl_->events[from_event]->elapsedTime(*impl_->events[to_event]);
    (void)to_event;
    return std::chrono::duration<double, std::milli>(to.host_end - from.host_begin).count();
  };
  for (const auto& r : regions) {
    const double ms = elapsed(r, r.begin_event, r, r.end_event);
    times.ms[r.name] += ms;
    times.covered_ms += ms;
  }
  times.span_ms = elapsed(regions.front(), regions.front().begin_event, regions.back(),
                          regions.back().end_event);
  regions.clear();
  impl_->used_events = 0;
  return times;
}

}  // namespace longlive
