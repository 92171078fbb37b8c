"""Probe: cuDNN FP8 SDPA vs bf16 cuDNN SDPA at the DiT's attention shapes (H100 box).

Answers "what would FP8 attention buy" before building it into the engine: times the forward of
cuDNN's FP8 (E4M3) flash attention through the cudnn-frontend Python API against ATen's bf16
cuDNN attention on the same values, and reports the relative L2 between the two outputs.
Shapes: steady denoising step (3 frames of queries over a 12-frame window) and the re-cache
(9 frames of queries). Run on the GPU box with the nvidia-cudnn-frontend wheel installed:
    python3 bench/fp8_attention_probe.py [--json out.json]
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import cudnn

HEADS, HEAD_DIM, TOKENS_PER_FRAME = 12, 128, 1560
E4M3_MAX = 448.0


def time_ms(fn, warmup=5, iters=30):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def fp8_attention(q8, k8, v8, out_dtype):
    """Builds and returns a callable running cuDNN's FP8 SDPA forward into a fresh output."""
    b, h, sq, d = q8.shape
    g = cudnn.pygraph(
        io_data_type=cudnn.data_type.FP8_E4M3,
        intermediate_data_type=cudnn.data_type.FLOAT,
        compute_data_type=cudnn.data_type.FLOAT,
    )
    one = torch.ones(1, 1, 1, 1, device="cuda", dtype=torch.float32)
    scale_s_value = torch.full_like(one, E4M3_MAX)  # softmax probabilities use the full range
    descale_s_value = torch.full_like(one, 1.0 / E4M3_MAX)
    tq, tk, tv = g.tensor_like(q8), g.tensor_like(k8), g.tensor_like(v8)
    scalars = {name: g.tensor_like(one) for name in ("dq", "dk", "dv", "ds", "ss", "so")}
    o, _stats, amax_s, amax_o = g.sdpa_fp8(
        q=tq, k=tk, v=tv,
        descale_q=scalars["dq"], descale_k=scalars["dk"], descale_v=scalars["dv"],
        descale_s=scalars["ds"], scale_s=scalars["ss"], scale_o=scalars["so"],
        generate_stats=False, attn_scale=d ** -0.5, use_causal_mask=False,
    )
    o.set_output(True).set_dim([b, h, sq, d]).set_stride([h * sq * d, sq * d, d, 1])
    o.set_data_type(out_dtype)
    for amax in (amax_s, amax_o):
        amax.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1])
        amax.set_data_type(cudnn.data_type.FLOAT)
    g.validate()
    g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support()
    g.build_plans()
    workspace = torch.empty(max(1, g.get_workspace_size()), device="cuda", dtype=torch.uint8)
    torch_out = torch.bfloat16 if out_dtype == cudnn.data_type.BFLOAT16 else torch.float8_e4m3fn
    out = torch.empty(b, h, sq, d, device="cuda", dtype=torch_out)
    amax_bufs = [torch.empty_like(one), torch.empty_like(one)]
    pack = {tq: q8, tk: k8, tv: v8, o: out, amax_s: amax_bufs[0], amax_o: amax_bufs[1],
            scalars["dq"]: one, scalars["dk"]: one, scalars["dv"]: one,
            scalars["ds"]: descale_s_value, scalars["ss"]: scale_s_value, scalars["so"]: one}

    def run():
        g.execute(pack, workspace)
        return out

    return run


def main():
    results = {"device": torch.cuda.get_device_name(), "cudnn": torch.backends.cudnn.version(),
               "cudnn_frontend": getattr(cudnn, "__version__", "?"), "shapes": []}
    torch.manual_seed(0)
    for label, q_frames, k_frames in (("steady step", 3, 12), ("re-cache", 9, 12)):
        sq, sk = q_frames * TOKENS_PER_FRAME, k_frames * TOKENS_PER_FRAME
        flop = 4.0 * HEADS * sq * sk * HEAD_DIM
        # RMS-normed q/k and unit-scale v, like the DiT's (values well inside E4M3's range).
        q = torch.randn(1, HEADS, sq, HEAD_DIM, device="cuda").to(torch.float8_e4m3fn)
        k = torch.randn(1, HEADS, sk, HEAD_DIM, device="cuda").to(torch.float8_e4m3fn)
        v = torch.randn(1, HEADS, sk, HEAD_DIM, device="cuda").to(torch.float8_e4m3fn)
        qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            ref = F.scaled_dot_product_attention(qb, kb, vb)
            bf16_ms = time_ms(lambda: F.scaled_dot_product_attention(qb, kb, vb))
        row = {"shape": label, "q_tokens": sq, "k_tokens": sk, "bf16_cudnn_ms": bf16_ms,
               "bf16_tflops": flop / bf16_ms / 1e9}
        for name, dtype in (("bf16_out", cudnn.data_type.BFLOAT16),
                            ("fp8_out", cudnn.data_type.FP8_E4M3)):
            try:
                run = fp8_attention(q, k, v, dtype)
                out = run().float()
                ms = time_ms(run)
                row[f"fp8_{name}_ms"] = ms
                row[f"fp8_{name}_tflops"] = flop / ms / 1e9
                row[f"fp8_{name}_rel_l2"] = ((out - ref.float()).norm() / ref.float().norm()).item()
            except Exception as error:  # report what the installed cuDNN refuses
                row[f"fp8_{name}_error"] = str(error).splitlines()[0][:300]
        results["shapes"].append(row)
        print(json.dumps(row))
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
