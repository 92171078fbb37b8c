#include "model/ops.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <atomic>

#ifdef LONGLIVE_WITH_CUDA
#include <c10/cuda/CUDAGraphsC10Utils.h>
#endif

#include "longlive/error.h"
#include "longlive/log.h"
#include "runtime/fa3_attention.h"
#include "runtime/fused_ops.h"
#include "runtime/lt_gemm.h"

namespace longlive::ops {

namespace {
// x @ weight^T + bias through lt_gemm (the cuBLASLt algorithm timed at first sight, or read from
// the choices file; off with LONGLIVE_GEMM_AUTOTUNE=0) where it takes the arguments;
// std::nullopt: ATen's.
// `out` (optional): [rows, N] written instead of a new tensor.
std::optional<at::Tensor> tuned_linear(const at::Tensor& x, const at::Tensor& weight,
                                       const at::Tensor& bias, lt_gemm::Epilogue epilogue,
                                       const at::Tensor& out = at::Tensor()) {
  if (!lt_gemm::enabled() || !x.is_cuda() || !bias.defined() || x.dim() < 2) return std::nullopt;
  const int64_t k = x.size(-1);
  const at::Tensor x2d = x.reshape({-1, k});
  if (!x2d.is_contiguous()) return std::nullopt;
  std::optional<at::Tensor> y = lt_gemm::linear(x2d, weight, bias, epilogue, out);
  if (!y) return std::nullopt;
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return y->view(sizes);
}
}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias) {
  const at::Tensor input = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  if (bias)
    if (auto y = tuned_linear(input, weight, *bias, lt_gemm::Epilogue::bias)) return *y;
  return at::linear(input, weight, bias);
}

namespace {
// out viewed as the 2-D result of `rows` x N, or an error naming what is wrong with it.
at::Tensor out_rows(const at::Tensor& out, int64_t rows, int64_t n, at::ScalarType dtype,
                    const at::Device& device, const char* what) {
  if (!out.defined() || !out.is_contiguous() || out.scalar_type() != dtype ||
      out.device() != device || out.numel() != rows * n || out.size(-1) != n)
    throw Error(fmt::format(
        "{}: output [{}] {} on {} is not a contiguous [..., {}] {} tensor of {} rows on {}", what,
        out.defined() ? fmt::format("{}", fmt::join(out.sizes(), ", ")) : std::string("undefined"),
        out.defined() ? c10::toString(out.scalar_type()) : "-",
        out.defined() ? out.device().str() : "-", n, c10::toString(dtype), rows, device.str()));
  return out.view({rows, n});
}
}  // namespace

void linear_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                 const at::Tensor& out) {
  const at::Tensor input = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  const int64_t k = input.size(-1), n = weight.size(0);
  const at::Tensor x2d = input.reshape({-1, k});
  at::Tensor y = out_rows(out, x2d.size(0), n, weight.scalar_type(), input.device(), "linear_into");
  if (tuned_linear(x2d, weight, bias, lt_gemm::Epilogue::bias, y)) return;
  at::addmm_out(y, bias, x2d, weight.t());  // what at::linear runs for rows of a contiguous x
}

at::Tensor layer_norm(const at::Tensor& x, double eps) {
  return at::layer_norm(x.to(at::kFloat), {x.size(-1)}, {}, {}, eps);
}

at::Tensor layer_norm_affine(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             double eps) {
  return at::layer_norm(x.to(at::kFloat), {x.size(-1)}, weight.to(at::kFloat), bias.to(at::kFloat),
                        eps);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight;
}

at::Tensor layer_norm_modulate(const at::Tensor& x, const at::Tensor& shift,
                               const at::Tensor& scale, int64_t frames, double eps) {
  const at::Tensor normed = layer_norm(x, eps);
  const auto b = x.size(0);
  const auto d = x.size(-1);
  return (normed.view({b, frames, -1, d}) * (1 + scale) + shift).view({b, -1, d});
}

at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                          int64_t frames) {
  const auto b = x.size(0);
  const auto d = x.size(-1);
  return x + (y.to(at::kFloat).view({b, frames, -1, d}) * gate).view({b, -1, d});
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const auto sizes = x.sizes().vec();
  const at::Tensor pairs = x.to(cos.scalar_type()).reshape({sizes[0], sizes[1], sizes[2], -1, 2});
  const at::Tensor re = pairs.select(-1, 0);
  const at::Tensor im = pairs.select(-1, 1);
  const at::Tensor out_re = re * cos - im * sin;
  const at::Tensor out_im = re * sin + im * cos;
  return at::stack({out_re, out_im}, -1).reshape(sizes).to(x.scalar_type());
}

