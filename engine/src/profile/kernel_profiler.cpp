#include "longlive/kernel_profiler.h"

#include <cxxabi.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "longlive/elapsed.h"
#include "longlive/profiler.h"

#if defined(LONGLIVE_WITH_CUDA) && defined(LONGLIVE_WITH_CUPTI)
#define LONGLIVE_KERNELS 1
#include <ATen/Context.h>
#include <cupti.h>
#include <dlfcn.h>

#include "core/loaded_symbol.h"
#endif

namespace longlive {

namespace detail {
std::atomic<bool> kernel_regions_on{false};
}

namespace {

#ifdef LONGLIVE_KERNELS
// Region names by id: CUPTI's external correlation ids are numbers (ids start at 1).
class RegionNames {
 public:
  uint64_t id(std::string_view name) {
    std::lock_guard lock(mutex_);
    if (const auto it = ids_.find(name); it != ids_.end()) return it->second;
    names_.emplace_back(name);
    const uint64_t id = names_.size();
    ids_.emplace(names_.back(), id);  // the view points into the deque: stable
    return id;
  }
  std::string name(uint64_t id) const {
    std::lock_guard lock(mutex_);
    return id >= 1 && id <= names_.size() ? names_[id - 1] : std::string(kNoRegion);
  }

 private:
  mutable std::mutex mutex_;
  std::deque<std::string> names_;
  std::unordered_map<std::string_view, uint64_t> ids_;
};

RegionNames& region_names() {
  static RegionNames* names = new RegionNames;  // never destroyed: scopes may end at exit
  return *names;
}
#endif

// Erases the namespace qualifier `ns` ("at::native::") wherever it starts a name (not inside
// another identifier: "format::" keeps its "at::").
void erase_namespace(std::string& s, std::string_view ns) {
  for (size_t at = s.find(ns); at != std::string::npos; at = s.find(ns, at)) {
    const bool starts_name = ns.front() == '(' || at == 0 ||
                             !(std::isalnum(static_cast<unsigned char>(s[at - 1])) ||
                               s[at - 1] == '_' || s[at - 1] == ':');
    if (starts_name) {
      s.erase(at, ns.size());
    } else {
      at += ns.size();
    }
  }
}

// The nesting depth of the deepest '<' ... '>' group; -1 when they do not balance (operator<).
int template_depth(const std::string& s) {
  int depth = 0, deepest = 0;
  for (const char c : s) {
    if (c == '<') deepest = std::max(deepest, ++depth);
    if (c == '>' && --depth < 0) return -1;
  }
  return depth == 0 ? deepest : -1;
}

// Replaces the contents of every template argument list opened at nesting `level` with "...".
std::string collapse_level(const std::string& s, int level) {
  std::string out;
  out.reserve(s.size());
  int depth = 0;
  for (const char c : s) {
    if (c == '<') {
      ++depth;
      if (depth < level) out += c;
      if (depth == level) out += "<...";
    } else if (c == '>') {
      if (depth <= level) out += c;
      --depth;
    } else if (depth < level) {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string demangle_kernel_name(const std::string& symbol) {
  if (symbol.rfind("_Z", 0) != 0) return symbol;
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> demangled(
      abi::__cxa_demangle(symbol.c_str(), nullptr, nullptr, &status), &std::free);
  return status == 0 && demangled ? std::string(demangled.get()) : symbol;
}

std::string shorten_kernel_name(std::string_view demangled, size_t max_chars) {
  std::string s(demangled);
  if (s.rfind("void ", 0) == 0) s.erase(0, 5);  // kernels return void
  // The parameter list: the parenthesised group that ends the name.
  if (!s.empty() && s.back() == ')') {
    int depth = 0;
    for (size_t i = s.size(); i-- > 0;) {
      if (s[i] == ')') ++depth;
      if (s[i] == '(' && --depth == 0) {
        if (i > 0) s.erase(i);
        break;
      }
    }
  }
  for (const std::string_view ns :
       {"(anonymous namespace)::", "at::native::", "at::cuda::", "at::", "c10::"}) {
    erase_namespace(s, ns);
  }
  for (size_t at = s.find("> >"); at != std::string::npos; at = s.find("> >", at)) {
    s.erase(at + 1, 1);  // the demangler's "> >"
  }
  // Innermost template arguments go first: the outer names say the most.
  const int deepest = template_depth(s);
  for (int level = deepest; level >= 1 && s.size() > max_chars; --level) {
    s = collapse_level(s, level);
  }
  if (s.size() > max_chars && max_chars > 3) s = s.substr(0, max_chars - 3) + "...";
  return s;
}

KernelTable tabulate_kernels(const std::vector<KernelRecord>& records) {
  KernelTable table;
  struct Sum {
    int64_t count = 0, graph = 0;
    double ms = 0;
  };
  std::map<std::string, std::map<std::string, Sum>> by_region;  // region -> symbol -> sum
  uint64_t first = UINT64_MAX, last = 0;
  for (const KernelRecord& r : records) {
    if (r.start_ns == 0 || r.end_ns < r.start_ns) {
      ++table.incomplete;
      continue;
    }
    Sum& sum = by_region[r.region.empty() ? std::string(kNoRegion) : r.region][r.symbol];
    const double ms = static_cast<double>(r.end_ns - r.start_ns) * 1e-6;
    sum.count += 1;
    sum.graph += r.in_graph ? 1 : 0;
    sum.ms += ms;
    table.kernels += 1;
    table.graph_kernels += r.in_graph ? 1 : 0;
    table.kernel_ms += ms;
    first = std::min(first, r.start_ns);
    last = std::max(last, r.end_ns);
  }
  if (table.kernels > 0) table.window_ms = static_cast<double>(last - first) * 1e-6;
  struct Region {
    double ms = 0;
    std::vector<KernelRow> rows;
  };
  std::vector<Region> regions;
  for (const auto& [region, kernels] : by_region) {
    Region group;
    for (const auto& [symbol, sum] : kernels) {
      KernelRow row;
      row.full_name = demangle_kernel_name(symbol);
      row.name = shorten_kernel_name(row.full_name);
      row.region = region;
      row.count = sum.count;
      row.graph_count = sum.graph;
      row.total_ms = sum.ms;
      row.mean_ms = sum.ms / static_cast<double>(sum.count);
      row.share = table.kernel_ms > 0 ? sum.ms / table.kernel_ms : 0;
      group.ms += sum.ms;
      group.rows.push_back(std::move(row));
    }
    std::stable_sort(
        group.rows.begin(), group.rows.end(),
        [](const KernelRow& a, const KernelRow& b) { return a.total_ms > b.total_ms; });
    regions.push_back(std::move(group));
  }
  std::stable_sort(regions.begin(), regions.end(),
                   [](const Region& a, const Region& b) { return a.ms > b.ms; });
  for (Region& region : regions) {
    for (KernelRow& row : region.rows) table.rows.push_back(std::move(row));
  }
  return table;
}

std::vector<KernelDifference> kernel_difference(const KernelTable& with,
                                                const KernelTable& without) {
  std::map<std::string, KernelDifference> by_name;
  auto add = [&](const KernelTable& table, int sign) {
    for (const KernelRow& r : table.rows) {
      KernelDifference& d = by_name[r.full_name];
      d.full_name = r.full_name;
      d.name = r.name;
      d.count += sign * r.count;
      d.total_ms += sign * r.total_ms;
    }
  };
  add(with, 1);
  add(without, -1);
  std::vector<KernelDifference> rows;
  for (auto& [name, d] : by_name)
    if (d.count != 0 || std::abs(d.total_ms) > 1e-9) rows.push_back(std::move(d));
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::abs(a.total_ms) > std::abs(b.total_ms);
  });
  return rows;
}

std::string format_kernel_difference(const KernelTable& with, const KernelTable& without,
                                     size_t max_rows) {
  if (!with.unavailable.empty() || !without.unavailable.empty())
    return fmt::format("kernels        no difference: {}\n",
                       with.unavailable.empty() ? without.unavailable : with.unavailable);
  std::string out = fmt::format(
      "kernels        difference: {:+d} kernels, {:+.1f} ms of kernel time ({:.1f} - {:.1f}), "
      "{:+.1f} ms of window ({:.1f} - {:.1f})\n",
      with.kernels - without.kernels, with.kernel_ms - without.kernel_ms, with.kernel_ms,
      without.kernel_ms, with.window_ms - without.window_ms, with.window_ms, without.window_ms);
  constexpr size_t kNameWidth = 72;
  out += fmt::format("    {:<{}} {:>7} {:>9}\n", "kernel", kNameWidth, "count", "total ms");
  const std::vector<KernelDifference> rows = kernel_difference(with, without);
  for (size_t i = 0; i < rows.size() && (max_rows == 0 || i < max_rows); ++i)
    out += fmt::format("    {:<{}} {:>+7d} {:>+9.2f}\n",
                       shorten_kernel_name(rows[i].full_name, kNameWidth), kNameWidth,
                       rows[i].count, rows[i].total_ms);
  if (max_rows != 0 && rows.size() > max_rows)
    out += fmt::format("    ({} more kernels)\n", rows.size() - max_rows);
  return out;
}

uint32_t KernelNameTable::intern(std::string_view name) {
  if (const auto it = ids_.find(name); it != ids_.end()) return it->second;
  const auto id = static_cast<uint32_t>(names_.size());
  names_.emplace_back(name);
  ids_.emplace(names_.back(), id);
  return id;
}

std::string format_kernel_table(const KernelTable& table, size_t max_rows) {
  if (!table.unavailable.empty())
    return fmt::format("kernels        unavailable: {}\n", table.unavailable);
  std::string out = fmt::format(
      "kernels        one block: {} kernels ({} in CUDA graphs), {:.1f} ms of kernel time in a "
      "{:.1f} ms window (CUPTI); sampling cost {:.2f} ms on the host\n",
      table.kernels, table.graph_kernels, table.kernel_ms, table.window_ms, table.host_ms);
  if (table.dropped > 0 || table.incomplete > 0)
    out += fmt::format("  incomplete: {} records dropped by CUPTI, {} without timestamps\n",
                       table.dropped, table.incomplete);
  constexpr size_t kNameWidth = 72;
  out += fmt::format("  {:<{}} {:>7} {:>9} {:>9} {:>7}\n", "region / kernel", kNameWidth + 2,
                     "count", "mean ms", "total ms", "share");
  for (size_t i = 0; i < table.rows.size();) {
    const std::string& region = table.rows[i].region;
    size_t end = i;
    int64_t count = 0;
    double ms = 0;
    while (end < table.rows.size() && table.rows[end].region == region) {
      count += table.rows[end].count;
      ms += table.rows[end].total_ms;
      ++end;
    }
    const double share = table.kernel_ms > 0 ? ms / table.kernel_ms : 0;
    out += fmt::format("  {:<{}} {:>7} {:>9} {:>9.2f} {:>6.1f}%\n", region, kNameWidth + 2, count,
                       "", ms, 100 * share);
    for (size_t k = i; k < end && (max_rows == 0 || k - i < max_rows); ++k) {
      const KernelRow& r = table.rows[k];
      out += fmt::format("    {:<{}} {:>7} {:>9.3f} {:>9.2f} {:>6.1f}%\n",
                         shorten_kernel_name(r.full_name, kNameWidth), kNameWidth, r.count,
                         r.mean_ms, r.total_ms, 100 * r.share);
    }
    if (max_rows != 0 && end - i > max_rows)
      out += fmt::format("    ({} more kernels)\n", end - i - max_rows);
    i = end;
  }
  return out;
}

#ifdef LONGLIVE_KERNELS

namespace {

// CUPTI's entry points, resolved at run time (no link-time dependency on libcupti).
struct CuptiApi {
  decltype(&cuptiGetVersion) get_version = nullptr;
  decltype(&cuptiGetResultString) result_string = nullptr;
  decltype(&cuptiGetCallbackName) callback_name = nullptr;
  decltype(&cuptiGetTimestamp) timestamp = nullptr;
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks = nullptr;
  decltype(&cuptiActivityEnable) enable = nullptr;
  decltype(&cuptiActivityDisable) disable = nullptr;
  decltype(&cuptiActivityEnableRuntimeApi) enable_runtime_api = nullptr;
  decltype(&cuptiActivityEnableDriverApi) enable_driver_api = nullptr;
  decltype(&cuptiActivityFlushAll) flush_all = nullptr;
  decltype(&cuptiActivityGetNextRecord) next_record = nullptr;
  decltype(&cuptiActivityGetNumDroppedRecords) dropped_records = nullptr;
  decltype(&cuptiActivityPushExternalCorrelationId) push_external = nullptr;
  decltype(&cuptiActivityPopExternalCorrelationId) pop_external = nullptr;
  decltype(&cuptiFinalize) finalize = nullptr;
};

constexpr CUpti_ExternalCorrelationKind kRegionKind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
constexpr size_t kBufferBytes = 8 << 20;  // a few thousand kernel records and their API calls

// Opens libcupti: the copy LibTorch already loaded (libtorch_cpu needs libcupti.so.13), else
// $LONGLIVE_CUPTI_LIBRARY, the one CMake found, or the loader's search.
void* open_cupti(std::string& why) {
  const std::string soname = fmt::format("libcupti.so.{}", CUDA_VERSION / 1000);
  std::vector<std::pair<std::string, int>> tries;
  if (const char* env = std::getenv("LONGLIVE_CUPTI_LIBRARY"); env && *env)
    tries.emplace_back(env, RTLD_NOW);
  tries.emplace_back(soname, RTLD_NOW | RTLD_NOLOAD);
#ifdef LONGLIVE_CUPTI_LIBRARY_HINT
  tries.emplace_back(LONGLIVE_CUPTI_LIBRARY_HINT, RTLD_NOW);
#endif
  tries.emplace_back(soname, RTLD_NOW);
  std::string errors;
  for (const auto& [path, flags] : tries) {
    if (void* handle = dlopen(path.c_str(), flags | RTLD_LOCAL)) return handle;
    if ((flags & RTLD_NOLOAD) == 0) {
      const char* error = dlerror();
      errors += fmt::format("{}{}", errors.empty() ? "" : "; ", error ? error : path);
    }
  }
  why = "CUPTI not found (" + errors + ")";
  return nullptr;
}

// Enabling only the launch calls keeps the API records (needed for the external correlation)
// to a few per kernel: cudaLaunchKernel, cuLaunchKernelEx, cudaGraphLaunch, ...
bool is_launch_call(const char* name) {
  return name != nullptr && std::strstr(name, "Launch") != nullptr &&
         std::strstr(name, "HostFunc") == nullptr;
}

// The process's CUPTI activity state: CUPTI's buffers and callbacks are process-wide, so one
// tracer serves every KernelProfiler, one sample at a time.
class Tracer {
 public:
  static Tracer& get() {
    static Tracer* tracer = new Tracer;  // never destroyed: CUPTI may call back at exit
    return *tracer;
  }

  // "" when CUPTI is loaded and has what a sample needs, else why not. Once per process.
  const std::string& init() {
    std::call_once(once_, [this] { reason_ = open(); });
    return reason_;
  }
  const CuptiApi* api() const { return ready_.load(std::memory_order_acquire) ? &api_ : nullptr; }

  bool begin(const void* owner, bool all_apis, std::string& error) {
    if (error = attach(); !error.empty()) return false;
    {
      std::lock_guard lock(mutex_);
      if (owner_ != nullptr && owner_ != owner) {
        error = "another KernelProfiler is sampling";
        return false;
      }
      owner_ = owner;
      recording_ = false;  // what the flush below delivers is stale
    }
    api_.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    {
      std::lock_guard lock(mutex_);
      kernels_.clear();
      external_.clear();
      api_start_.clear();
      stop_ns_ = UINT64_MAX;
      dropped_ = 0;
      recording_ = true;
    }
    CUptiResult r = api_.enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    if (r == CUPTI_SUCCESS) r = api_.enable(CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION);
    all_apis_ = all_apis || !set_launch_apis(1);
    if (r == CUPTI_SUCCESS && all_apis_) {
      r = api_.enable(CUPTI_ACTIVITY_KIND_RUNTIME);
      if (r == CUPTI_SUCCESS) r = api_.enable(CUPTI_ACTIVITY_KIND_DRIVER);
    }
    if (r != CUPTI_SUCCESS) {
      error = "CUPTI refused kernel tracing: " + result(r);
      finish(owner);
      return false;
    }
    detail::kernel_regions_on.store(true, std::memory_order_release);
    return true;
  }

  // No more launches are correlated. Tracing goes on until finish(): the kernels launched so far
  // may not have run yet, and the launch records tell the later launches apart by their time.
  void mark_stop() {
    detail::kernel_regions_on.store(false, std::memory_order_release);
    uint64_t now = 0;
    api_.timestamp(&now);
    std::lock_guard lock(mutex_);
    stop_ns_ = now;
  }

  struct Drained {
    std::vector<KernelRecord> records;
    int64_t dropped = 0;
  };
  // Stops tracing, flushes CUPTI and hands out the kernels launched before mark_stop().
  Drained finish(const void* owner) {
    Drained out;
    detail::kernel_regions_on.store(false, std::memory_order_release);
    if (all_apis_) {
      api_.disable(CUPTI_ACTIVITY_KIND_RUNTIME);
      api_.disable(CUPTI_ACTIVITY_KIND_DRIVER);
    } else {
      set_launch_apis(0);
    }
    api_.disable(CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION);
    api_.disable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    api_.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    std::lock_guard lock(mutex_);
    if (owner_ != owner) return out;
    owner_ = nullptr;
    recording_ = false;
    out.dropped = dropped_;
    out.records.reserve(kernels_.size());
    for (const Raw& k : kernels_) {
      // A kernel shares its correlation id with its launch call (a graph's kernels with the
      // graph launch): launched after stop(), it is not part of the sample.
      if (const auto api = api_start_.find(k.correlation);
          api != api_start_.end() && api->second > stop_ns_)
        continue;
      const auto ext = external_.find(k.correlation);
      out.records.push_back(
          {names_.name(k.name),
           ext == external_.end() ? std::string(kNoRegion) : region_names().name(ext->second),
           k.start, k.end, k.graph});
    }
    kernels_.clear();
    external_.clear();
    api_start_.clear();
    return out;
  }

  std::string result(CUptiResult r) const {
    const char* text = nullptr;
    if (api_.result_string) api_.result_string(r, &text);
    return text ? text : fmt::format("CUPTI error {}", static_cast<int>(r));
  }

 private:
  struct Raw {
    uint32_t name;  // id in names_
    uint64_t start, end;
    uint32_t correlation;
    bool graph;
  };

  std::string open() {
    if (!at::hasCUDA()) return "no CUDA device";
    std::string why;
    void* lib = open_cupti(why);
    if (lib == nullptr) return why;
    std::string missing;
    bool ok = resolve_symbol(lib, "cuptiGetVersion", api_.get_version, missing);
    ok = resolve_symbol(lib, "cuptiGetResultString", api_.result_string, missing) && ok;
    ok = resolve_symbol(lib, "cuptiGetCallbackName", api_.callback_name, missing) && ok;
    ok = resolve_symbol(lib, "cuptiGetTimestamp", api_.timestamp, missing) && ok;
    ok = resolve_symbol(lib, "cuptiActivityRegisterCallbacks", api_.register_callbacks, missing) &&
         ok;
    ok = resolve_symbol(lib, "cuptiActivityEnable", api_.enable, missing) && ok;
    ok = resolve_symbol(lib, "cuptiActivityDisable", api_.disable, missing) && ok;
    ok = resolve_symbol(lib, "cuptiActivityEnableRuntimeApi", api_.enable_runtime_api, missing) &&
         ok;
    ok = resolve_symbol(lib, "cuptiActivityEnableDriverApi", api_.enable_driver_api, missing) && ok;
    ok = resolve_symbol(lib, "cuptiActivityFlushAll", api_.flush_all, missing) && ok;
    ok = resolve_symbol(lib, "cuptiActivityGetNextRecord", api_.next_record, missing) && ok;
    ok = resolve_symbol(lib, "cuptiActivityGetNumDroppedRecords", api_.dropped_records, missing) &&
         ok;
    ok = resolve_symbol(lib, "cuptiActivityPushExternalCorrelationId", api_.push_external,
                        missing) &&
         ok;
    ok = resolve_symbol(lib, "cuptiActivityPopExternalCorrelationId", api_.pop_external, missing) &&
         ok;
    if (!ok) return fmt::format("CUPTI has no {}", missing);
    uint32_t version = 0;
    api_.get_version(&version);
    // Records are read through this build's structs: the library must be of the same major.
    if (version / 10000 != CUPTI_API_VERSION / 10000)
      return fmt::format("CUPTI API {} at run time, built for {}", version, CUPTI_API_VERSION);
    for (uint32_t cbid = 1; cbid < CUPTI_RUNTIME_TRACE_CBID_SIZE; ++cbid) {
      const char* name = nullptr;
      if (api_.callback_name(CUPTI_CB_DOMAIN_RUNTIME_API, cbid, &name) == CUPTI_SUCCESS &&
          is_launch_call(name))
        runtime_launches_.push_back(cbid);
    }
    for (uint32_t cbid = 1; cbid < CUPTI_DRIVER_TRACE_CBID_SIZE; ++cbid) {
      const char* name = nullptr;
      if (api_.callback_name(CUPTI_CB_DOMAIN_DRIVER_API, cbid, &name) == CUPTI_SUCCESS &&
          is_launch_call(name))
        driver_launches_.push_back(cbid);
    }
    // Optional: without it CUPTI stays attached once a sample attached it.
    api_.finalize = reinterpret_cast<decltype(api_.finalize)>(dlsym(lib, "cuptiFinalize"));
    // Not attached yet: prepare() or a sample attaches CUPTI, asking why not does not.
    ready_.store(true, std::memory_order_release);
    return {};
  }

 public:
  // Attaches CUPTI to the process (registers the activity buffers): at the first prepare() or
  // sample, and again after a detach(). "" or why not.
  std::string attach() {
    std::lock_guard lock(attach_mutex_);
    if (attached_) return {};
    const CUptiResult r = api_.register_callbacks(&buffer_requested, &buffer_completed);
    if (r != CUPTI_SUCCESS) return "CUPTI refused its activity buffers: " + result(r);
    attached_ = true;
    warm_ = false;
    return {};
  }

  // Detaches CUPTI (cuptiFinalize), unless a sample is running or this CUPTI cannot. Attached,
  // CUPTI keeps a few small allocations for every kernel the process runs, sampled or not
  // (~45 KiB per DiT block, docs/reliability.md); detached, it keeps nothing. The caller has
  // synchronised the device (CUPTI's condition for a safe detach).
  bool detach() {
    std::lock_guard lock(attach_mutex_);
    if (!attached_ || api_.finalize == nullptr) return false;
    {
      std::lock_guard records(mutex_);
      if (owner_ != nullptr) return false;
    }
    api_.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    if (api_.finalize() != CUPTI_SUCCESS) return false;
    attached_ = false;
    return true;
  }

  bool attached() {
    std::lock_guard lock(attach_mutex_);
    return attached_;
  }
  // Whether CUPTI's first enable since it attached (the slow one) is still to come.
  bool needs_warmup() {
    std::lock_guard lock(attach_mutex_);
    return attached_ && !warm_;
  }
  void warmed() {
    std::lock_guard lock(attach_mutex_);
    warm_ = attached_;
  }

 private:
  // Turns tracing of the launch calls on or off; false when CUPTI refuses one (then all APIs).
  bool set_launch_apis(uint8_t on) {
    if (runtime_launches_.empty() || driver_launches_.empty()) return false;
    bool ok = true;
    for (const uint32_t cbid : runtime_launches_)
      ok = api_.enable_runtime_api(cbid, on) == CUPTI_SUCCESS && ok;
    for (const uint32_t cbid : driver_launches_)
      ok = api_.enable_driver_api(cbid, on) == CUPTI_SUCCESS && ok;
    return ok;
  }

  static void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    Tracer& t = get();
    {
      std::lock_guard lock(t.pool_mutex_);
      if (!t.pool_.empty()) {
        *buffer = t.pool_.back();
        t.pool_.pop_back();
      } else {
        *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
      }
    }
    *size = *buffer ? kBufferBytes : 0;
    *max_records = 0;  // as many as fit
  }

  static void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t* buffer,
                                        size_t size, size_t valid) {
    Tracer& t = get();
    if (buffer == nullptr) return;
    t.parse(buffer, valid);
    size_t dropped = 0;
    if (t.api_.dropped_records(context, stream, &dropped) == CUPTI_SUCCESS && dropped > 0) {
      std::lock_guard lock(t.mutex_);
      if (t.recording_) t.dropped_ += static_cast<int64_t>(dropped);
    }
    std::lock_guard lock(t.pool_mutex_);
    if (size == kBufferBytes && t.pool_.size() < 8) {
      t.pool_.push_back(buffer);
    } else {
      std::free(buffer);
    }
  }

  void parse(uint8_t* buffer, size_t valid) {
    std::lock_guard lock(mutex_);
    CUpti_Activity* record = nullptr;
    while (api_.next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
      if (!recording_) continue;
      switch (record->kind) {
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
        case CUPTI_ACTIVITY_KIND_KERNEL: {
          const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
          kernels_.push_back(
              {intern(k->name), k->start, k->end, k->correlationId, k->graphId != 0});
          break;
        }
        case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
          const auto* e = reinterpret_cast<const CUpti_ActivityExternalCorrelation*>(record);
          if (e->externalKind == kRegionKind) external_[e->correlationId] = e->externalId;
          break;
        }
        case CUPTI_ACTIVITY_KIND_RUNTIME:
        case CUPTI_ACTIVITY_KIND_DRIVER: {
          const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(record);
          api_start_[a->correlationId] = a->start;
          break;
        }
        default:
          break;
      }
    }
  }

