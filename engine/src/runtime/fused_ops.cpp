#include "runtime/fused_ops.h"

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "core/env.h"
#include "longlive/error.h"

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "fused_kernels.h"
#endif

namespace longlive::fused {

#ifdef LONGLIVE_WITH_CUDA
namespace {

kernels::ElemType elem_type(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return kernels::ElemType::f32;
    case at::kHalf:
      return kernels::ElemType::f16;
    case at::kBFloat16:
      return kernels::ElemType::bf16;
    default:
      throw ConfigError(
          fmt::format("fused kernel: {} has dtype {}, expected float32, float16 or "
                      "bfloat16",
                      what, c10::toString(t.scalar_type())));
  }
}

bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

void require(bool ok, const std::string& what) {
  if (!ok) throw ConfigError("fused kernel: " + what);
}

void check_launch(cudaError_t status, const char* kernel) {
  if (status != cudaSuccess)
    throw Error(
        fmt::format("CUDA kernel {} failed to launch: {}", kernel, cudaGetErrorString(status)));
}

// A [1, F, 1, D] float32 per-frame view: returns its frame stride.
int64_t frame_stride(const at::Tensor& t, int64_t frames, int64_t dim, const char* what) {
  require(t.scalar_type() == at::kFloat && t.dim() == 4 && t.size(1) == frames &&
              t.size(-1) == dim && t.stride(-1) == 1 && t.is_cuda(),
          fmt::format("{} must be a [1, {}, 1, {}] float32 CUDA view with a contiguous last dim",
                      what, frames, dim));
  return frames > 1 ? t.stride(1) : 0;
}

// RMSNorm+RoPE's layout: a warp per row (the default, measured faster), or a thread block per
// row with LONGLIVE_ROW_KERNELS=block (the first kernel, kept to compare on a GPU).
bool warp_per_row() { return !env_is("LONGLIVE_ROW_KERNELS", "block"); }

// LayerNorm's threads per row: 128 unless LONGLIVE_NORM_THREADS says otherwise (the kernel takes
// 256 for a value it cannot use). Measured on an H100 at 841804a, balanced's norm_modulate region
// per block: 256 threads 18.4 ms, 192 16.8 ms, 128 16.2 ms (more rows resident per SM, smaller
// block reductions). Read at each launch: graph replays do not ask again.
int norm_threads_configured() {
  const char* env = std::getenv("LONGLIVE_NORM_THREADS");
  return env == nullptr ? 128 : std::atoi(env);
}
}  // namespace

bool available(const at::Tensor& t) { return t.defined() && t.is_cuda(); }