namespace {

// A backend that refused a call is not asked again in this process (the refusal is a host-side
// shape/support check, so nothing is left half-done on the device).
std::atomic<bool> cudnn_refused{false};
std::atomic<bool> flash_refused{false};
std::atomic<bool> fa3_refused{false};

// A failure inside a CUDA graph capture says nothing about the backend: most often an earlier
// call invalidated the capture, and every launch after it fails. It propagates to the capture,
// whose forward then runs eagerly (DitGraphRunner), with the backend still asked.
bool capturing(const at::Tensor& q) {
#ifdef LONGLIVE_WITH_CUDA
  return q.is_cuda() &&
         c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
#else
  (void)q;
  return false;
#endif
}

template <typename Call>
std::optional<at::Tensor> try_backend(std::atomic<bool>& refused, const char* name,
                                      const at::Tensor& q, Call call) {
  if (refused.load(std::memory_order_relaxed)) return std::nullopt;
  try {
    return call();
  } catch (const c10::OutOfMemoryError&) {
    throw;  // not the backend's fault: the engine reports it (low_memory), the backend stays on
  } catch (const OutOfMemoryError&) {
    throw;
  } catch (const c10::Error& e) {
    if (capturing(q)) throw;
    refused = true;
    log::warn("attention backend {} refused ({}); using ATen's choice from now on", name,
              e.what_without_backtrace());
    return std::nullopt;
  } catch (const Error& e) {
    if (capturing(q)) throw;
    refused = true;
    log::warn("attention backend {} failed ({}); not asked again in this process", name, e.what());
    return std::nullopt;
  }
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     AttentionBackend backend) {
  if (q.is_cuda()) {
    const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
    // FlashAttention-3 on sm_90 in builds that carry it (bf16, head dim 128); cuDNN otherwise.
    if (backend == AttentionBackend::automatic && fa3::usable_on(q.device()) &&
        fa3::accepts(q, k, v)) {
      if (auto out = try_backend(fa3_refused, "fa3", q, [&] { return fa3::attention(q, k, v); }))
        return *out;
    }
    if (backend == AttentionBackend::automatic && half && q.size(-1) <= 128)
      backend = AttentionBackend::cudnn;
    switch (backend) {
      case AttentionBackend::cudnn:
        if (auto out = try_backend(cudnn_refused, "cudnn", q, [&] {
              return std::get<0>(
                  at::_scaled_dot_product_cudnn_attention(q, k, v, std::nullopt, false));
            }))
          return *out;
        break;
      case AttentionBackend::flash:
        if (auto out = try_backend(flash_refused, "flash", q, [&] {
              return std::get<0>(at::_scaled_dot_product_flash_attention(q, k, v));
            }))
          return *out;
        break;
      case AttentionBackend::efficient:
        return std::get<0>(
            at::_scaled_dot_product_efficient_attention(q, k, v, std::nullopt, false));
      case AttentionBackend::math:
        return std::get<0>(at::_scaled_dot_product_attention_math(q, k, v));
      case AttentionBackend::automatic:
        break;
    }
  }
  return at::scaled_dot_product_attention(q, k, v);
}

Fp8Weight quantize_weight_fp8(const at::Tensor& weight) {
  if (weight.dim() != 2 || weight.size(0) % 16 != 0 || weight.size(1) % 16 != 0) {
    throw ConfigError(fmt::format("FP8 linear: weight [{}, {}] needs both sizes divisible by 16",
                                  weight.size(0), weight.size(weight.dim() - 1)));
  }
  constexpr double kE4m3Max = 448.0;
  const at::Tensor w = weight.to(at::kFloat);
  const at::Tensor scale = w.abs().amax(1, /*keepdim=*/true).div_(kE4m3Max).clamp_min_(1e-12);
  Fp8Weight out;
  out.q = w.div(scale).clamp_(-kE4m3Max, kE4m3Max).to(at::kFloat8_e4m3fn).contiguous();
  out.scale = scale.t().contiguous();
  return out;
}

namespace {
// xq: float8_e4m3fn rows of w's input size, with one scale per row in x_scales.
void check_fp8_operands(const at::Tensor& xq, const at::Tensor& x_scales, const Fp8Weight& w) {
  const int64_t k = xq.size(-1);
  if (xq.scalar_type() != at::kFloat8_e4m3fn || k != w.q.size(1) ||
      x_scales.numel() != xq.numel() / k)
    throw ConfigError(fmt::format(
        "FP8 linear: input [{}] {} with {} scales, expected float8_e4m3fn rows of {} and one "
        "scale per row",
        fmt::join(xq.sizes(), ", "), c10::toString(xq.scalar_type()), x_scales.numel(),
        w.q.size(1)));
}

// x's rows in `dtype`, quantised to FP8 e4m3 with one scale per row: (codes [M, K], scales
// [M, 1] float32). gelu_input: gelu_tanh(x) is quantised instead.
std::pair<at::Tensor, at::Tensor> quantize_rows(const at::Tensor& x, at::ScalarType dtype,
                                                bool gelu_input) {
  const at::Tensor x2d = x.reshape({-1, x.size(-1)}).to(dtype).contiguous();
  if (fused::available(x2d)) return fused::quantize_fp8_rows(x2d, gelu_input);
  const at::Tensor xf = (gelu_input ? gelu_tanh(x2d) : x2d).to(at::kFloat);
  at::Tensor xs = xf.abs().amax(1, /*keepdim=*/true).div_(448.0).clamp_min_(1e-12);
  at::Tensor xq = xf.div(xs).clamp_(-448.0, 448.0).to(at::kFloat8_e4m3fn);
  return {xq, xs};
}
}  // namespace

at::Tensor linear_fp8(const at::Tensor& x, const Fp8Weight& w,
                      const std::optional<at::Tensor>& bias, at::ScalarType out_dtype,
                      bool gelu_input) {
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = w.q.size(0);
  const auto [xq, xs] = quantize_rows(x, out_dtype, gelu_input);
  return linear_fp8_quantized(xq, xs, w, bias, out_dtype).view(out_sizes);
}

void linear_fp8_into(const at::Tensor& x, const Fp8Weight& w, const at::Tensor& bias,
                     const at::Tensor& out) {
  const at::ScalarType dtype = out.defined() ? out.scalar_type() : at::kBFloat16;
  const int64_t n = w.q.size(0);
  at::Tensor y = out_rows(out, x.numel() / x.size(-1), n, dtype, x.device(), "linear_fp8_into");
  const auto [xq, xs] = quantize_rows(x, dtype, false);
  check_fp8_operands(xq, xs, w);
  at::_scaled_mm_out(y, xq, w.q.t(), xs.reshape({-1, 1}), w.scale,
                     bias.defined() ? std::optional<at::Tensor>(bias.to(dtype)) : std::nullopt,
                     std::nullopt, dtype, /*use_fast_accum=*/true);
}

at::Tensor linear_fp8_quantized(const at::Tensor& xq, const at::Tensor& x_scales,
                                const Fp8Weight& w, const std::optional<at::Tensor>& bias,
                                at::ScalarType out_dtype) {
  check_fp8_operands(xq, x_scales, w);
  const int64_t k = xq.size(-1);
  auto out_sizes = xq.sizes().vec();
  out_sizes.back() = w.q.size(0);
  const std::optional<at::Tensor> b =
      bias ? std::optional<at::Tensor>(bias->to(out_dtype)) : std::nullopt;
  return at::_scaled_mm(xq.reshape({-1, k}), w.q.t(), x_scales.reshape({-1, 1}), w.scale, b,
                        std::nullopt, out_dtype, /*use_fast_accum=*/true)
      .view(out_sizes);
}

at::Tensor linear_gelu_tanh(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!x.is_cuda()) return gelu_tanh(ops::linear(x, weight, bias));
  const int64_t k = x.size(-1);
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = weight.size(0);
  const at::Tensor x2d = x.reshape({-1, k}).to(weight.scalar_type());
  if (auto y = tuned_linear(x2d, weight, bias, lt_gemm::Epilogue::gelu_bias))
    return y->view(out_sizes);
  // cuBLASLt's GELU epilogue is the tanh approximation (what PyTorch fuses gelu(tanh) into).
  return at::_addmm_activation(bias, x2d, weight.t(), 1, 1, /*use_gelu=*/true).view(out_sizes);
}

at::Tensor gelu_tanh(const at::Tensor& x) { return at::gelu(x, "tanh"); }

void quantize_int8(const at::Tensor& x, const at::Tensor& out, const at::Tensor& scales) {
  const at::Tensor xf = x.to(at::kFloat);
  // An all-zero row gets a tiny positive scale so the division stays finite.
  const at::Tensor scale = xf.abs().amax(-1, /*keepdim=*/true).div_(127.0).clamp_min_(1e-12);
  out.copy_(xf.div(scale).round_().clamp_(-127, 127));
  scales.copy_(scale);
}

at::Tensor dequantize_int8(const at::Tensor& q, const at::Tensor& scales, at::ScalarType dtype) {
  if (fused::can_dequantize_int8(q, scales, dtype)) return fused::dequantize_int8(q, scales, dtype);
  return (q.to(at::kFloat) * scales).to(dtype);
}

}  // namespace longlive::ops
