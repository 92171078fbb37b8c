"""Wan2.1 VAE (wan/modules/vae.py WanVAE_) through LongLive's WanVAEWrapper."""
from __future__ import annotations

from unittest import mock

import torch


def vae_config(dim=8):
    return {"dim": dim, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
            "temperal_downsample": [False, True, True], "dropout": 0.0}


def build_model(ll, cfg, state_dict=None):
    model = ll.vae.WanVAE_(**cfg)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval().requires_grad_(False)


def build_wrapper(ll, model):
    """LongLive's WanVAEWrapper (its mean/std constants) around the given tiny WanVAE_."""
    with mock.patch.object(ll.wan_wrapper, "_video_vae", side_effect=lambda **kw: model):
        return ll.wan_wrapper.WanVAEWrapper()


def chunk_sizes(num_latents, chunk):
    out, t = [], 0
    while t < num_latents:
        out.append(min(chunk, num_latents - t))
        t += out[-1]
    return out


def frame_ranges(sizes):
    """Pixel frame range of each streamed chunk: the first latent gives 1 frame, every other 4."""
    out, f, first = [], 0, True
    for n in sizes:
        nf = (1 + 4 * (n - 1)) if first else 4 * n
        out.append([f, f + nf])
        f += nf
        first = False
    return out


def sizes_from_ranges(ranges):
    out = []
    for i, (a, b) in enumerate(ranges):
        out.append((b - a - 1) // 4 + 1 if i == 0 else (b - a) // 4)
    return out


def _kind(x):
    if x is None:
        return "None"
    if isinstance(x, str):
        return x
    return "tensor"


def run(ll, cfg, state_dict, latents, pixels, sizes):
    model = build_model(ll, cfg, state_dict)
    wrap = build_wrapper(ll, model)
    out = {"latent_mean": wrap.mean.clone(), "latent_std": wrap.std.clone(), "latents": latents.clone()}
    with torch.no_grad():
        full = wrap.decode_to_pixel(latents, use_cache=False)
        out["decode_full"] = full.clone()
        # streaming: one clear_cache(), then cached decodes chunk by chunk
        model.clear_cache()
        kinds, t, stream = {}, 0, []
        for i, n in enumerate(sizes):
            stream.append(wrap.decode_to_pixel(latents[:, t:t + n], use_cache=True))
            t += n
            fm = model._feat_map
            kinds[f"after_chunk{i}"] = [_kind(x) for x in fm]
            if i == 0:
                for j, x in enumerate(fm):
                    if isinstance(x, torch.Tensor):
                        out[f"decode_stream.after_chunk0.feat_cache.{j}"] = x.clone()
        stream = torch.cat(stream, 1)
        ranges = frame_ranges(sizes)
        assert stream.shape == full.shape, (stream.shape, full.shape)
        stream_diff = (stream - full).abs().max().item()
        out["encode.pixels"] = pixels.clone()
        out["encode.latents"] = wrap.encode_to_latent(pixels).clone()
    meta = {"stream_chunk_frame_ranges": ranges, "stream_vs_full_maxdiff": stream_diff,
            "decoder_causal_conv_count": model._conv_num, "feat_cache_kinds": kinds}
    return out, meta
