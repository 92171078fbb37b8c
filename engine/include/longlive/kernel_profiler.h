#pragma once
// Per-kernel device time from CUPTI's activity API: which kernels one sampled block ran, by
// demangled name, grouped by the profiler region (ProfileScope) they were launched in, with count,
// total, mean and share. Kernels inside CUDA graphs are included and attributed to the region of
// the graph launch (one launch, one region).
//
// Sampling, not tracing: start() before a block, stop() after its launches, collect() once its
// work is done. While nothing samples, CUPTI records nothing and a ProfileScope pays one relaxed
// atomic load more. CUPTI attaches to the process at the first prepare() or start() and stays
// (attached, it keeps a little memory for every kernel the process runs): a front end samples
// only when someone looks at kernels (the studio: once its Kernels tab opens). Regions reach CUPTI
// as external correlation ids pushed by ProfileScope, on any thread, whether or not a
// RegionProfiler is active (so a block whose DiT replays CUDA graphs can be sampled too).
//
// CUPTI is opened at run time (libcupti.so.13: LibTorch's CUDA wheel ships it and already loads
// it): a build without CUDA or the CUPTI headers, a machine without a GPU or without the library
// gets a reason (KernelProfiler::unavailable_reason()) instead of a failure.
//
// This header stays light (no ATen, no CUPTI): EngineStats and the overlay include it.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace longlive {

// Kernels launched outside any ProfileScope.
inline constexpr std::string_view kNoRegion = "(no region)";

struct KernelRow {
  std::string name;       // demangled and shortened: no return type or parameters, long
                          // template argument lists collapsed to <...>
  std::string full_name;  // demangled in full (the raw symbol when it does not demangle)
  std::string region;     // ProfileScope region of the launch (kNoRegion outside any)
  int64_t count = 0;
  int64_t graph_count = 0;  // of count: run as nodes of a CUDA graph
  double total_ms = 0;
  double mean_ms = 0;
  double share = 0;  // of the sample's summed kernel time, 0..1
};

struct KernelTable {
  // Regions by their kernel time, largest first; within a region, kernels by total time.
  std::vector<KernelRow> rows;
  int64_t kernels = 0;        // kernel executions with timestamps
  int64_t graph_kernels = 0;  // of those: nodes of CUDA graphs
  double kernel_ms = 0;       // summed kernel durations (concurrent kernels each count)
  double window_ms = 0;       // first kernel start to last kernel end
  int64_t incomplete = 0;     // records without timestamps (still running at collect()): left out
  int64_t dropped = 0;        // records CUPTI had to drop: the table misses kernels
  double host_ms = 0;         // host time in start(), stop() and collect(): the sampling cost
  std::string unavailable;    // why there is no table; empty when there is one
};

// One kernel execution as CUPTI reports it (what tabulate_kernels() reads; tests make their own).
struct KernelRecord {
  std::string symbol;  // as reported: mangled, or a plain C name
  std::string region;
  uint64_t start_ns = 0, end_ns = 0;
  bool in_graph = false;
};

// Demangles a kernel symbol (abi::__cxa_demangle); names that are not mangled come back as they
// are.
std::string demangle_kernel_name(const std::string& symbol);
// A readable short form of a demangled kernel name of at most max_chars characters: drops the
// return type, the parameter list and common namespaces (at::native::, ...), then collapses
// template argument lists from the innermost out until it fits; cuts what still does not fit.
std::string shorten_kernel_name(std::string_view demangled, size_t max_chars = 72);
// Groups records by (region, kernel) into a table; shares are of the summed kernel time.
KernelTable tabulate_kernels(const std::vector<KernelRecord>& records);
// The table as text, as `longlive bench --kernels` prints it (max_rows per region, 0 = all).
std::string format_kernel_table(const KernelTable& table, size_t max_rows = 0);

