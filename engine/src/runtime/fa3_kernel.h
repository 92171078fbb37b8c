#pragma once
// The FlashAttention-3 forward kernels we build (Hopper sm_90a, head dim 128, no mask, no
// paging/softcap/varlen): for bf16 the persistent one over whole key ranges and the split-KV one
// with its combine kernel, for FP8 (e4m3 in, bf16 out) the persistent one, behind a plain-C++
// interface so that neither LibTorch nor CUTLASS headers cross it. FA3's source is not part of this
// repository: CMake compiles fa3_kernel.cu against the tree named by LONGLIVE_FA3_DIR
// (packaging/fetch_fa3.sh fetches it).

#include <cuda_runtime_api.h>

#include <cstdint>

namespace longlive::fa3 {

// Strides in elements; every tensor is [batch, tokens, heads, 128] with a contiguous last dim.
struct Bf16Hdim128Args {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;  // [batch, heads, q_tokens] float32 (written by the kernel)
  int batch = 0, heads = 0, kv_heads = 0, q_tokens = 0, kv_tokens = 0;
  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
  float softmax_scale = 0.f;
  int sm_count = 0;
  // Split-KV (num_splits >= 2): each query tile's keys in num_splits parts, written as fp32
  // partials to o_accum [num_splits, batch, heads, q_tokens, 128] and lse_accum [num_splits,
  // batch, heads, q_tokens] (both contiguous, owned by the caller), then combined into out/lse.
  int num_splits = 1;
  float* o_accum = nullptr;
  float* lse_accum = nullptr;
};

// FP8: q, k and v are float8_e4m3fn (scale 1: no descaling) and `out` is bf16, FA3's FP8
// forward (it transposes V's tiles in shared memory, so V keeps the cache's row-major layout).
// Strides in elements (= bytes). num_splits 1 runs the persistent kernel, 2 or more the
// split-KV one and the combine (fa3_fp8.cu, fa3_fp8_split.cu).
void run_e4m3_hdim128(const Bf16Hdim128Args& args, cudaStream_t stream);
void run_e4m3_hdim128_split(const Bf16Hdim128Args& args, cudaStream_t stream);

// Launches on `stream`; throws std::runtime_error on a launch error. Only valid on sm_90.
// num_splits 1 runs the persistent kernel, 2 or more the split kernel and the combine.
void run_bf16_hdim128(const Bf16Hdim128Args& args, cudaStream_t stream);

// The two halves of run_bf16_hdim128 (fa3_kernel.cu, fa3_split.cu: separate files so that the
// two kernel instantiations compile in parallel).
void run_bf16_hdim128_whole(const Bf16Hdim128Args& args, cudaStream_t stream);
void run_bf16_hdim128_split(const Bf16Hdim128Args& args, cudaStream_t stream);

}  // namespace longlive::fa3
