#pragma once
// Per-region timings of the engine's device work: the bench's per-region table and the studio's
// overlay read the same numbers.
//
// A RegionProfiler is made active on the calling thread; code marks regions with ProfileScope,
// which costs one thread-local load when no profiler is active. On CUDA each region records two
// events on the current stream (no host sync) and pushes an NVTX range (Nsight Systems shows the
// same names); collect() waits once for the last event and sums the elapsed times per region. On
// CPU the host clock measures the (synchronous) work.
#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace longlive {

struct RegionTimes {
  std::map<std::string, double> ms;  // summed per region name
  double span_ms = 0;                // first region start to last region end
  double covered_ms = 0;             // sum over regions
  // The part of the span that no region covers: launch gaps, host waits, unprofiled ops.
  double uncovered_fraction() const { return span_ms > 0 ? 1.0 - covered_ms / span_ms : 0.0; }
};

class RegionProfiler {
 public:
  explicit RegionProfiler(at::Device device);
  ~RegionProfiler();
  RegionProfiler(const RegionProfiler&) = delete;
  RegionProfiler& operator=(const RegionProfiler&) = delete;

  // Makes this profiler the calling thread's active one until deactivate() (or destruction).
  void activate();
  void deactivate();
  // Waits for the recorded work, returns the per-region sums since the last collect() and
  // starts over.
  RegionTimes collect();

  // Used by ProfileScope. Regions must not nest (each is timed on its own).
  size_t begin(const char* name);
  void end(size_t index);

  static RegionProfiler* active();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

namespace detail {
// Set while a KernelProfiler samples (kernel_profiler.h): ProfileScope then tags the CUDA launches
// of its thread with its region (a CUPTI external correlation id), whether or not a
// RegionProfiler is active.
extern std::atomic<bool> kernel_regions_on;
bool push_kernel_region(const char* name);  // false when nothing was pushed
void pop_kernel_region();
}  // namespace detail

// Marks a region while alive; nothing when no profiler is active on this thread and no
// KernelProfiler samples.
class ProfileScope {
 public:
  explicit ProfileScope(const char* name)
      : kernel_region_(detail::kernel_regions_on.load(std::memory_order_relaxed) &&
                       detail::push_kernel_region(name)),
        profiler_(RegionProfiler::active()),
        index_(profiler_ ? profiler_->begin(name) : 0) {}
  ~ProfileScope() {
    if (profiler_) profiler_->end(index_);
    if (kernel_region_) detail::pop_kernel_region();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  bool kernel_region_;  // pushed a region for the kernel profiler: pop it, even if it stopped
  RegionProfiler* profiler_;
  size_t index_;
};

}  // namespace longlive
