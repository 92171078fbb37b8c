#pragma once
// Tensor-level entry points of the fused CUDA kernels (engine/kernels/). Each checks its arguments
// and throws ConfigError naming what is wrong; `fused::available()` says whether this build and
// tensor can use them at all (CUDA build, CUDA tensor). The plain-ATen equivalents are in
// model/ops.h; GPU tests compare the two.
#include <ATen/ATen.h>

#include <optional>
#include <utility>

namespace longlive::fused {

// True when the kernels were compiled in and `t` lives on a CUDA device.
bool available(const at::Tensor& t);

// What norm_modulate adds before and applies after the LayerNorm. Per-frame tensors are
// [1, F, 1, D] float32 views with a contiguous last dim (slices of the modulation table).
struct NormInputs {
  const at::Tensor* residual = nullptr;  // [1, S, D]: x += residual * gate (gate 1 when absent)
  const at::Tensor* gate = nullptr;
  const at::Tensor* shift = nullptr;  // modulation: norm * (1 + scale) + shift
  const at::Tensor* scale = nullptr;
  const at::Tensor* weight = nullptr;  // or affine LayerNorm: norm * weight + bias ([D] float32)
  const at::Tensor* bias = nullptr;
  int64_t frames = 1;  // S = frames * tokens per frame
  // A VACE hint ([S, D] or [1, S, D] contiguous, any float dtype), added before the residual:
  // x += hint * hint_scale ([1] float32 on the device), as x.add_(hint * hint_scale) rounds.
  const at::Tensor* hint = nullptr;
  const at::Tensor* hint_scale = nullptr;
  // false: no LayerNorm, the result is x after the adds in `out_dtype` (shift, scale, weight
  // and bias must be absent).
  bool normalise = true;
  // With `normalise`: x after the adds is also written here, in the output's 16-bit dtype
  // (norm_modulate_fp8: its rounding dtype), [1, S, D] or [S, D] contiguous: the bits a
  // `normalise = false` call returns, without a pass of its own (a VACE block's output for its
  // hint, written by the next block's first norm).
  const at::Tensor* settled = nullptr;
};

// x: [1, S, D] float32 contiguous, updated in place when `in.residual` or `in.hint` is set.
// Returns the normalised (and modulated) rows in `out_dtype`, [1, S, D] (with `normalise`
// false: x itself in `out_dtype`).
at::Tensor norm_modulate(const at::Tensor& x, const NormInputs& in, double eps,
                         at::ScalarType out_dtype);

// norm_modulate with the output quantised for an FP8 linear, in the same launch: each value
// rounded to `round_dtype` (bfloat16/float16, what norm_modulate would return), then per row
// scale = max(amax / 448, 1e-12) and q = fp8(value / scale). Returns (q [1, S, D]
// float8_e4m3fn, scales [S, 1] float32): bit for bit quantize_fp8_rows(norm_modulate(...)).
std::pair<at::Tensor, at::Tensor> norm_modulate_fp8(const at::Tensor& x, const NormInputs& in,
                                                    double eps, at::ScalarType round_dtype);

// RMSNorm over each row of `in` ([S, D] 16-bit, last dim contiguous, any row stride) times
// `weight` ([D]), then rotary embedding per head with cos/sin ([S, 1, head_dim/2] float32; both
// undefined to skip). Writes `out` ([S, heads, head_dim], stride(2) == 1; may be a view).
// With `copy_in`/`copy_out` (both or neither): copy_in, laid out like `in` (same row stride),
// is copied unchanged into copy_out, laid out like `out` (same strides), by the same launch (the
// values beside the keys into the KV cache, without a separate copy). `out` (and then copy_out)
// may be float8_e4m3fn: each value is rounded to the input's dtype, then saturated at +-448 and
// converted, the bits an FP8 KV cache stores for the 16-bit key (KvCache::write).
// The Wan VAE's silu(RmsNorm over channels) in one pass (kernels::launch_rms_silu_rows): `in`
// a channels-last [N, C, ...] bfloat16/float16 CUDA tensor (4-D channels-last or 5-D
// channels-last-3d; its channels a row), `gamma` [C] of its dtype, written into `out` of the
// same shape and dtype whose channels-last order is contiguous (a slice of a causal conv's input
// buffer along time, say). The norm is rounded to the dtype before the SiLU, as at::rms_norm then
// at::silu round. `bias` (optional, [C] of the dtype): the bias of the convolution that made
// `in` without one, added first and rounded as ATen's bias add after cuDNN rounds (bit for bit
// the same as that add, one pass over the activations fewer).
void rms_silu(const at::Tensor& in, const at::Tensor& gamma, double eps, const at::Tensor& out,
              const at::Tensor& bias = {});
// Whether rms_silu takes `in` (and an output like it): CUDA, 16-bit, channels-last order dense.
bool can_rms_silu(const at::Tensor& in);
// The Wan VAE residual block's end after bias-free convolutions, in one pass:
//   x = round(round(x + bias) + (skip_bias defined ? round(skip + skip_bias) : skip))
// in place, each round to the dtype: bit for bit ATen's bias adds and the residual add_. x and
// skip alike (can_bias_residual_add); biases [C] of the dtype.
void bias_residual_add(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& skip,
                       const at::Tensor& skip_bias = {});
// Whether bias_residual_add takes `x` (and a skip laid out like it): what rms_silu takes, with
// channels a multiple of 8 on 16-byte aligned memory.
bool can_bias_residual_add(const at::Tensor& x);

void rms_rope(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& cos,
              const at::Tensor& sin, const at::Tensor& out, double eps,
              const at::Tensor& copy_in = {}, const at::Tensor& copy_out = {});

// How quantize_fp8_rows computes GELU(tanh): through tanhf as ATen does, or as v / (1 + e^(-2u))
// (the same function with exp2 and a fast division: a few float32 ulp from the exact value, so a
// rare last bit of the 16-bit rounding differs; far fewer instructions).
enum class GeluFormula { tanh, logistic };

// Row-wise FP8 e4m3 quantisation: x [M, K] 16-bit contiguous -> (q [M, K] fp8, scales [M, 1] f32).
// gelu_tanh: quantise GELU(tanh)(x) instead (same as gelu then quantise, one pass), computed by
// `formula`; unset: the logistic form, unless LONGLIVE_FP8_GELU=tanh.
// vector_kernel: the kernel keeping the row in registers (the same bits; where the row allows
// it) or the first one; unset: the former, unless LONGLIVE_FP8_QUANT_KERNEL=row.
std::pair<at::Tensor, at::Tensor> quantize_fp8_rows(const at::Tensor& x, bool gelu_tanh = false,
                                                    std::optional<bool> vector_kernel = {},
                                                    std::optional<GeluFormula> formula = {});

// int8 KV read: q [H, T, D] int8 (rows contiguous, any head stride), scales [H, T, 1] float32
// (any head stride) -> contiguous [H, T, D] in `dtype` (bfloat16/float16). Requires D % 16 == 0.
at::Tensor dequantize_int8(const at::Tensor& q, const at::Tensor& scales, at::ScalarType dtype);
// Whether dequantize_int8 takes these arguments (else use the ATen path).
bool can_dequantize_int8(const at::Tensor& q, const at::Tensor& scales, at::ScalarType dtype);

}  // namespace longlive::fused
