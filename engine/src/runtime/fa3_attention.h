#pragma once
// FlashAttention-3's Hopper forward kernel, the attention that AttentionBackend::automatic takes
// on sm_90 (ops::attention).
// Optional: built only when CMake finds FA3's sources (LONGLIVE_FA3_DIR, fetched by
// packaging/fetch_fa3.sh); it runs on sm_90 only (the kernel is sm_90a code: TMA, wgmma).
// Everywhere else the callers keep cuDNN's SDPA.
#include <ATen/ATen.h>

namespace longlive::fa3 {

// This build carries the FA3 kernel.
bool compiled();

// The kernel may run on `device`: compiled, a CUDA device of exactly sm_90, and no lower
// capability forced (LONGLIVE_FORCE_SM). Cached per device.
bool usable_on(const at::Device& device);

// attention() takes these tensors: bf16 on CUDA, q [B, H, Sq, 128], k/v [B, Hk, Sk, 128] (H a
// multiple of Hk) with a contiguous last dim, the other strides multiples of 8 elements and
// 16-byte aligned data (TMA's rules), same batch.
bool accepts(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// softmax(q k^T / sqrt(128)) v with no mask, on the current stream. Same shapes as
// ops::attention: returns [B, H, Sq, 128] (a view of a [B, Sq, H, 128] buffer, the layout the
// DiT's output projection reads). Throws longlive::Error if !accepts(q, k, v) or on a launch
// error.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

}  // namespace longlive::fa3
