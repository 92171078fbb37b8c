#pragma once
// FA3's cuda_check.h ends the process on a failed launch (fprintf + exit(1)): in the studio that
// would lose a recording in progress, and in a CUDA graph capture that an earlier call
// invalidated it turns a recoverable capture failure (the forward runs eagerly) into an exit.
// Its macros are replaced here by ones that throw std::runtime_error, which our launch glue
// (runtime/fa3_attention.cpp) turns into longlive::Error. Included before FA3's launch templates:
// cuda_check.h is `#pragma once`, so their own include of it changes nothing afterwards.
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "cuda_check.h"

namespace longlive::fa3 {

[[noreturn]] inline void throw_cuda_error(cudaError_t error, const char* file, int line) {
  throw std::runtime_error(std::string("FlashAttention-3 CUDA call failed at ") + file + ":" +
                           std::to_string(line) + ": " + cudaGetErrorName(error) + " (" +
                           cudaGetErrorString(error) + ")");
}

[[noreturn]] inline void throw_cutlass_error(const char* status, const char* file, int line) {
  // cutlass::kernel_launch has consumed the CUDA error (cudaGetLastError); its status is all that
  // is left. The glue names the capture state of the stream beside it.
  throw std::runtime_error(std::string("FlashAttention-3 launch failed at ") + file + ":" +
                           std::to_string(line) + ": CUTLASS status '" + status + "'");
}

}  // namespace longlive::fa3

#undef CHECK_CUDA
#undef CHECK_CUTLASS
#define CHECK_CUDA(call)                                                       \
  do {                                                                         \
    const cudaError_t longlive_status_ = (call);                               \
    if (longlive_status_ != cudaSuccess)                                       \
      ::longlive::fa3::throw_cuda_error(longlive_status_, __FILE__, __LINE__); \
  } while (0)
#define CHECK_CUTLASS(call)                                                                   \
  do {                                                                                        \
    const cutlass::Status longlive_status_ = (call);                                          \
    if (longlive_status_ != cutlass::Status::kSuccess)                                        \
      ::longlive::fa3::throw_cutlass_error(cutlass::cutlassGetStatusString(longlive_status_), \
                                           __FILE__, __LINE__);                               \
  } while (0)
