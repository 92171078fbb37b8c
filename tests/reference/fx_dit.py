"""Causal Wan DiT + LongLive streaming loop: drive the reference pipeline and record every call.

The reference `InteractiveCausalInferencePipeline` runs unchanged; the harness
* gives it a tiny `CausalWanModel` (through `WanDiffusionWrapper`'s own constructor, with
  `CausalWanModel.from_pretrained` answering the tiny model instead of reading a checkpoint),
* sets the pipeline's hard-coded sizes (`num_transformer_blocks`, `frame_seq_length`, the KV and
  cross-attention cache tensor shapes) to the tiny model's,
* passes stand-ins for the text encoder (returns the given prompt embeddings) and the VAE
  (the latents are what is recorded),
* records inputs/outputs of every generator call with forward hooks, and every `randn_like`
  draw of the loop (or, in replay mode, feeds stored draws back in that order).
"""
from __future__ import annotations

import contextlib
from unittest import mock

import torch

DEFAULT_STEPS = [1000, 750, 500, 250]


def dit_model_config(dim=64, heads=2, layers=2, ffn=128, freq_dim=256, text_dim=64, text_len=32,
                     in_dim=16, out_dim=16, eps=1e-6):
    d = dim // heads
    if dim % heads or d % 2:
        raise SystemExit(f"dim {dim} / heads {heads}: head dim must be an even integer")
    return {"model_type": "t2v", "patch_size": [1, 2, 2], "text_len": text_len, "in_dim": in_dim, "dim": dim,
            "ffn_dim": ffn, "freq_dim": freq_dim, "text_dim": text_dim, "out_dim": out_dim, "num_heads": heads,
            "num_layers": layers, "qk_norm": True, "cross_attn_norm": True, "eps": eps}


def build_model(ll, cfg, local_attn_size, sink_size, state_dict):
    kw = dict(cfg)
    kw["patch_size"] = tuple(kw["patch_size"])
    model = ll.causal_model.CausalWanModel(**kw, local_attn_size=local_attn_size, sink_size=sink_size)
    missing, unexpected = model.load_state_dict(state_dict, strict=True)
    return model.eval().requires_grad_(False)


class _PromptEncoder(torch.nn.Module):
    """Stand-in for WanTextEncoder: the prompt 'text' is the key of a precomputed embedding."""

    def __init__(self, embeds):
        super().__init__()
        self.embeds = embeds

    def forward(self, text_prompts):
        if len(text_prompts) == 1:
            return {"prompt_embeds": self.embeds[text_prompts[0]]}
        return {"prompt_embeds": torch.cat([self.embeds[p] for p in text_prompts], 0)}


class _LatentVAE(torch.nn.Module):
    """Stand-in for WanVAEWrapper at the end of inference(): the latents are the recorded output."""

    def decode_to_pixel(self, latent, use_cache=False):
        return latent


def pipeline_args(pl):
    from omegaconf import OmegaConf
    return OmegaConf.create({
        "denoising_step_list": list(pl["denoising_step_list"]),
        "warp_denoising_step": bool(pl["warp_denoising_step"]),
        "num_frame_per_block": int(pl["num_frame_per_block"]),
        "model_name": "Wan2.1-T2V-1.3B",
        "model_kwargs": {"local_attn_size": int(pl["local_attn_size"]), "timestep_shift": float(pl["timestep_shift"]),
                         "sink_size": int(pl["sink_size"])},
        "global_sink": bool(pl["global_sink"]),
        "context_noise": pl["context_noise"],
    })


