"""TAEHV encoder (taehv.py, default constructor = taew2_1 architecture): the encoder a fast VACE
input can take instead of the Wan VAE's (Daydream Scope's `vae_type: tae`).

The class fixes the encoder's widths (64), its time down-scaling (2, 2, 1: four frames per latent
frame) and its 16 latent channels, so the weights are always full size; what varies is the frame
size, the frame count (the reference pads a count that is not a multiple of 4 at the end with the
last frame) and how the frames are split into streaming calls.
"""
from __future__ import annotations

import math

import torch

NOTE = ("per case i: case{i}.frames [1, T, 3, H, W] in [0, 1] (the reference's input range), case{i}.latents "
        "[1, T/4, 16, H/8, W/8] (encode_video, parallel), case{i}.latents_odd: the first odd_frames frames, which the "
        "reference pads at the end with the last; encoder.* the weights (fp16)")
ARCH = "TAEHV default (taew2_1): encoder 64 wide, time downscale (2, 2, 1), latent 16, patch 1"


def build(tmod, enc_weights=None):
    model = tmod.TAEHV(checkpoint_path=None)
    if enc_weights is not None:
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in enc_weights.items()},
                                                    strict=False)
        assert not unexpected and all(not k.startswith("encoder.") for k in missing), (missing, unexpected)
    return model.eval().requires_grad_(False)


def weights(model, seed):
    """Random encoder.* tensors (fp16, as taew2_1's file stores them), fan-in scaled."""
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for k, t in model.state_dict().items():
        if not k.startswith("encoder."):
            continue
        n = torch.randn(t.shape, generator=g)
        v = 0.05 * n if k.endswith("bias") else 1.2 * n / math.sqrt(t[0].numel() if t.ndim > 1 else 1)
        out[k] = v.half().contiguous()
    return out


def inputs(frames, height, width, seed):
    """Frames [1, T, 3, H, W] in [0, 1] (the reference's range): a smooth picture moving over time
    plus noise, so that the memory blocks see frames that differ but correlate."""
    g = torch.Generator().manual_seed(int(seed))
    base = torch.rand(1, 1, 3, height // 4, width // 4, generator=g)
    base = torch.nn.functional.interpolate(base[0], size=(height, width), mode="bilinear", align_corners=False)
    out = []
    for t in range(frames):
        shifted = torch.roll(base, shifts=(t, 2 * t), dims=(2, 3))
        out.append((0.8 * shifted + 0.2 * torch.rand(1, 3, height, width, generator=g)).clamp(0, 1))
    return torch.stack(out, 1).contiguous()


def run(tmod, enc_weights, frames, odd_frames):
    model = build(tmod, enc_weights)
    with torch.no_grad():
        full = model.encode_video(frames, parallel=True, show_progress_bar=False)
        seq = model.encode_video(frames, parallel=False, show_progress_bar=False)
        odd = model.encode_video(frames[:, :odd_frames], parallel=True, show_progress_bar=False)
    meta = {
        "parallel_vs_sequential_maxdiff": (full - seq).abs().max().item(),
        "t_downscale": model.t_downscale,
        "odd_frames": odd_frames,
    }
    return {"frames": frames.clone(), "latents": full.clone(), "latents_odd": odd.clone()}, meta
