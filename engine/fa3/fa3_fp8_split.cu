// FA3's split-KV FP8 forward (e4m3 q/k/v, fp32 partials) with the bf16 combine (fa3_split.cu),
// for head dim 128 with no mask: the `tail` and `splitN` schedules of fa3::attention_fp8.

#include "fa3_params.h"
#include "flash_fwd_launch_template.h"

namespace longlive::fa3 {

void run_e4m3_hdim128_split(const Bf16Hdim128Args& a, cudaStream_t stream) {
  check_split_args(a, "FP8 split");
  Flash_fwd_params p = make_fp8_params(a);
  set_split_partials(p, a);
  run_flash_fwd<90, 128, 128, /*ClusterM=*/1, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                /*Is_causal=*/false, /*Is_local=*/false, /*Has_softcap=*/false, /*Varlen=*/false,
                /*PagedKVNonTMA=*/false, /*AppendKV=*/false, /*HasQv=*/false, /*PackGQA=*/false,
                /*Split=*/true, /*V_colmajor=*/false>(p, stream);
  check_launch("FP8 split forward");
  run_combine_bf16_hdim128(p, stream);
}

}  // namespace longlive::fa3
