// FA3's FP8 forward (e4m3 q/k/v, bf16 output) for head dim 128 with no mask (see fa3_kernel.h):
// the persistent kernel, in a file of its own so that it compiles beside the bf16 ones (the
// split-KV one: fa3_fp8_split.cu).
// Null descale pointers are scale 1, as our FP8 KV cache and query quantisation store them.

#include "fa3_params.h"
#include "flash_fwd_launch_template.h"

namespace longlive::fa3 {

void run_e4m3_hdim128(const Bf16Hdim128Args& a, cudaStream_t stream) {
  if (a.num_splits > 1) return run_e4m3_hdim128_split(a, stream);
  Flash_fwd_params p = make_fp8_params(a);
  run_flash_fwd<90, 128, 128, /*ClusterM=*/1, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                /*Is_causal=*/false, /*Is_local=*/false, /*Has_softcap=*/false, /*Varlen=*/false,
                /*PagedKVNonTMA=*/false, /*AppendKV=*/false, /*HasQv=*/false, /*PackGQA=*/false,
                /*Split=*/false, /*V_colmajor=*/false>(p, stream);
  check_launch("FP8 forward");
}

}  // namespace longlive::fa3