  // By the name's text: CUPTI's name pointer is valid only as long as its record.
  uint32_t intern(const char* name) { return names_.intern(name ? name : "(unnamed kernel)"); }

  std::once_flag once_;
  std::string reason_;
  CuptiApi api_;
  std::atomic<bool> ready_{false};
  std::vector<uint32_t> runtime_launches_, driver_launches_;
  bool all_apis_ = false;  // of the running sample

  std::mutex attach_mutex_;  // attach/detach; taken before mutex_, never while CUPTI calls back
  bool attached_ = false;
  bool warm_ = false;  // a sample ran since the last attach

  std::mutex mutex_;  // what CUPTI's buffer thread fills; never held while calling CUPTI
  const void* owner_ = nullptr;
  bool recording_ = false;
  std::vector<Raw> kernels_;
  std::unordered_map<uint32_t, uint64_t> external_;   // API correlation id -> region id
  std::unordered_map<uint32_t, uint64_t> api_start_;  // launch call's correlation id -> start
  uint64_t stop_ns_ = UINT64_MAX;                     // CUPTI's clock at mark_stop()
  int64_t dropped_ = 0;
  KernelNameTable names_;

  std::mutex pool_mutex_;
  std::vector<uint8_t*> pool_;  // completed buffers for reuse
};

}  // namespace

