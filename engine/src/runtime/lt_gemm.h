#pragma once
// 16-bit linear layers through cuBLASLt with the algorithm timed at first sight, an experiment
// for #21 (LONGLIVE_GEMM_AUTOTUNE=1, off by default until it has run on a GPU).
//
// Why: ATen's addmm takes cuBLASLt's first heuristic answer. In the H100's kernel table of a
// balanced block the FFN's first GEMM (bias + GELU epilogue) runs at ~600 TFLOP/s and the QKV
// GEMM at ~650, the other projections at ~700. LibTorch's TunableOp registers no alternatives on
// CUDA (only on ROCm), so this asks cuBLASLt for up to kCandidates algorithms per shape, times each
// on the real operands once (outside CUDA graph captures) and keeps the fastest.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace longlive::lt_gemm {

enum class Epilogue { bias, gelu_bias };

// LONGLIVE_GEMM_AUTOTUNE=1 in a CUDA build (read once).
bool enabled();

// y [M, N] = x [M, K] @ weight [N, K]^T + bias [N] (then GELU, tanh approximation, as
// at::_addmm_activation) in x's dtype. x, weight and bias: bfloat16 or float16 CUDA tensors of
// one dtype, contiguous, 16-byte aligned, K and N multiples of 8. std::nullopt where it does not
// take the arguments or cuBLASLt refuses them: the caller runs ATen's.
std::optional<at::Tensor> linear(const at::Tensor& x, const at::Tensor& weight,
                                 const at::Tensor& bias, Epilogue epilogue);

struct Stats {
  int64_t tuned = 0;            // shapes whose algorithm was timed
  int64_t untuned = 0;          // shapes first seen inside a capture: cuBLASLt's first answer
  int64_t last_candidates = 0;  // algorithms cuBLASLt offered for the last shape tuned
};
Stats stats();

}  // namespace longlive::lt_gemm
