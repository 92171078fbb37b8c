"""VACE on the causal DiT: LongLive v1.0's streaming pipeline whose generator model is wrapped by
Daydream Scope's causal VACE adaptation (`CausalVaceWanModel`), every generator call recorded.

Scope's modules are imported from the tree given with `--scope-src` (daydreamlive/scope@68b0f956,
`src/scope/core/pipelines/wan2_1/vace/`: `models/causal_vace_model.py`, `models/attention_blocks.py`,
`utils/encoding.py`); nothing of them is copied here.  The harness
* builds the pipeline exactly as `fx_dit` does, then replaces the wrapper's tiny `CausalWanModel`
  by `CausalVaceWanModel(model, vace_in_dim, vace_layers)` and loads the VACE tensors into it,
* hands the wrapped model `vace_context=[context of block b]` and `vace_context_scale` in the
  denoising calls of a block whose plan has VACE (Scope's pipeline passes them that way); the
  context pass and the re-cache get none,
* records the hints of each block's first step (the return of `forward_vace`), and patches what
  stops the two codes from running together on a CPU (VACE_PATCHES).

`run_masks` drives Scope's `vace_encode_masks` / `vace_latent` on a random 0/1 mask.
"""
from __future__ import annotations

import importlib
import importlib.util
import os

import torch

import fx_dit
import refimport

SCOPE_REPO = "https://github.com/daydreamlive/scope"
SCOPE_COMMIT = "68b0f956"
VACE_SUBDIR = os.path.join("src", "scope", "core", "pipelines", "wan2_1", "vace")

VACE_PATCHES = [
    "LongLive's CausalWanModel._apply_cache_updates takes (and ignores) the keyword arguments Scope's "
    "wrapper forwards to it (cache_start, sink_recache_after_switch)",
    "self-attention without a KV cache (the VACE blocks only) -> SDPA in float32 over the chunk's true "
    "tokens with LongLive's rope_apply (frame index from 0), instead of flex_attention over the chunk "
    "zero-padded to a multiple of 128 with the padding unmasked",
    "vace_context / vace_context_scale handed to the wrapped model in the denoising calls of a block "
    "with VACE (none in the context pass or the re-cache)",
]

KINDS = ("conditioning", "reference", "both", "none")


class Scope:
    """Handles to Scope's VACE modules, imported from SRC (the repository root or the vace folder)."""

    def __init__(self, src: str):
        src = os.path.abspath(src)
        base = src if os.path.isdir(os.path.join(src, "models")) else os.path.join(src, VACE_SUBDIR)
        model_file = os.path.join(base, "models", "causal_vace_model.py")
        if not os.path.isfile(model_file):
            raise SystemExit(f"--scope-src {src}: not a Scope source tree ({model_file} missing)")
        refimport._stub_package("scope_vace_models", os.path.join(base, "models"))
        self.model = importlib.import_module("scope_vace_models.causal_vace_model")
        spec = importlib.util.spec_from_file_location("scope_vace_encoding",
                                                      os.path.join(base, "utils", "encoding.py"))
        self.encoding = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.encoding)


# --------------------------------------------------------------------------------------- patches
def _patch_self_attention(ll):
    """The VACE blocks' attention: the chunk's own tokens, unpadded (see VACE_PATCHES)."""
    cls = ll.causal_model.CausalWanSelfAttention
    if getattr(cls, "_vace_harness", False):
        return
    original = cls.forward

    def forward(self, x, seq_lens, grid_sizes, freqs, block_mask, kv_cache=None, *args, **kwargs):
        if kv_cache is not None:
            return original(self, x, seq_lens, grid_sizes, freqs, block_mask, kv_cache, *args, **kwargs)
        b, s, n, d = x.shape[0], x.shape[1], self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(b, s, n, d)
        k = self.norm_k(self.k(x)).view(b, s, n, d)
        v = self.v(x).view(b, s, n, d)
        q = ll.model.rope_apply(q, grid_sizes, freqs).type_as(v)
        k = ll.model.rope_apply(k, grid_sizes, freqs).type_as(v)
        out = ll.causal_model.attention(q, k, v)  # refimport routes it to SDPA in float32
        return self.o(out.flatten(2))

    cls.forward = forward
    cls._vace_harness = True


def _tolerant_cache_updates(causal_model):
    original = causal_model._apply_cache_updates

    def apply(kv_cache, cache_update_infos, **_ignored):
        return original(kv_cache, cache_update_infos)

    causal_model._apply_cache_updates = apply