namespace {
// The launch arguments of norm_modulate for x and `in` (all but the output). `residual` keeps a
// contiguous copy of in.residual alive until the launch.
kernels::NormModulateArgs norm_args(const at::Tensor& x, const NormInputs& in, double eps,
                                    at::Tensor& residual) {
  require(x.is_cuda() && x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() == 3,
          "x must be a contiguous [1, S, D] float32 CUDA tensor");
  const int64_t dim = x.size(2);
  const int64_t rows = x.size(0) * x.size(1);
  require(dim <= kernels::kMaxRowDim,
          fmt::format("hidden size {} exceeds {}", dim, kernels::kMaxRowDim));
  require(in.frames >= 1 && rows % in.frames == 0,
          fmt::format("{} rows do not split into {} frames", rows, in.frames));
  kernels::NormModulateArgs a;
  a.x = x.data_ptr<float>();
  a.rows = rows;
  a.dim = dim;
  a.tokens_per_frame = rows / in.frames;
  a.eps = static_cast<float>(eps);
  a.threads = norm_threads_configured();

  if (in.residual) {
    residual = in.residual->is_contiguous() ? *in.residual : in.residual->contiguous();
    require(residual.numel() == x.numel() && residual.device() == x.device(),
            "residual must match x's shape and device");
    a.residual = residual.data_ptr();
    a.residual_type = elem_type(residual, "residual");
  }
  // Shift and scale share one frame stride (slices of one modulation table); the gate may come
  // from another table (the previous layer's).
  if (in.gate) {
    a.gate_stride = frame_stride(*in.gate, in.frames, dim, "gate");
    a.gate = in.gate->data_ptr<float>();
  }
  require((in.shift == nullptr) == (in.scale == nullptr), "shift and scale come together");
  if (in.shift) {
    a.frame_stride = frame_stride(*in.shift, in.frames, dim, "shift");
    require(frame_stride(*in.scale, in.frames, dim, "scale") == a.frame_stride,
            "shift and scale must share one frame stride");
    a.shift = in.shift->data_ptr<float>();
    a.scale = in.scale->data_ptr<float>();
  }
  require((in.weight == nullptr) == (in.bias == nullptr), "weight and bias come together");
  if (in.weight) {
    require(in.weight->scalar_type() == at::kFloat && in.weight->is_contiguous() &&
                in.weight->numel() == dim && in.bias->scalar_type() == at::kFloat &&
                in.bias->is_contiguous() && in.bias->numel() == dim,
            "LayerNorm weight and bias must be contiguous float32 [D]");
    a.weight = in.weight->data_ptr<float>();
    a.bias = in.bias->data_ptr<float>();
  }
  require((in.hint == nullptr) == (in.hint_scale == nullptr), "hint and hint_scale come together");
  if (in.hint) {
    require(in.hint->is_contiguous() && in.hint->numel() == x.numel() &&
                in.hint->device() == x.device(),
            "hint must be contiguous, with x's shape and device");
    require(in.hint_scale->scalar_type() == at::kFloat && in.hint_scale->numel() == 1 &&
                in.hint_scale->device() == x.device(),
            "hint_scale must be one float32 value on x's device");
    a.hint = in.hint->data_ptr();
    a.hint_type = elem_type(*in.hint, "hint");
    a.hint_scale = in.hint_scale->data_ptr<float>();
  }
  a.normalize = in.normalise;
  require(in.normalise || (in.shift == nullptr && in.weight == nullptr),
          "without the LayerNorm there is nothing to modulate");
  return a;
}

// Points `a` at in.settled, which must hold x's rows in `dtype` (the output's 16-bit type).
void set_settled(kernels::NormModulateArgs& a, const at::Tensor& x, const NormInputs& in,
                 at::ScalarType dtype) {
  if (!in.settled) return;
  const at::Tensor& s = *in.settled;
  require(in.normalise, "the settled rows come with the LayerNorm (normalise)");
  require(
      s.is_contiguous() && s.numel() == x.numel() && s.device() == x.device() &&
          s.scalar_type() == dtype,
      fmt::format("settled must be contiguous {} with x's shape and device", c10::toString(dtype)));
  a.settled = s.data_ptr();
}
}  // namespace

at::Tensor norm_modulate(const at::Tensor& x, const NormInputs& in, double eps,
                         at::ScalarType out_dtype) {
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor residual;
  kernels::NormModulateArgs a = norm_args(x, in, eps, residual);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(out_dtype));
  a.out = out.data_ptr();
  a.out_type = elem_type(out, "output");
  set_settled(a, x, in, out_dtype);
  check_launch(kernels::launch_norm_modulate(a, c10::cuda::getCurrentCUDAStream()),
               "norm_modulate");
  return out;
}

std::pair<at::Tensor, at::Tensor> norm_modulate_fp8(const at::Tensor& x, const NormInputs& in,
                                                    double eps, at::ScalarType round_dtype) {
  require(in.normalise, "the FP8 output needs the LayerNorm (normalise)");
  require(round_dtype == at::kBFloat16 || round_dtype == at::kHalf,
          fmt::format("the FP8 output rounds through bfloat16 or float16, not {}",
                      c10::toString(round_dtype)));
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor residual;
  kernels::NormModulateArgs a = norm_args(x, in, eps, residual);
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kFloat8_e4m3fn));
  at::Tensor scales = at::empty({a.rows, 1}, x.options());
  a.out = q.data_ptr();
  a.out_type = round_dtype == at::kBFloat16 ? kernels::ElemType::bf16 : kernels::ElemType::f16;
  a.fp8_scales = scales.data_ptr<float>();
  set_settled(a, x, in, round_dtype);
  check_launch(kernels::launch_norm_modulate(a, c10::cuda::getCurrentCUDAStream()),
               "norm_modulate (FP8 output)");
  return {q, scales};
}

