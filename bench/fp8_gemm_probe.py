"""Probe: FP8 GEMM variants vs bf16 at the DiT's linear shapes (4680 tokens, H100 box).

Row-wise scales (what the engine's FP8 linears use: CUTLASS in ATen) against tensor-wise scales
(cuBLASLt) and bf16, for the QKV, square, FFN-up and FFN-down projections of Wan2.1-1.3B.
    python3 bench/fp8_gemm_probe.py [--json out.json]
"""
import json
import sys

import torch

TOKENS = 4680
SHAPES = {"qkv": (1536, 4608), "square (o, cross q/o)": (1536, 1536), "ffn up": (1536, 8960),
          "ffn down": (8960, 1536)}


def time_ms(fn, iters=50):
    for _ in range(10):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def main():
    rows = []
    for name, (k, n) in SHAPES.items():
        x = torch.randn(TOKENS, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5
        x8, w8 = x.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
        flop = 2.0 * TOKENS * k * n
        row = {"shape": name, "m": TOKENS, "k": k, "n": n}
        row["bf16_ms"] = time_ms(lambda: x @ w.t())
        one = torch.ones((), device="cuda")
        row["fp8_tensorwise_ms"] = time_ms(
            lambda: torch._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
        sa = torch.ones(TOKENS, 1, device="cuda")
        sb = torch.ones(1, n, device="cuda")
        row["fp8_rowwise_ms"] = time_ms(
            lambda: torch._scaled_mm(x8, w8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16))
        row["quantize_rowwise_ms"] = time_ms(
            lambda: (x / (x.abs().amax(1, keepdim=True) / 448)).to(torch.float8_e4m3fn))
        for key in ("bf16", "fp8_tensorwise", "fp8_rowwise"):
            row[key + "_tflops"] = flop / row[key + "_ms"] / 1e9
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