# ----------------------------------------------------------------------------------------- model
def vace_module_template(ll, scope, cfg, pl, vace_layers, in_dim, base_state_dict):
    """The VACE-only tensors (names of Wan2_1-VACE_module_1_3B_bf16.safetensors) of Scope's wrapper
    around the tiny model, in module order: the VACE blocks, then the patch embedding."""
    base = fx_dit.build_model(ll, cfg, pl["local_attn_size"], pl["sink_size"], base_state_dict)
    sd = scope.model.CausalVaceWanModel(base, vace_in_dim=in_dim, vace_layers=list(vace_layers)).state_dict()
    blocks = {k: v for k, v in sd.items() if k.startswith("vace_blocks.")}
    patch = {k: v for k, v in sd.items() if k.startswith("vace_patch_embedding.")}
    return blocks, patch


def wrap_generator(ll, scope, pipe, vace_layers, in_dim, module_weights):
    """Replaces the pipeline's model by Scope's VACE wrapper around it, VACE tensors loaded."""
    _patch_self_attention(ll)
    base = pipe.generator.model
    wrapped = scope.model.CausalVaceWanModel(base, vace_in_dim=in_dim, vace_layers=list(vace_layers))
    _tolerant_cache_updates(base)
    own = wrapped.state_dict()
    missing = [k for k in own if (k.startswith("vace_") and k not in module_weights)]
    extra = [k for k in module_weights if k not in own]
    if missing or extra:
        raise SystemExit(f"VACE weights do not fit the wrapper: missing {missing[:3]}, unexpected {extra[:3]}")
    wrapped.load_state_dict(dict(module_weights), strict=False)
    wrapped.eval().requires_grad_(False)
    pipe.generator.model = wrapped
    return wrapped


def feed_vace(rec, wrapped, plan, contexts):
    """Gives the wrapped model each denoising call's VACE context (plan: block -> {"kind", "scale"},
    contexts: block -> [C, F, h, w]) and records the hints of each block's first step."""
    forward, forward_vace = wrapped.forward, wrapped.forward_vace

    def feed(*args, **kwargs):
        info = rec.pending
        if kwargs.get("kv_cache") is not None and info is not None and info["kind"] == "denoise":
            block = int(info["name"].split(".")[0][1:])
            entry = plan.get(block)
            if entry is not None and entry["kind"] != "none":
                kwargs["vace_context"] = [contexts[block]]
                kwargs["vace_context_scale"] = entry["scale"]
                info["vace"] = {"kind": entry["kind"], "scale": entry["scale"], "context": f"vace_context.b{block}"}
        return forward(*args, **kwargs)

    def hints(*args, **kwargs):
        out = forward_vace(*args, **kwargs)
        name = rec.pending["name"]
        if name.endswith(".s0"):
            rec.tensors[rec.prefix + name + ".hints"] = torch.stack(list(out)).detach().clone()
        return out

    wrapped.forward = feed
    wrapped.forward_vace = hints


def run_stream(ll, scope, cfg, pl, state_dict, module_weights, vace_layers, in_dim, noise, embeds, prompt_order,
               switch_frames, plan, contexts, loop_seed=None, replay_draws=None):
    """One reference inference() with VACE per `plan` (an empty plan: VACE loaded, never given).
    Returns (tensors, calls, draws, output_latents, pipe)."""
    def attach(pipe, rec):
        feed_vace(rec, wrap_generator(ll, scope, pipe, vace_layers, in_dim, module_weights), plan, contexts)

    return fx_dit.run_stream(ll, cfg, pl, state_dict, noise, embeds, prompt_order, switch_frames, record_kv=False,
                             loop_seed=loop_seed, replay_draws=replay_draws, attach=attach)


def context_frames(kind, frames_per_block):
    """Latent frames of a block's VACE context: the block's frames, one reference, or both."""
    return {"conditioning": frames_per_block, "reference": 1, "both": frames_per_block + 1, "none": 0}[kind]


def run_masks(scope, mask, vae_stride, encoded_frames):
    """Scope's mask encoding of `mask` [1, T, H, W] without and with one reference image, and the
    context cat(encoded_frames, mask latent)."""
    (latent,) = scope.encoding.vace_encode_masks([mask], None, vae_stride=tuple(vae_stride))
    (with_ref,) = scope.encoding.vace_encode_masks([mask], [[torch.zeros(1)]], vae_stride=tuple(vae_stride))
    (context,) = scope.encoding.vace_latent([encoded_frames], [latent])
    return {"mask": mask, "mask_latent": latent, "mask_latent_with_one_ref": with_ref,
            "encoded_frames": encoded_frames, "vace_context": context}
