#pragma once
// Element-wise comparison of tensors for the parity tests: in float64 on the CPU, so a tensor
// of any dtype or device compares against a float32 fixture without rounding of its own.
#include <ATen/ATen.h>

namespace longlive::test {

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

}  // namespace longlive::test
