#pragma once
// The elementwise, normalisation, projection and attention primitives of the DiT. The model calls
// only these, so fused CUDA kernels, FP8 linears or another attention backend can replace one
// function here without touching the model. Every function has plain-ATen semantics that the
// fast paths are tested against.
#include <ATen/ATen.h>

#include <optional>

#include "longlive/wan_model.h"

namespace longlive::ops {

// y = x @ weight^T + bias, computed in weight's dtype (x is cast); returns weight's dtype.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias);

// linear() written into `out` ([..., N] for x's rows, weight's dtype, contiguous) rather than
// into a new tensor: the same values without a copy (the VACE hints go straight to their buffer).
void linear_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                 const at::Tensor& out);

// LayerNorm over the last dim without affine parameters, in float32; returns float32.
at::Tensor layer_norm(const at::Tensor& x, double eps);
// Affine LayerNorm (norm3), in float32; returns float32.
at::Tensor layer_norm_affine(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             double eps);
// RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) in float32, cast back, times weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// adaLN: per-frame modulation of normalised tokens.
//   x: [B, F*T, D] (float32), shift/scale: [B, F, 1, D] -> norm(x) * (1 + scale) + shift
at::Tensor layer_norm_modulate(const at::Tensor& x, const at::Tensor& shift,
                               const at::Tensor& scale, int64_t frames, double eps);
// Gated residual: x + y * gate per frame. x: [B, F*T, D] float32, y: [B, F*T, D], gate [B, F, 1,
// D].
at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                          int64_t frames);

// Rotary embedding on consecutive channel pairs. x: [B, S, H, Dh]; cos/sin: [S, 1, Dh/2].
// Computed in cos's dtype (float64 matches the reference's complex128 product; float32 is the
// fast path for 16-bit models) and cast back to x's dtype.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// Softmax attention, scale 1/sqrt(Dh), no mask. q: [B, H, Sq, Dh], k/v: [B, H, Sk, Dh] (any
// strides with a contiguous last dim). `backend` picks the CUDA kernel (see AttentionBackend);
// CPU tensors always use ATen's choice.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     AttentionBackend backend = AttentionBackend::automatic);

// A linear weight quantised once to FP8 e4m3 with one float32 scale per output row.
struct Fp8Weight {
  at::Tensor q;      // [N, K] float8_e4m3fn
  at::Tensor scale;  // [1, N] float32
  bool defined() const { return q.defined(); }
};
// weight: [N, K] (any float dtype). Requires N and K to be multiples of 16 (FP8 GEMM tiles).
Fp8Weight quantize_weight_fp8(const at::Tensor& weight);
// y = (x quantised per row) @ w^T * scales + bias in `out_dtype` (bfloat16) via at::_scaled_mm.
// gelu_input: x is replaced by gelu_tanh(x) first (inside the quantisation pass on CUDA).
at::Tensor linear_fp8(const at::Tensor& x, const Fp8Weight& w,
                      const std::optional<at::Tensor>& bias, at::ScalarType out_dtype,
                      bool gelu_input = false);
// linear_fp8() (not gelu_input) written into `out` ([..., N] for x's rows, contiguous; its dtype
// is the output dtype).
void linear_fp8_into(const at::Tensor& x, const Fp8Weight& w, const at::Tensor& bias,
                     const at::Tensor& out);
// linear_fp8 on an input quantised already (fused::norm_modulate_fp8): xq [..., K]
// float8_e4m3fn contiguous, x_scales [M, 1] float32 for its M rows.
at::Tensor linear_fp8_quantized(const at::Tensor& xq, const at::Tensor& x_scales,
                                const Fp8Weight& w, const std::optional<at::Tensor>& bias,
                                at::ScalarType out_dtype);
// gelu_tanh(x @ weight^T + bias) with the activation in the GEMM epilogue where the backend has
// one (cuBLASLt on CUDA); plain linear + gelu elsewhere.
at::Tensor linear_gelu_tanh(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

at::Tensor gelu_tanh(const at::Tensor& x);

// Symmetric int8 quantisation over the last dim (one scale per row, amax / 127, computed in
// float32). Writes into `out` (int8) and `scales` (float32, last dim 1), which may be views into
// static buffers: no allocation is kept and nothing is read back to the host.
void quantize_int8(const at::Tensor& x, const at::Tensor& out, const at::Tensor& scales);
// out = q * scale in `dtype`.
at::Tensor dequantize_int8(const at::Tensor& q, const at::Tensor& scales, at::ScalarType dtype);

}  // namespace longlive::ops
