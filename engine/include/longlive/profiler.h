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
#include <cstddef>
#include <cstdint>
#include <deque>
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

// ---- Device timers and memory
// Device-side timing: CUDA events on the current stream when the device is CUDA, a host clock
// (after the work is done: CPU ops are synchronous) otherwise. Also peak-memory queries.
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
  // LibTorch's CUDA caching allocator: bytes in tensors and bytes it holds from the driver, now
  // and at their peak since the last reset_peak_memory().
  double allocated_gib = 0;
  double peak_allocated_gib = 0;
  double reserved_gib = 0;
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
// Blocks until the work queued so far on `device`'s current stream has run (a no-op on the CPU);
// other streams (a decoder's, an encoder's side stream) go on.
void wait_for_current_stream(at::Device device);

// ---- Block latency history
// The block-latency history the studio's overlay plots: the last N blocks of a session with what
// happened at each (prompt switch, transition, preset change). The Engine keeps one per session;
// a preset change restarts the video but not the history (the change is marked instead), so the
// plot shows the latency before and after it side by side.
struct BlockSample {
  double ms = 0;               // wall time of the block (command to DiT done)
  bool prompt_switch = false;  // first block after a cut or the start of a transition
  bool in_transition = false;  // conditioned on an interpolated prompt
  std::string preset_change;   // the new preset's name on the first block under it, else empty
};

class LatencyHistory {
 public:
  static constexpr size_t kDefaultCapacity = 200;
  explicit LatencyHistory(size_t capacity = kDefaultCapacity);

  void add(BlockSample sample);  // drops the oldest beyond capacity
  void clear();

  const std::deque<BlockSample>& blocks() const { return blocks_; }  // oldest first
  size_t size() const { return blocks_.size(); }
  bool empty() const { return blocks_.empty(); }
  size_t capacity() const { return capacity_; }
  int64_t added() const { return added_; }  // since the last clear(), dropped ones included

  std::vector<float> ms() const;  // for plotting
  int prompt_switches() const;
  int transition_blocks() const;
  int preset_changes() const;

 private:
  size_t capacity_;
  std::deque<BlockSample> blocks_;
  int64_t added_ = 0;
};

// ---- Output drift
// How far one video is from another: the drift figures of `longlive bench --drift-vs`.
// ||a - reference|| / ||reference|| over all elements (float64 accumulation).
double relative_l2(const at::Tensor& a, const at::Tensor& reference);

// Frames [N, 3, H, W] (or [N, H, W, 3|4] uint8) in [0, 1] (or 0..255): PSNR in dB over all
// pixels and channels; +infinity when they are equal.
double psnr(const at::Tensor& a, const at::Tensor& b);

// Mean SSIM over frames, on luma (BT.601), 11x11 Gaussian window (sigma 1.5), data range 1,
// C1 = 0.01^2, C2 = 0.03^2 (Wang et al. 2004), valid windows only.
double ssim(const at::Tensor& a, const at::Tensor& b);

}  // namespace longlive
