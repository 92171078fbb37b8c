// FA3's split-KV forward (each query tile's keys in num_splits parts, fp32 partials) and its
// combine kernel, for bf16 / head dim 128 with no mask (see fa3_kernel.h). Split without varlen
// makes FA3 launch one CTA per (query tile, head, split) instead of its persistent grid; the
// combine weighs the partials by their log-sum-exp into the bf16 output.

#include "fa3_params.h"
#include "flash_fwd_combine_launch_template.h"
#include "flash_fwd_launch_template.h"

namespace longlive::fa3 {

void run_bf16_hdim128_split(const Bf16Hdim128Args& a, cudaStream_t stream) {
  check_split_args(a, "split");
  Flash_fwd_params p = make_params(a);
  set_split_partials(p, a);
  run_flash_fwd<90, 128, 128, /*ClusterM=*/1, cutlass::bfloat16_t, cutlass::bfloat16_t,
                /*Is_causal=*/false, /*Is_local=*/false, /*Has_softcap=*/false, /*Varlen=*/false,
                /*PagedKVNonTMA=*/false, /*AppendKV=*/false, /*HasQv=*/false, /*PackGQA=*/false,
                /*Split=*/true, /*V_colmajor=*/false>(p, stream);
  check_launch("split forward");
  run_combine_bf16_hdim128(p, stream);
}

void run_combine_bf16_hdim128(Flash_fwd_params& p, cudaStream_t stream) {
  run_mha_fwd_combine_<cutlass::bfloat16_t, float, 128>(p, stream, /*enable_pdl=*/false);
  check_launch("combine");
}

}  // namespace longlive::fa3
