#pragma once
// Fills FA3's parameter struct from our plain arguments (runtime/fa3_kernel.h); shared by the
// persistent and the split-KV launch files.
#include <stdexcept>
#include <string>

#include "fa3_checks.h"  // first: FA3's checks throw instead of exiting
#include "flash.h"
#include "runtime/fa3_kernel.h"

namespace longlive::fa3 {

inline Flash_fwd_params make_params(const Bf16Hdim128Args& a) {
  Flash_fwd_params p{};
  p.q_ptr = const_cast<void*>(a.q);
  p.k_ptr = const_cast<void*>(a.k);
  p.v_ptr = const_cast<void*>(a.v);
  p.o_ptr = a.out;
  p.softmax_lse_ptr = a.lse;
  p.q_batch_stride = a.q_batch_stride;
  p.q_row_stride = a.q_row_stride;
  p.q_head_stride = a.q_head_stride;
  p.k_batch_stride = a.k_batch_stride;
  p.k_row_stride = a.k_row_stride;
  p.k_head_stride = a.k_head_stride;
  p.v_batch_stride = a.v_batch_stride;
  p.v_row_stride = a.v_row_stride;
  p.v_head_stride = a.v_head_stride;
  p.v_dim_stride = 1;
  p.o_batch_stride = a.o_batch_stride;
  p.o_row_stride = a.o_row_stride;
  p.o_head_stride = a.o_head_stride;
  p.b = a.batch;
  p.b_k = a.batch;
  p.h = a.heads;
  p.h_k = a.kv_heads;
  p.seqlen_q = a.q_tokens;
  p.seqlen_k = a.kv_tokens;
  p.seqlen_q_rounded = (a.q_tokens + 127) / 128 * 128;
  p.seqlen_k_rounded = (a.kv_tokens + 127) / 128 * 128;
  p.total_q = a.batch * a.q_tokens;
  p.total_k = a.batch * a.kv_tokens;
  p.d = p.d_rounded = p.dv = p.dv_rounded = 128;
  p.scale_softmax = a.softmax_scale;
  p.softcap = 0.f;
  p.p_dropout = 1.f;
  p.rp_dropout = 1.f;
  p.p_dropout_in_uint8_t = 255;
  // No mask: the window spans every key of every query (FA3's convention for "not local").
  p.is_causal = false;
  p.is_local = false;
  p.window_size_left = a.kv_tokens - 1;
  p.window_size_right = a.q_tokens - 1;
  p.attention_chunk = 0;
  p.is_bf16 = true;
  p.num_splits = 1;
  p.pack_gqa = false;
  p.arch = 90;
  p.num_sm = a.sm_count;
  return p;
}

// FP8 inputs (e4m3 at scale 1: no descaling), bf16 output by the template's ElementOut.
inline Flash_fwd_params make_fp8_params(const Bf16Hdim128Args& a) {
  Flash_fwd_params p = make_params(a);
  p.is_bf16 = false;
  p.is_e4m3 = true;
  p.q_descale_ptr = p.k_descale_ptr = p.v_descale_ptr = nullptr;
  return p;
}

// The split-KV kernel's fp32 partials: o_accum [splits, batch, heads, q_tokens, 128] and
// lse_accum [splits, batch, heads, q_tokens], both contiguous (owned by the caller).
inline void set_split_partials(Flash_fwd_params& p, const Bf16Hdim128Args& a) {
  const int64_t rows = a.q_tokens, heads = a.heads, batch = a.batch;
  p.num_splits = a.num_splits;
  p.is_fp32 = false;
  p.oaccum_ptr = a.o_accum;
  p.oaccum_row_stride = 128;
  p.oaccum_head_stride = rows * 128;
  p.oaccum_batch_stride = heads * rows * 128;
  p.oaccum_split_stride = batch * heads * rows * 128;
  p.softmax_lseaccum_ptr = a.lse_accum;
  p.lseaccum_head_stride = rows;
  p.lseaccum_batch_stride = heads * rows;
  p.lseaccum_split_stride = batch * heads * rows;
}

inline void check_split_args(const Bf16Hdim128Args& a, const char* what) {
  if (a.num_splits < 2 || a.num_splits > 16 || !a.o_accum || !a.lse_accum)
    throw std::runtime_error(std::string("FlashAttention-3 ") + what + ": num_splits " +
                             std::to_string(a.num_splits) + " needs 2..16 and the partial buffers");
}

// The combine kernel (fp32 partials -> bf16 out), built once in fa3_split.cu for both splits.
void run_combine_bf16_hdim128(Flash_fwd_params& p, cudaStream_t stream);

inline void check_launch(const char* what) {
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    throw std::runtime_error(std::string("FlashAttention-3 ") + what +
                             " launch failed: " + cudaGetErrorString(e));
}

}  // namespace longlive::fa3