namespace {
// [N, C, ...] -> [N, ..., C]: a view whose rows are the channels of a pixel.
at::Tensor channels_last_order(const at::Tensor& t) {
  std::vector<int64_t> order = {0};
  for (int64_t d = 2; d < t.dim(); ++d) order.push_back(d);
  order.push_back(1);
  return t.permute(order);
}
}  // namespace

bool can_rms_silu(const at::Tensor& in) {
  return in.defined() && in.is_cuda() && (in.dim() == 4 || in.dim() == 5) &&
         (in.scalar_type() == at::kBFloat16 || in.scalar_type() == at::kHalf) &&
         channels_last_order(in).is_contiguous();
}

void rms_silu(const at::Tensor& in, const at::Tensor& gamma, double eps, const at::Tensor& out,
              const at::Tensor& bias) {
  require(can_rms_silu(in),
          "rms_silu input must be a bfloat16/float16 CUDA tensor [N, C, ...] in channels-last "
          "order");
  require(can_rms_silu(out) && out.sizes() == in.sizes() && out.scalar_type() == in.scalar_type() &&
              out.device() == in.device(),
          "rms_silu output must be shaped, typed and laid out like the input");
  require(gamma.scalar_type() == in.scalar_type() && gamma.is_contiguous() &&
              gamma.numel() == in.size(1) && gamma.device() == in.device(),
          "rms_silu gamma must be contiguous [C] of the input's dtype on its device");
  require(!bias.defined() || (bias.scalar_type() == in.scalar_type() && bias.is_contiguous() &&
                              bias.numel() == in.size(1) && bias.device() == in.device()),
          "rms_silu bias must be contiguous [C] of the input's dtype on its device");
  if (in.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(in.device());
  kernels::RmsSiluArgs a;
  a.in = in.data_ptr();
  a.in_stride = in.size(1);
  a.out = out.data_ptr();
  a.out_stride = in.size(1);
  a.gamma = gamma.data_ptr();
  a.bias = bias.defined() ? bias.data_ptr() : nullptr;
  a.type = elem_type(in, "input");
  a.rows = in.numel() / in.size(1);
  a.dim = in.size(1);
  a.eps = static_cast<float>(eps);
  check_launch(kernels::launch_rms_silu_rows(a, c10::cuda::getCurrentCUDAStream()), "rms_silu");
}

bool can_bias_residual_add(const at::Tensor& x) {
  return can_rms_silu(x) && x.size(1) % 8 == 0 && aligned16(x);
}

void bias_residual_add(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& skip,
                       const at::Tensor& skip_bias) {
  require(can_bias_residual_add(x),
          "bias_residual_add x must be a bfloat16/float16 CUDA tensor [N, C, ...] in "
          "channels-last order, C a multiple of 8, 16-byte aligned");
  require(can_bias_residual_add(skip) && skip.sizes() == x.sizes() &&
              skip.scalar_type() == x.scalar_type() && skip.device() == x.device(),
          "bias_residual_add skip must be shaped, typed and laid out like x");
  auto check_bias = [&](const at::Tensor& b, const char* what) {
    require(b.scalar_type() == x.scalar_type() && b.is_contiguous() && b.numel() == x.size(1) &&
                b.device() == x.device() && aligned16(b),
            fmt::format("bias_residual_add {} must be contiguous [C] of x's dtype on its device",
                        what));
  };
  require(bias.defined(), "bias_residual_add needs the convolution's bias");
  check_bias(bias, "bias");
  if (skip_bias.defined()) check_bias(skip_bias, "skip_bias");
  if (x.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  kernels::BiasResidualArgs a;
  a.x = x.data_ptr();
  a.bias = bias.data_ptr();
  a.skip = skip.data_ptr();
  a.skip_bias = skip_bias.defined() ? skip_bias.data_ptr() : nullptr;
  a.out = x.data_ptr();
  a.type = elem_type(x, "x");
  a.rows = x.numel() / x.size(1);
  a.dim = x.size(1);
  check_launch(kernels::launch_bias_residual_add(a, c10::cuda::getCurrentCUDAStream()),
               "bias_residual_add");
}

void rms_rope(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& cos,
              const at::Tensor& sin, const at::Tensor& out, double eps, const at::Tensor& copy_in,
              const at::Tensor& copy_out) {
  require(in.is_cuda() && in.dim() == 2 && in.stride(1) == 1 && in.stride(0) % 2 == 0 &&
              (in.scalar_type() == at::kBFloat16 || in.scalar_type() == at::kHalf),
          "rms_rope input must be a [S, D] bfloat16/float16 CUDA view with a contiguous last dim "
          "and an even row stride");
  const bool fp8_out = out.scalar_type() == at::kFloat8_e4m3fn;
  require(out.dim() == 3 && out.size(0) == in.size(0) && out.size(1) * out.size(2) == in.size(1) &&
              out.stride(2) == 1 && out.stride(1) % 2 == 0 && out.stride(0) % 2 == 0 &&
              (out.scalar_type() == in.scalar_type() || fp8_out) && out.device() == in.device(),
          "rms_rope output must be [S, heads, head_dim] of the input's dtype (or float8_e4m3fn) "
          "with stride(2) == 1");
  require(weight.scalar_type() == in.scalar_type() && weight.is_contiguous() &&
              weight.numel() == in.size(1),
          "rms_rope weight must be contiguous [D] of the input's dtype");
  const int64_t head_dim = out.size(2);
  if (cos.defined()) {
    require(cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat &&
                cos.is_contiguous() && sin.is_contiguous() &&
                cos.numel() == in.size(0) * head_dim / 2 && sin.numel() == cos.numel(),
            "rms_rope cos/sin must be contiguous float32 [S, 1, head_dim / 2]");
  }
  if (copy_in.defined() || copy_out.defined())
    require(copy_in.defined() && copy_out.defined() && copy_in.sizes() == in.sizes() &&
                copy_in.strides() == in.strides() && copy_out.sizes() == out.sizes() &&
                copy_out.strides() == out.strides() && copy_in.scalar_type() == in.scalar_type() &&
                copy_out.scalar_type() == out.scalar_type() && copy_in.device() == in.device() &&
                copy_out.device() == in.device(),
            "rms_rope copy_in/copy_out must both be given, shaped and strided like in/out");
  const c10::cuda::CUDAGuard guard(in.device());
  kernels::RmsRopeArgs a;
  a.copy_in = copy_in.defined() ? copy_in.data_ptr() : nullptr;
  a.copy_out = copy_out.defined() ? copy_out.data_ptr() : nullptr;
  a.in = in.data_ptr();
  a.in_stride = in.stride(0);
  a.weight = weight.data_ptr();
  a.cos = cos.defined() ? cos.data_ptr<float>() : nullptr;
  a.sin = cos.defined() ? sin.data_ptr<float>() : nullptr;
  a.out = out.data_ptr();
  a.out_row_stride = out.stride(0);
  a.out_head_stride = out.stride(1);
  a.type = elem_type(in, "input");
  a.rows = in.size(0);
  a.heads = out.size(1);
  a.head_dim = head_dim;
  a.eps = static_cast<float>(eps);
  a.fp8_out = fp8_out;
  a.warp_per_row = warp_per_row();
  check_launch(kernels::launch_rms_rope(a, c10::cuda::getCurrentCUDAStream()), "rms_rope");
}

namespace {
// The row-in-registers quantisation kernel unless LONGLIVE_FP8_QUANT_KERNEL=row. Measured on an
// H100 at cc7ac3f: the same bits as the first kernel (GPU test), turbo_fp8 156.2 -> 152.2 ms per
// block (the FFN's GELU quantisation, 119 launches a block).
bool vector_quantisation_configured() {
  static const bool on = !env_is("LONGLIVE_FP8_QUANT_KERNEL", "row");
  return on;
}
// GELU's logistic form unless LONGLIVE_FP8_GELU=tanh (tanhf, as before).
GeluFormula gelu_formula_configured() {
  static const GeluFormula formula =
      env_is("LONGLIVE_FP8_GELU", "tanh") ? GeluFormula::tanh : GeluFormula::logistic;
  return formula;
}

kernels::GeluForm gelu_form(bool gelu_tanh, std::optional<GeluFormula> formula) {
  if (!gelu_tanh) return kernels::GeluForm::none;
  return formula.value_or(gelu_formula_configured()) == GeluFormula::tanh
             ? kernels::GeluForm::tanh
             : kernels::GeluForm::logistic;
}
}  // namespace

std::pair<at::Tensor, at::Tensor> quantize_fp8_rows(const at::Tensor& x, bool gelu_tanh,
                                                    std::optional<bool> vector_kernel,
                                                    std::optional<GeluFormula> formula) {
  require(x.is_cuda() && x.dim() == 2 && x.is_contiguous(),
          "quantize_fp8_rows input must be a contiguous [M, K] CUDA tensor");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kFloat8_e4m3fn));
  at::Tensor scales = at::empty({x.size(0), 1}, x.options().dtype(at::kFloat));
  check_launch(kernels::launch_quantize_fp8_rows(
                   x.data_ptr(), elem_type(x, "input"), x.size(0), x.size(1), q.data_ptr(),
                   scales.data_ptr<float>(), gelu_form(gelu_tanh, formula),
                   c10::cuda::getCurrentCUDAStream(),
                   vector_kernel.value_or(vector_quantisation_configured())),
               "quantize_fp8_rows");
  return {q, scales};
}

