#pragma once
// 16-bit linear layers through cuBLASLt with the algorithm timed at first sight (#21; on in CUDA
// builds, LONGLIVE_GEMM_AUTOTUNE=0 leaves every GEMM to ATen).
//
// Why: ATen's addmm takes cuBLASLt's first heuristic answer. In the H100's kernel table of a
// balanced block the FFN's first GEMM (bias + GELU epilogue) runs at ~600 TFLOP/s and the QKV
// GEMM at ~650, the other projections at ~700. LibTorch's TunableOp registers no alternatives on
// CUDA (only on ROCm), so this asks cuBLASLt for up to kCandidates algorithms per shape, times each
// on the real operands (outside CUDA graph captures) and keeps the fastest where it beats the
// first answer by 2 %. The choice is kept in a file (gemm_choices.h): a later run takes the same
// algorithms, so the same bits. Measured on an H100 at cc7ac3f (without the margin and the file):
// balanced's GEMMs 93.7 -> 92.4 ms per block; GPU tests LtGemm.*.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace longlive::lt_gemm {

enum class Epilogue { bias, gelu_bias };

// A CUDA build unless LONGLIVE_GEMM_AUTOTUNE=0 (read once).
bool enabled();

// y [M, N] = x [M, K] @ weight [N, K]^T + bias [N] (then GELU, tanh approximation, as
// at::_addmm_activation) in x's dtype. x, weight and bias: bfloat16 or float16 CUDA tensors of
// one dtype, contiguous, 16-byte aligned, K and N multiples of 8. std::nullopt where it does not
// take the arguments or cuBLASLt refuses them: the caller runs ATen's. `out`, when given, is
// written instead of a new tensor: [M, N] of x's dtype and device, contiguous, 16-byte aligned
// (else std::nullopt).
std::optional<at::Tensor> linear(const at::Tensor& x, const at::Tensor& weight,
                                 const at::Tensor& bias, Epilogue epilogue,
                                 const at::Tensor& out = at::Tensor());

// Drops every shape's plan: the next call of a shape takes its choice from the file again (or
// times it), as a new process would.
void clear();

struct Stats {
  int64_t tuned = 0;            // shapes whose algorithm was timed
  int64_t untuned = 0;          // shapes first seen inside a capture: cuBLASLt's first answer
  int64_t from_file = 0;        // shapes whose choice came from the choices file
  int64_t last_candidates = 0;  // algorithms cuBLASLt offered for the last shape tuned
};
Stats stats();

}  // namespace longlive::lt_gemm