namespace detail {
bool push_kernel_region(const char* name) {
  const CuptiApi* api = Tracer::get().api();
  return api != nullptr &&
         api->push_external(kRegionKind, region_names().id(name)) == CUPTI_SUCCESS;
}
void pop_kernel_region() {
  if (const CuptiApi* api = Tracer::get().api()) {
    uint64_t id = 0;
    api->pop_external(kRegionKind, &id);
  }
}
}  // namespace detail

bool KernelProfiler::built_with_cupti() { return true; }

std::string KernelProfiler::unavailable_reason() { return Tracer::get().init(); }

#else  // without CUPTI: the same API, reporting why

namespace detail {
bool push_kernel_region(const char*) { return false; }
void pop_kernel_region() {}
}  // namespace detail

bool KernelProfiler::built_with_cupti() { return false; }

std::string KernelProfiler::unavailable_reason() {
#ifdef LONGLIVE_WITH_CUDA
  return "built without the CUPTI headers";
#else
  return "built without CUDA";
#endif
}

#endif

std::string KernelProfiler::prepare() {
  std::string reason = unavailable_reason();
  if (!reason.empty()) return reason;
#ifdef LONGLIVE_KERNELS
  Tracer& tracer = Tracer::get();
  if (reason = tracer.attach(); !reason.empty()) return reason;
  if (tracer.needs_warmup()) {
    KernelProfiler warm;
    if (warm.start()) warm.collect();  // CUPTI's first enable is the slow one
    tracer.warmed();
  }
#endif
  return reason;
}