bool can_dequantize_int8(const at::Tensor& q, const at::Tensor& scales, at::ScalarType dtype) {
  return q.is_cuda() && q.scalar_type() == at::kChar && q.dim() == 3 && q.size(2) % 16 == 0 &&
         q.stride(2) == 1 && q.stride(1) == q.size(2) && q.stride(0) % 16 == 0 && aligned16(q) &&
         scales.dim() == 3 && scales.scalar_type() == at::kFloat && scales.size(0) == q.size(0) &&
         scales.size(1) == q.size(1) && scales.size(2) == 1 && scales.stride(1) == 1 &&
         (dtype == at::kBFloat16 || dtype == at::kHalf);
}

at::Tensor dequantize_int8(const at::Tensor& q, const at::Tensor& scales, at::ScalarType dtype) {
  require(can_dequantize_int8(q, scales, dtype),
          "dequantize_int8 needs int8 [H, T, D] CUDA rows (D % 16 == 0, 16-byte aligned), float32 "
          "scales [H, T, 1] and a 16-bit output dtype");
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty(q.sizes(), q.options().dtype(dtype));
  kernels::DequantInt8Args a;
  a.q = q.data_ptr<int8_t>();
  a.q_head_stride = q.stride(0);
  a.scale = scales.data_ptr<float>();
  a.scale_head_stride = scales.stride(0);
  a.out = out.data_ptr();
  a.out_type = elem_type(out, "output");
  a.heads = q.size(0);
  a.count = q.size(1);
  a.dim = q.size(2);
  check_launch(kernels::launch_dequantize_int8(a, c10::cuda::getCurrentCUDAStream()),
               "dequantize_int8");
  return out;
}

