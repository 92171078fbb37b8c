#include "runtime/lt_gemm.h"

#include "core/env.h"
#include "longlive/capabilities.h"

#include <cstdlib>
#include <string_view>

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAContextLight.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cublasLt.h>
#include <cuda.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "core/loaded_symbol.h"
#include "longlive/log.h"
#include "runtime/gemm_choices.h"
#endif

namespace longlive::lt_gemm {

#ifdef LONGLIVE_WITH_CUDA
namespace {

constexpr int kCandidates = 16;  // algorithms asked of cuBLASLt's heuristic per shape
constexpr int kTimedRuns = 5;    // per candidate, after one untimed run
// Another algorithm replaces cuBLASLt's first answer only where it is this much faster: between
// two about as fast, timing noise would otherwise decide, and differently from run to run.
constexpr float kMargin = 0.02f;

// cuBLASLt's entry points, from the copy LibTorch loaded (nothing links against it: the one
// LibTorch's wheel brings is the one in the process).
struct Api {
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  decltype(&cublasLtGetVersion) version = nullptr;
  bool ok = false;
};

const Api& api() {
  static const Api loaded = [] {
    Api a;
    const std::string soname = fmt::format("libcublasLt.so.{}", CUDA_VERSION / 1000);
    void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (lib == nullptr) lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      log::warn("GEMM autotuning off: {} not found", soname);
      return a;
    }
    std::string missing;
    bool ok = resolve_symbol(lib, "cublasLtMatmulDescCreate", a.desc_create, missing);
    ok = resolve_symbol(lib, "cublasLtMatmulDescDestroy", a.desc_destroy, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatmulDescSetAttribute", a.desc_set, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatrixLayoutCreate", a.layout_create, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatrixLayoutDestroy", a.layout_destroy, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatmulPreferenceCreate", a.pref_create, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatmulPreferenceDestroy", a.pref_destroy, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatmulPreferenceSetAttribute", a.pref_set, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatmulAlgoGetHeuristic", a.heuristic, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtMatmul", a.matmul, missing) && ok;
    ok = resolve_symbol(lib, "cublasLtGetVersion", a.version, missing) && ok;
    if (!ok) log::warn("GEMM autotuning off: {} has no {}", soname, missing);
    a.ok = ok;
    return a;
  }();
  return loaded;
}

struct Key {
  int64_t m, n, k;
  at::ScalarType dtype;
  Epilogue epilogue;
  int device;
  auto tie() const { return std::tie(m, n, k, dtype, epilogue, device); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

// One shape's descriptors (column-major, as cuBLASLt sees row-major tensors): A = weight as
// [K, N] transposed, B = x as [K, M], C = D = y as [N, M]; the bias is per row of C.
class Plan {
 public:
  Plan(const Key& key, cudaDataType_t type) {
    const Api& f = api();
    const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
    const cublasLtEpilogue_t epilogue =
        key.epilogue == Epilogue::gelu_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    ok_ = f.desc_create(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
          f.desc_set(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)) ==
              CUBLAS_STATUS_SUCCESS &&
          f.desc_set(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)) ==
              CUBLAS_STATUS_SUCCESS &&
          f.desc_set(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)) ==
              CUBLAS_STATUS_SUCCESS &&
          f.layout_create(&a_, type, key.k, key.n, key.k) == CUBLAS_STATUS_SUCCESS &&
          f.layout_create(&b_, type, key.k, key.m, key.k) == CUBLAS_STATUS_SUCCESS &&
          f.layout_create(&c_, type, key.n, key.m, key.n) == CUBLAS_STATUS_SUCCESS;
  }
  ~Plan() {
    const Api& f = api();
    if (c_) f.layout_destroy(c_);
    if (b_) f.layout_destroy(b_);
    if (a_) f.layout_destroy(a_);
    if (desc_) f.desc_destroy(desc_);
  }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  bool ok() const { return ok_; }

