#pragma once
// Fused CUDA kernels of the DiT's elementwise work, with plain-pointer launchers so nvcc never
// parses ATen. `runtime/fused_ops.h` wraps them for tensors and checks every argument; call that.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace longlive::kernels {

enum class ElemType : int { f32 = 0, f16 = 1, bf16 = 2 };

// Largest hidden size the row kernels keep in registers (256 threads x 8 elements).
constexpr int64_t kMaxRowDim = 2048;

// One row (token) per thread block, per row r of frame f = r / tokens_per_frame:
//   if hint:      x[r] += hint[r] * hint_scale                       (x float32, updated in place)
//   if residual:  x[r] += residual[r] * (gate ? gate[f] : 1)        (likewise)
//   out[r] = LayerNorm(x[r]) * (1 + scale[f]) + shift[f]             (modulate)
//          | LayerNorm(x[r]) * weight + bias                         (affine)
//          | LayerNorm(x[r])                                         (neither)
// Per-frame vectors are float32 with `gate_stride` (gate) or `frame_stride` (shift, scale)
// elements between frames.
struct NormModulateArgs {
  float* x = nullptr;
  const void* residual = nullptr;
  ElemType residual_type = ElemType::bf16;
  const float* gate = nullptr;
  int64_t gate_stride = 0;
  const float* shift = nullptr;
  const float* scale = nullptr;
  int64_t frame_stride = 0;
  const float* weight = nullptr;
  const float* bias = nullptr;
  void* out = nullptr;
  ElemType out_type = ElemType::bf16;
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t tokens_per_frame = 1;
  float eps = 1e-6f;
  // A VACE hint added first, scaled: x[r] += hint[r] * hint_scale[0] (product and sum each
  // rounded to float32, as two separate ATen ops would). hint: [rows, dim], any ElemType.
  const void* hint = nullptr;
  ElemType hint_type = ElemType::bf16;
  const float* hint_scale = nullptr;  // device pointer, one value
  // false: no LayerNorm; out[r] = x[r] after the adds (the residual stream cast to out_type).
  bool normalize = true;
  // With normalize: x[r] after the adds is also written here, [rows, dim] of out_type (the FP8
  // output: of its 16-bit rounding type), the values a normalize = false launch would give.
  void* settled = nullptr;
  // Row-wise FP8 output for an FP8 linear (normalize only; out_type bf16 or f16): out is
  // float8_e4m3fn [rows, dim], fp8_scales [rows] float32. Each value is rounded to out_type,
  // then fp8_scales[r] = max(amax(row) / 448, 1e-12) and out = fp8(value / fp8_scales[r]): the
  // bits launch_quantize_fp8_rows gives for the 16-bit output, without its pass.
  float* fp8_scales = nullptr;
  // Threads per row (16-byte kernel): a multiple of 32 from 128 to 256 that covers the row at
  // 16 values a thread; any other value takes 256. Fewer threads: more rows resident per SM
  // (fused_ops picks 128, measured).
  int threads = 256;
};
cudaError_t launch_norm_modulate(const NormModulateArgs& args, cudaStream_t stream);

// RMSNorm over the whole row then rotary embedding per head, for q or k of self-attention:
//   n = to16(x * rsqrt(mean(x^2) + eps)); n = to16(n * weight)
//   pairs (2i, 2i+1) of each head rotate by angle table row r (cos/sin: [rows, head_dim/2] f32)
// Input rows have `in_stride` elements (a slice of the fused qkv output); the output is
// [rows, heads, head_dim] with strides (out_row_stride, out_head_stride, 1): it may be a view.
// cos == nullptr skips the rotation (cross-attention q).
struct RmsRopeArgs {
  const void* in = nullptr;
  int64_t in_stride = 0;
  const void* weight = nullptr;
  const float* cos = nullptr;
  const float* sin = nullptr;
  void* out = nullptr;
  int64_t out_row_stride = 0;
  int64_t out_head_stride = 0;
  ElemType type = ElemType::bf16;  // of in, weight and out
  int64_t rows = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  float eps = 1e-6f;
  // Optional pass-through: copy_in's row (same row stride as in) copied unchanged to copy_out
  // (same strides as out), in the same launch: the values beside the keys, into the KV cache.
  const void* copy_in = nullptr;
  void* copy_out = nullptr;
  // out (and copy_out) are float8_e4m3fn: each value rounded to `type`, then converted with
  // saturation at +-448 (an FP8 KV cache's slots, written directly).
  bool fp8_out = false;
  // One warp per row (16-byte loads, shuffle reductions, no block barriers) where head_dim % 8
  // == 0 and the input, weight and angle rows are 16-byte aligned; false: one thread block per
  // row (the first kernel, kept to compare).
  bool warp_per_row = true;
};
cudaError_t launch_rms_rope(const RmsRopeArgs& args, cudaStream_t stream);