def build_pipeline(ll, cfg, pl, state_dict, embeds):
    """The reference InteractiveCausalInferencePipeline around a tiny CausalWanModel."""
    args = pipeline_args(pl)
    model = build_model(ll, cfg, pl["local_attn_size"], pl["sink_size"], state_dict)

    def from_pretrained(path, local_attn_size=-1, sink_size=0, **kw):
        assert local_attn_size == pl["local_attn_size"] and sink_size == pl["sink_size"]
        return model

    with mock.patch.object(ll.wan_wrapper.CausalWanModel, "from_pretrained", side_effect=from_pretrained):
        pipe = ll.interactive.InteractiveCausalInferencePipeline(
            args, device=torch.device("cpu"), text_encoder=_PromptEncoder(embeds), vae=_LatentVAE())
    heads, head_dim = cfg["num_heads"], cfg["dim"] // cfg["num_heads"]
    pipe.num_transformer_blocks = cfg["num_layers"]
    pipe.frame_seq_length = pl["frame_seq_length"]

    # the reference allocates [B, size, 12, 128] (the 1.3B's heads) and 30 layers: same dicts, tiny shapes
    orig_kv, orig_ca = pipe._initialize_kv_cache, pipe._initialize_crossattn_cache

    def init_kv(batch_size, dtype, device, kv_cache_size_override=None):
        orig_kv(batch_size, dtype=dtype, device=device, kv_cache_size_override=kv_cache_size_override)
        for c in pipe.kv_cache1:
            size = c["k"].shape[1]
            c["k"] = torch.zeros([batch_size, size, heads, head_dim], dtype=dtype, device=device)
            c["v"] = torch.zeros([batch_size, size, heads, head_dim], dtype=dtype, device=device)

    def init_ca(batch_size, dtype, device):
        orig_ca(batch_size=batch_size, dtype=dtype, device=device)
        for c in pipe.crossattn_cache:
            c["k"] = torch.zeros([batch_size, cfg["text_len"], heads, head_dim], dtype=dtype, device=device)
            c["v"] = torch.zeros([batch_size, cfg["text_len"], heads, head_dim], dtype=dtype, device=device)

    pipe._initialize_kv_cache = init_kv
    pipe._initialize_crossattn_cache = init_ca
    return pipe


def sigma_lookup(scheduler, t):
    """The wrapper's sigma look-up (nearest scheduler timestep), as float32 [N]."""
    t = t.flatten().double()
    ts = scheduler.timesteps.double()
    idx = torch.argmin((ts.unsqueeze(0) - t.unsqueeze(1)).abs(), dim=1)
    return scheduler.sigmas.double()[idx].float()


def _tvals(t):
    out = []
    for v in t.flatten().tolist():
        v = float(v)
        if v not in out:
            out.append(v)
    return out


class StreamRecorder:
    """Hooks on the pipeline's generator: names and records every call of one inference()."""

    def __init__(self, pipe, prompt_names, record_kv, prefix=""):
        self.pipe = pipe
        self.prompt_names = prompt_names  # id(embedding tensor) -> name
        self.record_kv = record_kv
        self.prefix = prefix
        self.tensors = {}
        self.calls = []
        self.draws = []
        self.block_calls = {}
        self.in_recache = False
        self.n_switch = 0
        self.pending = None
        self.last_denoise_name = None
        self.steps = len(pipe.denoising_step_list)
        F = pipe.num_frame_per_block
        self.block_tokens = F * pipe.frame_seq_length

    def _kv0(self):
        c = self.pipe.kv_cache1[0]
        return [int(c["global_end_index"].item()), int(c["local_end_index"].item())]

    def _snapshot(self, name):
        for L, c in enumerate(self.pipe.kv_cache1):
            for key in ("k", "v", "global_end_index", "local_end_index"):
                self.tensors[f"{name}.kv.l{L}.{key}"] = c[key].detach().clone()

    def pre_hook(self, module, args, kwargs):
        cs = int(kwargs["current_start"])
        if self.in_recache:
            name, kind = f"switch{self.n_switch}.recache", "recache"
            self.n_switch += 1
        else:
            b = cs // self.block_tokens
            n = self.block_calls.get(b, 0)
            self.block_calls[b] = n + 1
            if n < self.steps:
                name, kind = f"b{b}.s{n}", "denoise"
            elif n == self.steps:
                name, kind = f"b{b}.ctx", "context"
            else:
                raise RuntimeError(f"unexpected extra generator call for block {b}")
        x = kwargs["noisy_image_or_video"]
        t = kwargs["timestep"]
        emb = kwargs["conditional_dict"]["prompt_embeds"]
        self.pending = {
            "index": len(self.calls), "name": name, "kind": kind, "current_start": cs,
            "num_frames": int(x.shape[1]), "t": _tvals(t), "prompt": self.prompt_names.get(id(emb), "?"),
            "sink_recache_after_switch": bool(kwargs.get("sink_recache_after_switch", False)),
            "kv_before": self._kv0(),
        }
        p = self.prefix + name
        self.tensors[p + ".x_in"] = x.detach().clone()
        self.tensors[p + ".t"] = t.detach().clone()
        self.tensors[p + ".sigma"] = sigma_lookup(self.pipe.scheduler, t)

    def post_hook(self, module, args, kwargs, output):
        flow, x0 = output[0], output[1]
        info = self.pending
        info["kv_after"] = self._kv0()
        p = self.prefix + info["name"]
        self.tensors[p + ".flow_pred"] = flow.detach().clone()
        self.tensors[p + ".x0_pred"] = x0.detach().clone()
        if self.record_kv and info["kind"] in ("context", "recache"):
            base = p if info["kind"] == "recache" else self.prefix + info["name"].split(".")[0]
            self._snapshot(base)
        if info["kind"] == "denoise":
            self.last_denoise_name = p
        self.calls.append(info)
        self.pending = None

    @contextlib.contextmanager
    def attached(self, replay_draws=None):
        gen = self.pipe.generator
        h1 = gen.register_forward_pre_hook(self.pre_hook, with_kwargs=True)
        h2 = gen.register_forward_hook(self.post_hook, with_kwargs=True)
        orig_recache = self.pipe._recache_after_switch

        def recache(*a, **kw):
            self.in_recache = True
            try:
                return orig_recache(*a, **kw)
            finally:
                self.in_recache = False

        self.pipe._recache_after_switch = recache
        orig_randn_like = torch.randn_like
        replay = list(replay_draws) if replay_draws is not None else None

        def randn_like(t, *a, **kw):
            name = self.last_denoise_name + ".renoise"
            if replay is not None:
                if not replay:
                    raise RuntimeError("replay: more random draws than stored")
                r = replay.pop(0).to(dtype=t.dtype)
                if tuple(r.shape) != tuple(t.shape):
                    raise RuntimeError(f"replay: draw shape {tuple(r.shape)} != {tuple(t.shape)}")
            else:
                r = orig_randn_like(t, *a, **kw)
            self.tensors[name] = r.detach().clone()
            self.draws.append(name[len(self.prefix):])
            return r

        torch.randn_like = randn_like
        try:
            yield self
        finally:
            torch.randn_like = orig_randn_like
            self.pipe._recache_after_switch = orig_recache
            h1.remove()
            h2.remove()


