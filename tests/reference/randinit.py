"""Deterministic random weights and inputs (seeded CPU generators), as the public fixtures made them.

Each generator is `torch.Generator().manual_seed(seed)`; tensors are drawn with `torch.randn` one
after the other in the order stated per component (the module's `state_dict()` order, or sorted
key order for the LoRA dict), then scaled:
* DiT: weights N/sqrt(fan_in), biases 0.05 N, norm gains 1 + 0.1 N, modulation N/sqrt(dim).
* umT5: token embedding N, linear and relative-position tables N/sqrt(fan_in), norm gains 1 + 0.1 N.
* Wan VAE: weights 0.75 N/sqrt(fan_in), biases 0.05 N, RMS-norm gammas 1 + 0.1 N.
* TAEHV decoder: weights 0.95 N/sqrt(fan_in), biases 0.05 N, the output conv's bias + 0.5; stored
  as float16 (the drawn float32 values rounded to float16, then used in float32).
* LoRA: lora_A N/sqrt(in), lora_B 0.5 N/sqrt(rank), sorted key order.
fan_in = numel of one output row (in channels x kernel).
The public fixtures are reproduced exactly by these rules (checked by --check-against).
"""
from __future__ import annotations

import math

import torch


def _gen(seed):
    return torch.Generator().manual_seed(int(seed))


def _fan_in(t):
    return t[0].numel() if t.ndim > 1 else 1


def dit_weights(template, seed, dim):
    g = _gen(seed)
    out = {}
    for k, t in template.items():
        n = torch.randn(t.shape, generator=g)
        if k.endswith("modulation"):
            v = n / math.sqrt(dim)
        elif "norm" in k and k.endswith("weight"):
            v = 1 + 0.1 * n
        elif k.endswith("bias"):
            v = 0.05 * n
        else:
            v = n / math.sqrt(_fan_in(t))
        out[k] = v.contiguous()
    return out


def umt5_weights(template, seed):
    g = _gen(seed)
    out = {}
    for k, t in template.items():
        n = torch.randn(t.shape, generator=g)
        if k == "token_embedding.weight":
            v = n
        elif "norm" in k:
            v = 1 + 0.1 * n
        else:
            v = n / math.sqrt(_fan_in(t))
        out[k] = v.contiguous()
    return out


def vae_weights(template, seed):
    g = _gen(seed)
    out = {}
    for k, t in template.items():
        n = torch.randn(t.shape, generator=g)
        if k.endswith("gamma"):
            v = 1 + 0.1 * n
        elif k.endswith("bias"):
            v = 0.05 * n
        else:
            v = 0.75 * n / math.sqrt(_fan_in(t))
        out[k] = v.contiguous()
    return out


def taehv_decoder_weights(template, seed, last_bias_key):
    g = _gen(seed)
    out = {}
    for k, t in template.items():
        if not k.startswith("decoder."):
            continue
        n = torch.randn(t.shape, generator=g)
        if k.endswith("bias"):
            v = 0.05 * n
            if k == last_bias_key:
                v = v + 0.5
        else:
            v = 0.95 * n / math.sqrt(_fan_in(t))
        out[k] = v.half().contiguous()
    return out


def lora_weights(template, seed, rank):
    g = _gen(seed)
    out = {}
    for k in sorted(template):
        t = template[k]
        n = torch.randn(t.shape, generator=g)
        if ".lora_A." in k:
            v = n / math.sqrt(t.shape[1])
        else:
            v = 0.5 * n / math.sqrt(rank)
        out[k] = v.contiguous()
    return {k: out[k] for k in template}


def noise(shape, seed):
    return torch.randn(list(shape), generator=_gen(seed))


def vae_inputs(latent_shape, pixel_shape, seed):
    """One generator: the normalised latents (N), then the encoder's pixels (uniform in [-1, 1])."""
    g = _gen(seed)
    latents = torch.randn(list(latent_shape), generator=g)
    pixels = torch.rand(list(pixel_shape), generator=g) * 2 - 1
    return latents, pixels


def token_ids(lengths, text_len, vocab, seed):
    """Per prompt: L-1 ids uniform in [2, vocab), then EOS (1), then padding (0)."""
    g = _gen(seed)
    ids = torch.zeros(len(lengths), text_len, dtype=torch.int64)
    mask = torch.zeros(len(lengths), text_len, dtype=torch.int64)
    for i, L in enumerate(lengths):
        if not 1 <= L <= text_len:
            raise SystemExit(f"prompt length {L} outside 1..{text_len}")
        ids[i, :L - 1] = torch.randint(2, vocab, (L - 1,), generator=g)
        ids[i, L - 1] = 1
        mask[i, :L] = 1
    return ids, mask
