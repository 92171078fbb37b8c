#pragma once
// What the GPU running a session can do of our fast paths, checked at run time: the binary
// carries kernels for sm_80 to sm_120 (+ PTX), but FP8 tensor cores start at sm_89 and cuDNN's
// FP8 attention at sm_90. A preset asks; the factory takes what the device has and says what it
// fell back to (RuntimeChoice::fallbacks), so a slower path runs instead of a failure.
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace longlive {

struct DeviceCapabilities {
  std::string name = "CPU";    // "NVIDIA H200", ...
  int sm = 0;                  // compute capability as 10 * major + minor (86 = sm_86); 0 = CPU
  int real_sm = 0;             // the device's own when LONGLIVE_FORCE_SM / --force-sm lowered it
  std::string kernels_error;   // why our fused kernels cannot run here (empty: they can)
  bool fused_kernels = false;  // our kernels: built with CUDA, code for this device, sm_80+
  bool bf16 = false;           // bf16 tensor cores (sm_80+)
  bool fp8_linears = false;    // FP8 GEMMs through at::_scaled_mm (sm_89+, on the fused loop)
  bool fp8_attention = false;  // cuDNN FP8 attention (sm_90+, cuDNN >= 9.1, cudnn-frontend build)

  // "sm_90 NVIDIA H200", "sm_86 (forced; device sm_90) NVIDIA H200", "CPU".
  std::string describe() const;
};

// The lowest compute capability these kernels are built for and meant to run on.
inline constexpr int kMinKernelSm = 80;
inline constexpr int kMinFp8LinearSm = 89;
inline constexpr int kMinFp8AttentionSm = 90;

// Probes `device` (cached per device index). force_sm > 0 (or the environment variable
// LONGLIVE_FORCE_SM, e.g. 86) pretends the device is of that lower capability, so every
// fallback can be tested on a big GPU; a forced value above the device's own is ignored.
DeviceCapabilities probe_capabilities(at::Device device, int force_sm = 0);

// The 16-bit GEMMs' cuBLASLt algorithm choice so far in this process (runtime/lt_gemm.h).
struct GemmTuningReport {
  bool enabled = false;      // a CUDA build, LONGLIVE_GEMM_AUTOTUNE not "0"
  int64_t timed = 0;         // shapes whose candidates were timed
  int64_t from_file = 0;     // shapes whose choice was read from choices_file
  int64_t in_capture = 0;    // shapes first seen inside a CUDA graph capture: the first answer
  std::string choices_file;  // where choices are kept (empty: for this process only)
};
GemmTuningReport gemm_tuning_report();

}  // namespace longlive
