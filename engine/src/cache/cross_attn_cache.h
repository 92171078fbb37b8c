#pragma once
// Text K/V of every cross-attention layer for the current conditioning. Rebuilt when the prompt
// changes (hard cut, transition step or blend); reused by every denoising step otherwise.
#include <ATen/ATen.h>

#include <vector>

namespace longlive {

struct CrossAttnCache {
  std::vector<at::Tensor> k;  // per layer [1, heads, text_len, head_dim]
  std::vector<at::Tensor> v;

  bool empty() const { return k.empty(); }
  void clear() {
    k.clear();
    v.clear();
  }
};

}  // namespace longlive