// cudaSuccess when this binary carries code (SASS, or PTX the driver can compile) for the current
// device; cudaErrorNoKernelImageForDevice (or another error) when the kernels cannot run there.
cudaError_t probe_kernels_on_current_device();

// The GELU (tanh approximation) applied before quantising: none; through tanhf, as ATen's
// gelu(approximate="tanh") computes it; or the same function as v / (1 + e^(-2u)) with exp2 and a
// fast division (a few float32 ulp from the exact value, rounded to x's type like the others:
// a rare last-bit difference from tanhf's; far fewer instructions).
enum class GeluForm { none, tanh, logistic };

// Per-row symmetric FP8 (e4m3) quantisation for FP8 linears: scale[r] = max(amax(x[r]) / 448,
// 1e-12); q[r] = fp8(x[r] / scale[r]). x is bf16/f16 [rows, dim] contiguous. With a GELU, x[r] is
// first replaced by GELU(x[r]) rounded to x's type (the FFN's second input, without a separate
// GELU pass). vector: the kernel that keeps the row in registers (16-byte loads, GELU once per
// element; the same bits) where the row allows it (16-bit x, dim % 8 == 0, aligned rows,
// dim <= 16384), else the first kernel.
cudaError_t launch_quantize_fp8_rows(const void* x, ElemType type, int64_t rows, int64_t dim,
                                     void* q, float* scales, GeluForm gelu, cudaStream_t stream,
                                     bool vector = false);

// int8 KV cache read: out[h, t, :] = to16(float(q[h, t, :]) * scale[h, t]) for `heads` x `count`
// rows of `dim` (dim % 16 == 0, rows 16-byte aligned). q rows of one head are contiguous with
// `q_head_stride` elements between heads; scales likewise with `scale_head_stride`; out is
// contiguous [heads, count, dim]. One pass instead of ATen's three (to float, multiply, cast).
struct DequantInt8Args {
  const int8_t* q = nullptr;
  int64_t q_head_stride = 0;
  const float* scale = nullptr;
  int64_t scale_head_stride = 0;
  void* out = nullptr;
  ElemType out_type = ElemType::bf16;
  int64_t heads = 0;
  int64_t count = 0;
  int64_t dim = 0;
};
cudaError_t launch_dequantize_int8(const DequantInt8Args& args, cudaStream_t stream);

// The Wan VAE's norm + SiLU before each causal convolution, on channels-last pixels: one warp
// per row (a pixel's channels), out[r] = silu(round(gamma * (x[r] * rsqrt(mean(x[r]^2) + eps))))
// in float32, the norm rounded to the type first as ATen's rms_norm then silu round (two passes
// and a kernel that takes a thread block per 96-value row). in/out: [rows, dim] with row
// strides `in_stride` / `out_stride` (elements), bf16 or f16; gamma [dim] of the same type.
// `bias` (optional, [dim] of the type): the producing convolution's bias, added to x first and
// rounded to the type as ATen's bias add after a cuDNN convolution (the convolution then runs
// without one: a pass over its output saved). Rows of whole 16-byte vectors (dim % 8 == 0,
// aligned rows and pointers) take 16 threads a row and 16-byte loads.
struct RmsSiluArgs {
  const void* in = nullptr;
  int64_t in_stride = 0;
  void* out = nullptr;
  int64_t out_stride = 0;
  const void* gamma = nullptr;
  const void* bias = nullptr;
  ElemType type = ElemType::bf16;
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
};
cudaError_t launch_rms_silu_rows(const RmsSiluArgs& args, cudaStream_t stream);

// The end of the Wan VAE's residual block, after convolutions run without their biases:
//   out[r] = round(round(x[r] + bias) + (skip_bias ? round(skip[r] + skip_bias) : skip[r]))
// (each round to the 16-bit type, as ATen's separate bias adds and the residual add round).
// x, skip, out: [rows, dim] dense (channels-last pixels); out may be x. dim % 8 == 0, pointers
// 16-byte aligned; biases [dim] of the same type.
struct BiasResidualArgs {
  const void* x = nullptr;
  const void* bias = nullptr;
  const void* skip = nullptr;
  const void* skip_bias = nullptr;
  void* out = nullptr;
  ElemType type = ElemType::bf16;
  int64_t rows = 0;
  int64_t dim = 0;
};
cudaError_t launch_bias_residual_add(const BiasResidualArgs& args, cudaStream_t stream);

}  // namespace longlive::kernels