  // Up to kCandidates algorithms for this shape and workspace, best guess first.
  std::vector<cublasLtMatmulAlgo_t> candidates(cublasLtHandle_t handle, size_t workspace) const {
    const Api& f = api();
    cublasLtMatmulPreference_t pref = nullptr;
    std::vector<cublasLtMatmulAlgo_t> out;
    if (f.pref_create(&pref) != CUBLAS_STATUS_SUCCESS) return out;
    std::array<cublasLtMatmulHeuristicResult_t, kCandidates> results{};
    int returned = 0;
    // No in-place split-K reduction (through the output and counters): only schemes that reduce
    // in a separate step, so a video replays bit for bit whichever algorithm wins.
    const uint32_t reductions =
        CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    if (f.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)) ==
            CUBLAS_STATUS_SUCCESS &&
        f.pref_set(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions,
                   sizeof(reductions)) == CUBLAS_STATUS_SUCCESS &&
        f.heuristic(handle, desc_, a_, b_, c_, c_, pref, kCandidates, results.data(), &returned) ==
            CUBLAS_STATUS_SUCCESS) {
      for (int i = 0; i < returned; ++i)
        if (results[i].state == CUBLAS_STATUS_SUCCESS) out.push_back(results[i].algo);
    }
    f.pref_destroy(pref);
    return out;
  }

  bool run(cublasLtHandle_t handle, const cublasLtMatmulAlgo_t& algo, const at::Tensor& x,
           const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& y, void* workspace,
           size_t workspace_bytes, cudaStream_t stream) const {
    const Api& f = api();
    const void* bias_ptr = bias.data_ptr();
    if (f.desc_set(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)) !=
        CUBLAS_STATUS_SUCCESS)
      return false;
    const float alpha = 1.f, beta = 0.f;
    return f.matmul(handle, desc_, &alpha, weight.data_ptr(), a_, x.data_ptr(), b_, &beta,
                    y.data_ptr(), c_, y.data_ptr(), c_, &algo, workspace, workspace_bytes,
                    stream) == CUBLAS_STATUS_SUCCESS;
  }

  std::optional<cublasLtMatmulAlgo_t> algo;

 private:
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
  bool ok_ = false;
};

struct Registry {
  std::mutex mutex;  // the plans, and each plan's bias pointer between its set and its launch
  std::map<Key, std::unique_ptr<Plan>> plans;
  Stats stats;
  ChoiceStore choices{ChoiceStore::default_file()};
};
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: no cuBLASLt calls after exit starts
  return *r;
}

bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// The shape's name in the choices file: everything that changes cuBLASLt's list of candidates
// (the GPU, the library's version, the workspace) or what they compute.
std::string choice_key(const Key& key, size_t workspace_bytes) {
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(key.device);
  return fmt::format("{} sm_{}{} {} SMs | cublasLt {} | workspace {} | {}x{}x{} {} {}", prop->name,
                     prop->major, prop->minor, prop->multiProcessorCount, api().version(),
                     workspace_bytes, key.m, key.n, key.k, c10::toString(key.dtype),
                     key.epilogue == Epilogue::gelu_bias ? "bias+gelu" : "bias");
}

// Milliseconds of kTimedRuns runs of `algo` (after one untimed), or +inf where it fails.
float time_algo(const Plan& plan, cublasLtHandle_t handle, const cublasLtMatmulAlgo_t& algo,
                const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const at::Tensor& y,
                void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  constexpr float kFailed = std::numeric_limits<float>::infinity();
  if (!plan.run(handle, algo, x, w, b, y, workspace, workspace_bytes, stream)) return kFailed;
  cudaEvent_t start = nullptr, stop = nullptr;
  if (cudaEventCreate(&start) != cudaSuccess) return kFailed;
  if (cudaEventCreate(&stop) != cudaSuccess) {
    cudaEventDestroy(start);
    return kFailed;
  }
  bool ok = cudaEventRecord(start, stream) == cudaSuccess;
  for (int i = 0; ok && i < kTimedRuns; ++i)
    ok = plan.run(handle, algo, x, w, b, y, workspace, workspace_bytes, stream);
  ok = ok && cudaEventRecord(stop, stream) == cudaSuccess &&
       cudaEventSynchronize(stop) == cudaSuccess;
  float ms = 0.f;
  if (!ok || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) ms = kFailed;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  (void)cudaGetLastError();  // a refused algorithm's launch error is not the caller's
  return ms;
}

}  // namespace

bool enabled() {
  static const bool on = !env_is("LONGLIVE_GEMM_AUTOTUNE", "0");
  return on;
}

