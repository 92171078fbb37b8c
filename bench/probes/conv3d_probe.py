"""Times the Wan VAE encoder's causal 3x3x3 convolutions (bf16, one 4-frame chunk with its 2
cached frames, 480x832) four ways on the GPU: cuDNN conv3d (NCDHW and channels-last-3d), the
three temporal taps stacked into the channels of one conv2d, and three conv2d summed. Tells
whether the encoder's ~100 ms a stream a block (docs/vace.md) is cuDNN's conv3d or arithmetic.
  python3 bench/probes/conv3d_probe.py [--json out.json]"""
import argparse, json, statistics
import torch
import torch.nn.functional as F

torch.backends.cudnn.benchmark = True
dev = "cuda"
# (name, cin, cout, input frames incl. the 2 cached, h, w, count per chunk)
SHAPES = [
    ("l0_96", 96, 96, 6, 480, 832, 4),
    ("l1_96to192", 96, 192, 6, 240, 416, 1),
    ("l1_192", 192, 192, 6, 240, 416, 3),
    ("l2_192to384", 192, 384, 4, 120, 208, 1),
    ("l2_384", 384, 384, 4, 120, 208, 3),
    ("l3_384", 384, 384, 3, 60, 104, 8),
]


def timed(fn, reps=20, warm=5):
    for _ in range(warm):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for a, b in ev:
        a.record(); fn(); b.record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in ev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    total = {}
    for name, cin, cout, t, h, w, count in SHAPES:
        x = torch.randn(1, cin, t, h, w, device=dev, dtype=torch.bfloat16)
        wt = torch.randn(cout, cin, 3, 3, 3, device=dev, dtype=torch.bfloat16) * 0.05
        tout = t - 2
        flops = 2 * 27 * cin * cout * tout * h * w
        xl = x.contiguous(memory_format=torch.channels_last_3d)
        wl = wt.contiguous(memory_format=torch.channels_last_3d)
        # [T, C, H, W] channels-last frames; stacked taps: [Tout, 3C, H, W].
        frames = x[0].permute(1, 0, 2, 3).contiguous(memory_format=torch.channels_last)
        w2 = wt.permute(0, 2, 1, 3, 4).reshape(cout, 3 * cin, 3, 3).contiguous(memory_format=torch.channels_last)
        wtaps = [wt[:, :, k].contiguous(memory_format=torch.channels_last) for k in range(3)]

        def stacked():
            s = torch.cat([frames[k:k + tout] for k in range(3)], dim=1)
            return F.conv2d(s, w2, padding=1)

        def stacked_conv_only(s=torch.cat([frames[k:k + tout] for k in range(3)], dim=1)):
            return F.conv2d(s, w2, padding=1)

        def summed():
            o = F.conv2d(frames[0:tout], wtaps[0], padding=1)
            o += F.conv2d(frames[1:1 + tout], wtaps[1], padding=1)
            o += F.conv2d(frames[2:2 + tout], wtaps[2], padding=1)
            return o

        ref = F.conv3d(x.float(), wt.float(), padding=(0, 1, 1))[0].permute(1, 0, 2, 3)
        err = (stacked().float() - ref).abs().max().item() / ref.abs().max().item()
        res = {
            "conv3d_ncdhw": timed(lambda: F.conv3d(x, wt, padding=(0, 1, 1))),
            "conv3d_cl3d": timed(lambda: F.conv3d(xl, wl, padding=(0, 1, 1))),
            "stacked_conv2d": timed(stacked),
            "stacked_conv2d_only": timed(stacked_conv_only),
            "summed_conv2d": timed(summed),
        }
        row = {"shape": name, "cin": cin, "cout": cout, "frames_out": tout, "h": h, "w": w,
               "count": count, "gflop": flops / 1e9, "stacked_rel_err": err}
        for k, v in res.items():
            row[k + "_ms"] = v
            row[k + "_tflops"] = flops / v / 1e9
            total[k] = total.get(k, 0.0) + v * count
        rows.append(row)
        print(name, " ".join(f"{k}={v:.3f}ms({flops / v / 1e9:.0f}TF)" for k, v in res.items()), f"err={err:.1e}", flush=True)
    print("per chunk of 4 frames, one stream, 3x3x3 convs only:", {k: round(v, 2) for k, v in total.items()})
    print("per block (3 chunks):", {k: round(3 * v, 1) for k, v in total.items()})
    if args.json:
        json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "cudnn": torch.backends.cudnn.version(), "rows": rows,
                   "per_chunk_ms": total}, open(args.json, "w"), indent=1)


main()
