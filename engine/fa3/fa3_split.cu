// FA3's split-KV forward (each query tile's keys in num_splits parts, fp32 partials) and its
// combine kernel, for bf16 / head dim 128 with no mask (see fa3_kernel.h). Split without varlen
// makes FA3 launch one CTA per (query tile, head, split) instead of its persistent grid; the
// combine weighs the partials by their log-sum-exp into the bf16 output.

#include "fa3_params.h"
#include "flash_fwd_combine_launch_template.h"
#include "flash_fwd_launch_template.h"

namespace longlive::fa3 {

void run_bf16_hdim128_split(const Bf16Hdim128Args& a, cudaStream_t stream) {
  if (a.num_splits < 2 || a.num_splits > 16 || !a.o_accum || !a.lse_accum)
    throw std::runtime_error("FlashAttention-3 split: num_splits " + std::to_string(a.num_splits) +
                             " needs 2..16 and the partial buffers");
  Flash_fwd_params p = make_params(a);
  p.num_splits = a.num_splits;
  p.is_fp32 = false;
  // Partials [splits, batch, heads, q_tokens, 128] and [splits, batch, heads, q_tokens].
  const int64_t rows = a.q_tokens, heads = a.heads, batch = a.batch;
  p.oaccum_ptr = a.o_accum;
  p.oaccum_row_stride = 128;
  p.oaccum_head_stride = rows * 128;
  p.oaccum_batch_stride = heads * rows * 128;
  p.oaccum_split_stride = batch * heads * rows * 128;
  p.softmax_lseaccum_ptr = a.lse_accum;
  p.lseaccum_head_stride = rows;
  p.lseaccum_batch_stride = heads * rows;
  p.lseaccum_split_stride = batch * heads * rows;
  run_flash_fwd<90, 128, 128, /*ClusterM=*/1, cutlass::bfloat16_t, cutlass::bfloat16_t,
                /*Is_causal=*/false, /*Is_local=*/false, /*Has_softcap=*/false, /*Varlen=*/false,
                /*PagedKVNonTMA=*/false, /*AppendKV=*/false, /*HasQv=*/false, /*PackGQA=*/false,
                /*Split=*/true, /*V_colmajor=*/false>(p, stream);
  check_launch("split forward");
  run_mha_fwd_combine_<cutlass::bfloat16_t, float, 128>(p, stream, /*enable_pdl=*/false);
  check_launch("combine");
}

}  // namespace longlive::fa3
