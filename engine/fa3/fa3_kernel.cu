// Thin glue onto FlashAttention-3's Hopper forward kernel (see fa3_kernel.h). We instantiate the
// kernel template for exactly the configurations we run instead of FA3's run_mha_fwd_
// dispatcher, which would also build the causal and cluster variants: this file the persistent
// kernel, fa3_split.cu the split-KV one and the combine. FA3's own sources are compiled from
// LONGLIVE_FA3_DIR; nothing of them is copied here.

#include "fa3_params.h"
#include "flash_fwd_launch_template.h"

namespace longlive::fa3 {

void run_bf16_hdim128_whole(const Bf16Hdim128Args& a, cudaStream_t stream) {
  Flash_fwd_params p = make_params(a);
  run_flash_fwd<90, 128, 128, /*ClusterM=*/1, cutlass::bfloat16_t, cutlass::bfloat16_t,
                /*Is_causal=*/false, /*Is_local=*/false, /*Has_softcap=*/false, /*Varlen=*/false,
                /*PagedKVNonTMA=*/false, /*AppendKV=*/false, /*HasQv=*/false, /*PackGQA=*/false,
                /*Split=*/false, /*V_colmajor=*/false>(p, stream);
  check_launch("forward");
}

void run_bf16_hdim128(const Bf16Hdim128Args& a, cudaStream_t stream) {
  if (a.num_splits <= 1)
    run_bf16_hdim128_whole(a, stream);
  else
    run_bf16_hdim128_split(a, stream);
}

}  // namespace longlive::fa3
