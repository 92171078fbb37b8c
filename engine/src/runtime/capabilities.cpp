// Run-time capability probe behind longlive/capabilities.h.
#include "longlive/capabilities.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "longlive/error.h"
#include "runtime/fp8_attention.h"

#ifdef LONGLIVE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "fused_kernels.h"
#endif

namespace longlive {
namespace {

int forced_sm_from_environment() {
  const char* value = std::getenv("LONGLIVE_FORCE_SM");
  if (!value || !*value) return 0;
  char* end = nullptr;
  const long sm = std::strtol(value, &end, 10);
  if (*end != '\0' || sm < 10 || sm > 200)
    throw ConfigError(fmt::format(
        "LONGLIVE_FORCE_SM={}: expected a compute capability such as 86 (sm_86) or 89", value));
  return static_cast<int>(sm);
}

#ifdef LONGLIVE_WITH_CUDA
struct Probe {
  std::string name;
  int sm = 0;
  std::string kernels_error;
  bool cudnn_fp8_attention = false;
};

Probe probe_device(c10::DeviceIndex index) {
  const c10::cuda::CUDAGuard guard(index);
  const cudaDeviceProp* props = at::cuda::getDeviceProperties(index);
  Probe p;
  p.name = props->name;
  p.sm = props->major * 10 + props->minor;
  const cudaError_t status = kernels::probe_kernels_on_current_device();
  if (status != cudaSuccess) {
    p.kernels_error = fmt::format("no kernel code for sm_{} in this build ({})", p.sm,
                                  cudaGetErrorString(status));
    (void)cudaGetLastError();  // the probe's error must not surface at the next launch
  }
  p.cudnn_fp8_attention = fp8_attention::available();
  return p;
}
#endif

}  // namespace

std::string DeviceCapabilities::describe() const {
  if (sm == 0) return name;
  if (real_sm != 0 && real_sm != sm)
    return fmt::format("sm_{} (forced; device sm_{}) {}", sm, real_sm, name);
  return fmt::format("sm_{} {}", sm, name);
}

DeviceCapabilities probe_capabilities(at::Device device, int force_sm) {
  DeviceCapabilities c;
  if (!device.is_cuda()) return c;
  // Parsed first, so a bad value is an error wherever it is set, not only on a GPU.
  const int forced = force_sm > 0 ? force_sm : forced_sm_from_environment();
  if (!at::hasCUDA()) {
    c.name = "no CUDA device";
    c.kernels_error = "no CUDA device";
    return c;
  }
#ifndef LONGLIVE_WITH_CUDA
  (void)forced;
  c.name = "CUDA device";
  c.kernels_error = "this build has no CUDA kernels (no CUDA compiler when it was built)";
  // ATen's own CUDA paths still run: bf16 where the device has it is ATen's choice to make.
  c.bf16 = true;
  return c;
#else
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, Probe> probes;
  const c10::DeviceIndex index = device.has_index() ? device.index() : 0;
  Probe probe;
  {
    std::lock_guard lock(mutex);
    auto it = probes.find(index);
    if (it == probes.end()) it = probes.emplace(index, probe_device(index)).first;
    probe = it->second;
  }
  c.name = probe.name;
  c.real_sm = probe.sm;
  c.sm = forced > 0 && forced < probe.sm ? forced : probe.sm;
  c.kernels_error = probe.kernels_error;
  if (c.kernels_error.empty() && c.sm < kMinKernelSm)
    c.kernels_error = fmt::format("our kernels need sm_{}+", kMinKernelSm);
  c.fused_kernels = c.kernels_error.empty();
  c.bf16 = c.sm >= 80;
  c.fp8_linears = c.fused_kernels && c.sm >= kMinFp8LinearSm;
  c.fp8_attention = c.fused_kernels && c.sm >= kMinFp8AttentionSm && probe.cudnn_fp8_attention;
  return c;
#endif
}

}  // namespace longlive