#else  // CPU-only build: nothing is available and nothing may be called.

namespace {
[[noreturn]] void unavailable() {
  throw ConfigError("fused CUDA kernels are not compiled into this build (LONGLIVE_CUDA=OFF)");
}
}  // namespace

bool available(const at::Tensor&) { return false; }
bool can_rms_silu(const at::Tensor&) { return false; }
void rms_silu(const at::Tensor&, const at::Tensor&, double, const at::Tensor&, const at::Tensor&) {
  unavailable();
}
bool can_bias_residual_add(const at::Tensor&) { return false; }
void bias_residual_add(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  unavailable();
}
at::Tensor norm_modulate(const at::Tensor&, const NormInputs&, double, at::ScalarType) {
  unavailable();
}
std::pair<at::Tensor, at::Tensor> norm_modulate_fp8(const at::Tensor&, const NormInputs&, double,
                                                    at::ScalarType) {
  unavailable();
}
void rms_rope(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, double, const at::Tensor&, const at::Tensor&) {
  unavailable();
}
std::pair<at::Tensor, at::Tensor> quantize_fp8_rows(const at::Tensor&, bool, std::optional<bool>,
                                                    std::optional<GeluFormula>) {
  unavailable();
}
bool can_dequantize_int8(const at::Tensor&, const at::Tensor&, at::ScalarType) { return false; }
at::Tensor dequantize_int8(const at::Tensor&, const at::Tensor&, at::ScalarType) { unavailable(); }

#endif

}  // namespace longlive::fused
