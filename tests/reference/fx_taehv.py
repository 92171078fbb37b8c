"""TAEHV decoder (taehv.py, default constructor = taew2_1 architecture).

The class fixes the widths (256/128/64/64), the latent channels (16) and the patch size (1) for
the Wan 2.1 variant, so the weights are always full size; what can vary is the latent H x W, the
number of latent frames (odd counts too) and the streaming chunk size.
"""
from __future__ import annotations

import torch

ARCH = ("TAEHV default (taew2_1): latent 16, patch 1, decoder_time_upscale (False,True,True), "
        "decoder_space_upscale (True,True,True)")

# split of the decoder tensors over files (< 8 MiB each): the three 256-wide MemBlocks are the big ones
PARTS = [("decoder.0.", "decoder.1.", "decoder.2.", "decoder.3."), ("decoder.4.",), ("decoder.5.",), None]


def part_of(key):
    for i, prefixes in enumerate(PARTS):
        if prefixes is None:
            return i
        if key.startswith(prefixes):
            return i
    raise AssertionError


def build(tmod, dec_weights=None):
    model = tmod.TAEHV(checkpoint_path=None)
    if dec_weights is not None:
        sd = model.state_dict()
        for k, v in dec_weights.items():
            assert sd[k].shape == v.shape, k
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in dec_weights.items()}, strict=False)
        assert not unexpected and all(not k.startswith("decoder.") for k in missing), (missing, unexpected)
    return model.eval().requires_grad_(False)


def last_bias_key(model):
    return [k for k in model.state_dict() if k.startswith("decoder.") and k.endswith(".bias")][-1]


def run(tmod, dec_weights, latents, sizes):
    model = build(tmod, dec_weights)
    with torch.no_grad():
        full = model.decode_video(latents, parallel=True, show_progress_bar=False)
        seq = model.decode_video(latents, parallel=False, show_progress_bar=False)
        streaming = tmod.StreamingTAEHV(model)
        frames, ranges, t = [], [], 0
        for n in sizes:
            start = len(frames)
            for i in range(n):
                f = streaming.decode(latents[:, t + i:t + i + 1])
                while f is not None:
                    frames.append(f)
                    f = streaming.decode()
            ranges.append([start, len(frames)])
            t += n
        stream = torch.cat(frames, 1)
    assert stream.shape == full.shape and seq.shape == full.shape, (stream.shape, seq.shape, full.shape)
    meta = {
        "parallel_vs_sequential_maxdiff": (full - seq).abs().max().item(),
        "frames_to_trim": model.frames_to_trim,
        "stream_vs_full_maxdiff": (full - stream).abs().max().item(),
        "stream_chunk_frame_ranges": ranges,
        "t_upscale": model.t_upscale,
    }
    return {"latents": latents.clone(), "decode_full": full.clone()}, meta
