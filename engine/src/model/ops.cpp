#include "model/ops.h"

namespace longlive::ops {

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias) {
  const at::Tensor input = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  return at::linear(input, weight, bias);
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

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return at::scaled_dot_product_attention(q, k, v);
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
  return (q.to(at::kFloat) * scales).to(dtype);
}

}  // namespace longlive::ops