// What one sample ran beyond another, kernel by kernel (by full name, regions merged): count
// and total ms of `with` minus `without`. `bench --vace --kernels`: what a VACE block adds to the
// plain block. Under concurrency kernels run longer, so the sum can exceed the wall-time cost.
struct KernelDifference {
  std::string name;       // shortened, as KernelRow::name
  std::string full_name;  // the key
  int64_t count = 0;
  double total_ms = 0;
};
// Rows whose count or time differs, the largest time difference (absolute) first.
std::vector<KernelDifference> kernel_difference(const KernelTable& with,
                                                const KernelTable& without);
// The rows as text (max_rows, 0 = all), with the totals of both tables' kernel time and window.
std::string format_kernel_difference(const KernelTable& with, const KernelTable& without,
                                     size_t max_rows = 0);

// The kernel names of CUPTI's records, one copy of each distinct name for the process, keyed by
// the text. (They were keyed by the address of CUPTI's name string, which is only valid while
// its record is: a pointer that changed from one sample to the next added a copy of the name at
// every sample, and a reused address would have named another kernel.) Bounded by the kernels
// the process runs, not by the samples taken.
class KernelNameTable {
 public:
  uint32_t intern(std::string_view name);  // null names are "(unnamed kernel)" at the caller
  const std::string& name(uint32_t id) const { return names_.at(id); }
  size_t size() const { return names_.size(); }

 private:
  std::deque<std::string> names_;                       // by id; a deque keeps them in place
  std::unordered_map<std::string_view, uint32_t> ids_;  // views into names_
};

class KernelProfiler {
 public:
  struct Options {
    // Correlate every CUDA runtime and driver API call with its region. On the H200 (CUDA 13,
    // 2026-12-04) tracing only the launch calls left every kernel without its region, so all
    // calls are traced by default; a sampled block still costs ~1 % of a block.
    // LONGLIVE_KERNELS_ALL_APIS=0 selects the launch calls only.
    bool all_apis = true;
  };

  // Whether this build has the CUPTI headers (built with CUDA and found them).
  static bool built_with_cupti();
  // Empty when kernels can be sampled in this process; otherwise why not ("built without CUDA",
  // "no CUDA device", "CUPTI not found: ..."). Cached after the first call.
  static std::string unavailable_reason();
  // Opens CUPTI, attaches it (registers its buffers) and pays CUPTI's first-enable cost,
  // recording nothing: call it before sampling (when a session opens, or when the kernels view
  // opens) so that the first sampled block is not the slow one. Idempotent; returns
  // unavailable_reason() or why CUPTI did not attach.
  static std::string prepare();
  // Detaches CUPTI from the process (cuptiFinalize) unless a sample is running; prepare() or
  // start() attaches it again (graph kernels are still listed: GPU test). Only where no other
  // thread uses CUDA meanwhile and the device is synchronised: in the studio (display and
  // decoder threads) it ended the process with "unspecified launch failure" (H100,
  // 2026-12-05), so the engine never calls it. False when nothing was detached.
  static bool release();
  static bool attached();

  explicit KernelProfiler(Options options);
  KernelProfiler();
  ~KernelProfiler();  // stops a running sample
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  // Starts recording every kernel launched on the device from now on (any thread). False when
  // kernels cannot be sampled or another KernelProfiler is sampling (last_error() says which).
  bool start();
  // Ends the sample: kernels launched after this are left out. (CUPTI keeps tracing until
  // collect(): the sampled kernels are mostly still queued; call collect() soon.)
  void stop();
  bool sampling() const;
  // Stops if needed, flushes CUPTI and tabulates the kernels launched between start() and
  // stop(). Call it once the sampled work has finished (after RegionProfiler::collect() or a
  // stream sync): records of kernels still running then count as `incomplete`. Without a sample
  // the table's `unavailable` says why.
  KernelTable collect();
  const std::string& last_error() const { return error_; }

 private:
  Options options_;
  bool sampling_ = false;
  bool sampled_ = false;  // start() succeeded since the last collect()
  double host_ms_ = 0;
  std::string error_;
};

}  // namespace longlive