def schedule_tensors(pipe):
    steps = pipe.denoising_step_list.clone().float()
    return {
        "schedule.denoising_step_list": steps,
        "schedule.step_sigmas": sigma_lookup(pipe.scheduler, steps),
        "schedule.scheduler_timesteps": pipe.scheduler.timesteps.clone().float(),
        "schedule.scheduler_sigmas": pipe.scheduler.sigmas.clone().float(),
    }


def run_stream(ll, cfg, pl, state_dict, noise, embeds, prompt_order, switch_frames, record_kv,
               loop_seed=None, replay_draws=None, prefix="", lora=None, attach=None):
    """One reference inference() with recording. Returns (tensors, calls, draws, output_latents, pipe).

    embeds: name -> [1, text_len, text_dim]; prompt_order: the segment prompts in order.
    lora: optional callable(pipe) applied after the pipeline is built (PEFT adapter).
    attach: optional callable(pipe, recorder) applied once the recorder exists (the VACE wrapper).
    """
    pipe = build_pipeline(ll, cfg, pl, state_dict, embeds)
    if lora is not None:
        lora(pipe)
    names = {id(v): k for k, v in embeds.items()}
    rec = StreamRecorder(pipe, names, record_kv, prefix)
    if attach is not None:
        attach(pipe, rec)
    with torch.no_grad(), rec.attached(replay_draws):
        if loop_seed is not None:
            torch.manual_seed(loop_seed)
        _, latents = pipe.inference(noise, text_prompts_list=[[p] for p in prompt_order],
                                    switch_frame_indices=list(switch_frames), return_latents=True)
    return rec.tensors, rec.calls, rec.draws, latents, pipe


def pipeline_meta(pl, num_blocks, prompts, switch_frames, kv_cache_tokens, max_attention_size):
    out = {k: pl[k] for k in ("num_frame_per_block", "local_attn_size", "sink_size", "global_sink", "context_noise",
                              "denoising_step_list", "warp_denoising_step", "timestep_shift", "frame_seq_length")}
    out.update({"kv_cache_tokens": kv_cache_tokens, "max_attention_size": max_attention_size, "num_blocks": num_blocks,
                "prompts": list(prompts), "switch_frame_indices": list(switch_frames)})
    return out