bool KernelProfiler::release() {
#ifdef LONGLIVE_KERNELS
  return unavailable_reason().empty() && Tracer::get().detach();
#else
  return false;
#endif
}

bool KernelProfiler::attached() {
#ifdef LONGLIVE_KERNELS
  return unavailable_reason().empty() && Tracer::get().attached();
#else
  return false;
#endif
}

KernelProfiler::KernelProfiler(Options options) : options_(options) {
  if (const char* all = std::getenv("LONGLIVE_KERNELS_ALL_APIS"); all && *all)
    options_.all_apis = std::string(all) != "0";
}

KernelProfiler::KernelProfiler() : KernelProfiler(Options{}) {}

KernelProfiler::~KernelProfiler() {
  if (sampled_) collect();
}

bool KernelProfiler::start() {
  if (sampling_) return true;
  const auto t0 = std::chrono::steady_clock::now();
  error_ = unavailable_reason();
  if (!error_.empty()) return false;
#ifdef LONGLIVE_KERNELS
  if (sampled_) collect();  // a sample nobody collected: drop it
  if (!Tracer::get().begin(this, options_.all_apis, error_)) return false;
  sampling_ = true;
  sampled_ = true;
  host_ms_ = ms_since(t0);
  return true;
#else
  (void)t0;
  return false;
#endif
}

void KernelProfiler::stop() {
  if (!sampling_) return;
  const auto t0 = std::chrono::steady_clock::now();
#ifdef LONGLIVE_KERNELS
  Tracer::get().mark_stop();
#endif
  sampling_ = false;
  host_ms_ += ms_since(t0);
}

bool KernelProfiler::sampling() const { return sampling_; }

KernelTable KernelProfiler::collect() {
  KernelTable table;
  if (!sampled_) {
    table.unavailable = !error_.empty() ? error_ : unavailable_reason();
    if (table.unavailable.empty()) table.unavailable = "no block sampled";
    return table;
  }
  stop();
  const auto t0 = std::chrono::steady_clock::now();
#ifdef LONGLIVE_KERNELS
  Tracer::Drained drained = Tracer::get().finish(this);
  table = tabulate_kernels(drained.records);
  table.dropped = drained.dropped;
#endif
  sampled_ = false;
  table.host_ms = host_ms_ + ms_since(t0);
  host_ms_ = 0;
  return table;
}

}  // namespace longlive