std::optional<at::Tensor> linear(const at::Tensor& x, const at::Tensor& weight,
                                 const at::Tensor& bias, Epilogue epilogue, const at::Tensor& out) {
  const at::ScalarType dtype = x.scalar_type();
  if (!x.is_cuda() || (dtype != at::kBFloat16 && dtype != at::kHalf) || x.dim() != 2 ||
      weight.dim() != 2 || !bias.defined() || bias.dim() != 1 || weight.scalar_type() != dtype ||
      bias.scalar_type() != dtype || weight.device() != x.device() || bias.device() != x.device() ||
      !x.is_contiguous() || !weight.is_contiguous() || !bias.is_contiguous() ||
      weight.size(1) != x.size(1) || bias.size(0) != weight.size(0) || x.size(1) % 8 != 0 ||
      weight.size(0) % 8 != 0 || x.size(0) < 1 || !aligned16(x) || !aligned16(weight) ||
      !aligned16(bias))
    return std::nullopt;
  if (out.defined() && (out.scalar_type() != dtype || out.device() != x.device() ||
                        out.dim() != 2 || out.size(0) != x.size(0) ||
                        out.size(1) != weight.size(0) || !out.is_contiguous() || !aligned16(out)))
    return std::nullopt;
  const Api& f = api();
  if (!f.ok) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  const Key key{x.size(0), weight.size(0), x.size(1), dtype, epilogue, x.get_device()};
  const cudaDataType_t type = dtype == at::kBFloat16 ? CUDA_R_16BF : CUDA_R_16F;
  at::Tensor y = out.defined() ? out : at::empty({key.m, key.n}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(key.device).stream();
  cublasLtHandle_t handle = at::cuda::getCurrentCUDABlasLtHandle();
  void* workspace = at::cuda::getCUDABlasLtWorkspace();
  const size_t workspace_bytes = at::cuda::getCUDABlasLtWorkspaceSize();

  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto& slot = r.plans[key];
  if (!slot) slot = std::make_unique<Plan>(key, type);
  Plan& plan = *slot;
  if (!plan.ok()) return std::nullopt;
  if (!plan.algo) {
    const std::vector<cublasLtMatmulAlgo_t> candidates = plan.candidates(handle, workspace_bytes);
    if (candidates.empty()) return std::nullopt;
    const std::string name = choice_key(key, workspace_bytes);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    const bool capturing = cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
                           capture != cudaStreamCaptureStatusNone;
    if (const auto stored = r.choices.find(name);
        stored && *stored < static_cast<int64_t>(candidates.size())) {
      plan.algo = candidates[static_cast<size_t>(*stored)];
      ++r.stats.from_file;
    } else if (capturing) {
      // Timing needs the device: inside a capture take cuBLASLt's first answer (not recorded).
      plan.algo = candidates.front();
      ++r.stats.untuned;
    } else {
      std::vector<float> ms(candidates.size());
      for (size_t i = 0; i < candidates.size(); ++i)
        ms[i] = time_algo(plan, handle, candidates[i], x, weight, bias, y, workspace,
                          workspace_bytes, stream);
      const size_t fastest =
          static_cast<size_t>(std::min_element(ms.begin(), ms.end()) - ms.begin());
      if (!std::isfinite(ms[fastest])) return std::nullopt;
      const size_t choice = ms[fastest] < ms.front() * (1.f - kMargin) ? fastest : 0;
      plan.algo = candidates[choice];
      ++r.stats.tuned;
      r.stats.last_candidates = static_cast<int64_t>(candidates.size());
      r.choices.record(name, static_cast<int64_t>(choice));
      log::info("GEMM {}x{}x{}{}: cuBLASLt algorithm {} of {} ({:.1f} us a run; the first {:.1f})",
                key.m, key.n, key.k, epilogue == Epilogue::gelu_bias ? " +GELU" : "", choice,
                candidates.size(), ms[choice] * 1000.f / kTimedRuns,
                ms.front() * 1000.f / kTimedRuns);
    }
  }
  if (!plan.run(handle, *plan.algo, x, weight, bias, y, workspace, workspace_bytes, stream))
    return std::nullopt;
  return y;
}

void clear() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.plans.clear();
}

Stats stats() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.stats;
}

namespace {
std::string choices_file_name() {
  Registry& r = registry();
  return r.choices.file().string();
}
}  // namespace

#else  // a build without CUDA

bool enabled() { return false; }
void clear() {}
std::optional<at::Tensor> linear(const at::Tensor&, const at::Tensor&, const at::Tensor&, Epilogue,
                                 const at::Tensor&) {
  return std::nullopt;
}
Stats stats() { return {}; }
namespace {
std::string choices_file_name() { return {}; }
}  // namespace

#endif

}  // namespace longlive::lt_gemm

namespace longlive {
GemmTuningReport gemm_tuning_report() {
  GemmTuningReport report;
  report.enabled = lt_gemm::enabled();
  if (!report.enabled) return report;
  const lt_gemm::Stats s = lt_gemm::stats();
  report.timed = s.tuned;
  report.from_file = s.from_file;
  report.in_capture = s.untuned;
  report.choices_file = lt_gemm::choices_file_name();
  return report;
}
}  // namespace longlive
