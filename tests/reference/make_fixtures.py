#!/usr/bin/env python3
"""Golden parity fixtures from the public reference code (LongLive v1.0, TAEHV, Scope's causal VACE), any tiny configuration.

Writes the same files, tensor names and metadata keys as the public fixture set (see README.md
beside this script).  Run by hand, not in CI:

    PYTHONPATH=<deps> python3 tests/reference/make_fixtures.py \
        --longlive-src <LongLive@e52d9ef6> --taehv-src <taehv@1f14a568> [--scope-src <scope@68b0f956>] \
        --out <dir> [--config cfg.json] \
        [--set dit.dim=48 --set dit.switch_frames=[9,15]] [--latent 10x6 --window 9 ...] [--only dit,umt5]

    ... --check-against <fixture dir>     replay every stored input through the reference and compare
"""
from __future__ import annotations

import argparse
import copy
import io
import contextlib
import json
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

import fx_vace  # noqa: E402  (Scope itself is imported only by fx_vace.Scope, for the vace component)
import randinit  # noqa: E402
import refimport  # noqa: E402

COMPONENTS = ["dit", "lora", "umt5", "wanvae", "taehv", "taehv_encoder", "vace"]

PUBLIC_CONFIG = {
    "umt5": {"vocab": 256, "dim": 64, "dim_attn": 64, "ffn": 128, "heads": 4, "layers": 2, "buckets": 32,
             "text_len": 32, "lengths": [7, 19, 32], "seed": 2002, "ids_seed": 2003},
    "dit": {"dim": 64, "heads": 2, "layers": 2, "ffn": 128, "freq_dim": 256, "seed": 1001,
            "latent_h": 8, "latent_w": 8, "num_blocks": 8, "frames_per_block": 3,
            "local_attn_size": 9, "sink_size": 3, "switch_frames": [12, 18],
            "denoising_steps": [1000, 750, 500, 250], "warp_denoising_step": True, "timestep_shift": 5.0,
            "context_noise": 0, "noise_seed": 3003, "loop_seed": 3004, "kv_snapshots": True},
    "lora": {"rank": 4, "alpha": 8, "seed": 4004, "noise_seed": 3004, "loop_seed": 3005},
    "wanvae": {"dim": 8, "latent_frames": 9, "chunk": 3, "latent_h": 8, "latent_w": 8,
               "encode_latent_frames": 3, "seed": 5005, "inputs_seed": 5006},
    "taehv": {"seed": 6006, "write_weights": True},
    "taehv_encoder": {"seed": 7007, "inputs_seed": 7008,
                      "cases": [{"frames": 12, "odd_frames": 9, "height": 32, "width": 48},
                                {"frames": 8, "odd_frames": 5, "height": 16, "width": 24}]},
    # The DiT's sizes and loop settings come from "dit"; "layers" replaces its layer count.
    "vace": {"layers": 4, "vace_layers": [0, 2], "in_dim": 96, "switch_frames": [9],
             "plan": [{"kind": "conditioning", "scale": 1.0}, {"kind": "conditioning", "scale": 0.5},
                      {"kind": "reference", "scale": 1.0}, {"kind": "conditioning", "scale": 1.5},
                      {"kind": "none", "scale": 0.0}, {"kind": "conditioning", "scale": 0.75}],
             "seed": 1001, "blocks_seed": 7007, "patch_seed": 7008, "inputs_seed": 7009, "loop_seed": 3011,
             "mask_frames": 12, "mask_height": 64, "mask_width": 64, "mask_seed": 7010},
}

ALIASES = {  # convenience flags -> config keys
    "dim": "dit.dim", "heads": "dit.heads", "layers": "dit.layers", "ffn": "dit.ffn",
    "blocks": "dit.num_blocks", "frames_per_block": "dit.frames_per_block", "window": "dit.local_attn_size",
    "sink": "dit.sink_size", "switch_frames": "dit.switch_frames",
}


# ----------------------------------------------------------------------------------------- files
def _meta_str(v):
    return v if isinstance(v, str) else json.dumps(v)


_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def save(path, tensors, meta):
    """safetensors file with a byte-reproducible layout (safetensors' own writer orders the metadata
    map differently in every process): header keys sorted, tensors in name order, 8-byte aligned."""
    header = {"__metadata__": {k: _meta_str(meta[k]) for k in sorted(meta)}}
    blobs, off = [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    from safetensors import safe_open
    tensors, meta = {}, {}
    with safe_open(path, "pt") as f:
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
        for k, v in (f.metadata() or {}).items():
            try:
                meta[k] = json.loads(v)
            except ValueError:
                meta[k] = v
    return tensors, meta


def prompt_name(i):
    return chr(ord("A") + i) if i < 26 else f"P{i}"


@contextlib.contextmanager
def quiet():
    """The reference prints progress lines; keep them out of the report."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


# ------------------------------------------------------------------------------------ configuration
def set_key(cfg, dotted, value):
    sec, _, key = dotted.partition(".")
    if sec not in cfg or not key:
        raise SystemExit(f"--set {dotted}: unknown section (one of {list(cfg)})")
    if key not in cfg[sec] and not (sec == "umt5" and key == "ids_seed"):
        raise SystemExit(f"--set {dotted}: unknown key (known: {sorted(cfg[sec])})")
    cfg[sec][key] = value


def parse_value(s):
    try:
        return json.loads(s)
    except ValueError:
        return s


def resolve_config(args):
    cfg = copy.deepcopy(PUBLIC_CONFIG)
    if args.config:
        with open(args.config) as f:
            user = json.load(f)
        for sec, vals in user.items():
            if sec in ("name", "components", "command", "note", "reference", "harness_patches", "files"):
                continue
            if sec not in cfg:
                raise SystemExit(f"{args.config}: unknown section {sec}")
            for k, v in vals.items():
                set_key(cfg, f"{sec}.{k}", v)
        if args.only is None and "components" in user:
            args.only = ",".join(user["components"])
        if args.name is None:
            args.name = user.get("name")
        args.note = user.get("note")
    for flag, key in ALIASES.items():
        v = getattr(args, flag)
        if v is not None:
            set_key(cfg, key, v)
    if args.latent:
        h, w = (int(x) for x in args.latent.lower().split("x"))
        cfg["dit"]["latent_h"], cfg["dit"]["latent_w"] = h, w
    for s in args.set or []:
        k, _, v = s.partition("=")
        set_key(cfg, k.strip(), parse_value(v.strip()))
    return cfg


def validate(cfg, only=COMPONENTS):
    d = cfg["dit"]
    for k in ("latent_h", "latent_w"):
        if d[k] % 2:
            raise SystemExit(f"dit.{k} = {d[k]} must be a multiple of the patch size 2")
    n_prompts = len(d["switch_frames"]) + 1
    if any(c in only for c in ("dit", "lora")) and n_prompts > len(cfg["umt5"]["lengths"]):
        raise SystemExit(f"{n_prompts} prompts need {n_prompts} umt5.lengths entries (have {cfg['umt5']['lengths']})")
    if any(L > cfg["umt5"]["text_len"] for L in cfg["umt5"]["lengths"]):
        raise SystemExit("umt5.lengths entries must be <= umt5.text_len")
    if list(d["switch_frames"]) != sorted(d["switch_frames"]) or any(f <= 0 for f in d["switch_frames"]):
        raise SystemExit("dit.switch_frames must be increasing and > 0")
    hd = d["dim"] // d["heads"]
    if d["dim"] % d["heads"] or hd % 2:
        raise SystemExit("dit.dim / dit.heads must be an even integer")
    v = cfg["wanvae"]
    if v["encode_latent_frames"] < 1 or v["latent_frames"] < 1 or v["chunk"] < 1:
        raise SystemExit("wanvae frame counts must be >= 1")
    vc = cfg["vace"]
    layers = vc["vace_layers"]
    if not layers or layers[0] != 0 or layers != sorted(set(layers)) or layers[-1] >= vc["layers"]:
        raise SystemExit(f"vace.vace_layers {layers}: ascending DiT layers from 0 (Scope asserts 0), "
                         f"each < vace.layers = {vc['layers']}")
    for i, entry in enumerate(vc["plan"]):
        if entry.get("kind") not in fx_vace.KINDS:
            raise SystemExit(f"vace.plan[{i}].kind = {entry.get('kind')!r}: one of {list(fx_vace.KINDS)}")
    if len(vc["switch_frames"]) + 1 > len(cfg["umt5"]["lengths"]):
        raise SystemExit("vace.switch_frames: one more prompt than switches, each needs a umt5.lengths entry")
    if vc["mask_height"] % 16 or vc["mask_width"] % 16 or vc["mask_frames"] < 1:
        raise SystemExit("vace.mask_height/mask_width must be multiples of 16 (the VAE's 8 x the patch's 2)")


# ------------------------------------------------------------------------------------- components
class Ctx:
    def __init__(self, ll, tmod, scope=None):
        self.ll = ll
        self.tmod = tmod
        self.scope = scope


def umt5_parts(ctx, cfg):
    import fx_umt5
    u = cfg["umt5"]
    ucfg = fx_umt5.umt5_config(u["vocab"], u["dim"], u["dim_attn"], u["ffn"], u["heads"], u["layers"], u["buckets"])
    template = fx_umt5.build_encoder(ctx.ll, ucfg).state_dict()
    weights = randinit.umt5_weights(template, u["seed"])
    ids, mask = randinit.token_ids(u["lengths"], u["text_len"], u["vocab"], u.get("ids_seed", u["seed"] + 1))
    io_t = fx_umt5.run(ctx.ll, ucfg, weights, ids, mask)
    return ucfg, weights, io_t


def dit_parts(cfg):
    import fx_dit
    d, u = cfg["dit"], cfg["umt5"]
    mcfg = fx_dit.dit_model_config(d["dim"], d["heads"], d["layers"], d["ffn"], d["freq_dim"],
                                   text_dim=u["dim"], text_len=u["text_len"])
    fsl = (d["latent_h"] // 2) * (d["latent_w"] // 2)
    pl = {"num_frame_per_block": d["frames_per_block"], "local_attn_size": d["local_attn_size"],
          "sink_size": d["sink_size"], "global_sink": True, "context_noise": d["context_noise"],
          "denoising_step_list": list(d["denoising_steps"]), "warp_denoising_step": d["warp_denoising_step"],
          "timestep_shift": d["timestep_shift"], "frame_seq_length": fsl}
    return mcfg, pl


def dit_weights_template(ctx, mcfg, pl):
    kw = dict(mcfg)
    kw["patch_size"] = tuple(kw["patch_size"])
    return ctx.ll.causal_model.CausalWanModel(**kw, local_attn_size=pl["local_attn_size"],
                                              sink_size=pl["sink_size"]).state_dict()


def stream_file(ctx, mcfg, pl, weights, noise, embeds, prompts, switches, global_sink, record_kv,
                loop_seed=None, replay=None):
    import fx_dit
    pl = dict(pl, global_sink=global_sink)
    with quiet():
        t, calls, draws, latents, pipe = fx_dit.run_stream(
            ctx.ll, mcfg, pl, weights, noise, embeds, prompts, switches, record_kv=record_kv,
            loop_seed=loop_seed, replay_draws=replay)
    t["output_latents"] = latents.clone()
    t["noise"] = noise.clone()
    for p in prompts:
        t[f"prompt.{p}"] = embeds[p].clone()
    t.update(fx_dit.schedule_tensors(pipe))
    sa = [m for m in pipe.generator.model.modules() if hasattr(m, "max_attention_size")][0]
    num_blocks = noise.shape[1] // pl["num_frame_per_block"]
    meta_pl = fx_dit.pipeline_meta(pl, num_blocks, prompts, switches, int(pipe.kv_cache1[0]["k"].shape[1]),
                                   int(sa.max_attention_size))
    return t, {"pipeline": meta_pl, "calls": calls, "random_draws_in_order": draws}


def generate(ctx, cfg, out, only, log):
    os.makedirs(out, exist_ok=True)
    written = {}

    def put(name, tensors, meta):
        path = os.path.join(out, name)
        save(path, tensors, meta)
        written[name] = os.path.getsize(path)
        log(f"  wrote {name}  ({len(tensors)} tensors, {os.path.getsize(path) / 2**20:.2f} MiB)")

    need_text = any(c in only for c in ("dit", "lora", "umt5", "vace"))
    if need_text:
        ucfg, uw, uio = umt5_parts(ctx, cfg)
        if "umt5" in only:
            put("umt5_weights.safetensors", uw, {"seed": cfg["umt5"]["seed"], "config": ucfg})
            put("umt5_io.safetensors", uio, {"lengths": cfg["umt5"]["lengths"], "config": ucfg,
                                             "text_len": cfg["umt5"]["text_len"]})
    if "dit" in only or "lora" in only:
        d = cfg["dit"]
        mcfg, pl = dit_parts(cfg)
        weights = randinit.dit_weights(dit_weights_template(ctx, mcfg, pl), d["seed"], d["dim"])
        put("dit_weights.safetensors", weights, {
            "note": "CausalWanModel state_dict names; LongLive checkpoints store them under 'generator' with prefix 'model.'",
            "config": mcfg, "seed": d["seed"]})
        n_prompts = len(d["switch_frames"]) + 1
        prompts = [prompt_name(i) for i in range(n_prompts)]
        embeds = {p: uio["prompt_embeds"][i:i + 1].clone() for i, p in enumerate(prompts)}
    if "dit" in only:
        frames = d["num_blocks"] * d["frames_per_block"]
        noise = randinit.noise([1, frames, 16, d["latent_h"], d["latent_w"]], d["noise_seed"])
        seeds = {"weights": d["seed"], "noise": d["noise_seed"], "loop_global_torch_seed": d["loop_seed"]}
        for gs, name in ((True, "dit_stream.safetensors"), (False, "dit_stream_no_global_sink.safetensors")):
            t, meta = stream_file(ctx, mcfg, pl, weights, noise, embeds, prompts, d["switch_frames"], gs,
                                  record_kv=gs and d.get("kv_snapshots", True), loop_seed=d["loop_seed"])
            put(name, t, {"random_draws_in_order": meta["random_draws_in_order"], "pipeline": meta["pipeline"],
                          "calls": meta["calls"], "config": mcfg, "seeds": seeds})
    if "lora" in only:
        import fx_lora
        lc = cfg["lora"]
        with quiet():
            template = fx_lora.template(ctx.ll, mcfg, pl, weights, lc["rank"], lc["alpha"])
        lsd = randinit.lora_weights(template, lc["seed"], lc["rank"])
        put("dit_lora.safetensors", lsd, {
            "alpha": lc["alpha"], "format": "LongLive lora_ckpt: torch.save({'generator_lora': <this dict>}); peft keys",
            "target_modules": "every nn.Linear inside CausalWanAttentionBlock", "rank": lc["rank"],
            "seed": lc["seed"], "scaling": lc["alpha"] / lc["rank"]})
        noise1 = randinit.noise([1, d["frames_per_block"], 16, d["latent_h"], d["latent_w"]], lc["noise_seed"])
        with quiet():
            t, calls, draws, _ = fx_lora.run(ctx.ll, mcfg, dict(pl, global_sink=True), weights, lsd, lc["rank"],
                                             lc["alpha"], noise1, embeds["A"], loop_seed=lc["loop_seed"])
        t["noise"] = noise1
        t["prompt.A"] = embeds["A"].clone()
        put("dit_lora_io.safetensors", t, {
            "calls": calls, "random_draws_in_order": draws,
            "seeds": {"noise": lc["noise_seed"], "loop_global_torch_seed": lc["loop_seed"]},
            "pipeline": {"num_blocks": 1, "prompts": ["A"], "global_sink": True},
            "base_weights": "dit_weights.safetensors", "lora": "dit_lora.safetensors"})
    if "wanvae" in only or "taehv" in only:
        import fx_wanvae
        v = cfg["wanvae"]
        latents, pixels = vae_inputs(cfg)
        sizes = fx_wanvae.chunk_sizes(v["latent_frames"], v["chunk"])
    if "wanvae" in only:
        vcfg = fx_wanvae.vae_config(v["dim"])
        vw = randinit.vae_weights(fx_wanvae.build_model(ctx.ll, vcfg).state_dict(), v["seed"])
        put("wanvae_weights.safetensors", vw, {"config": vcfg, "seed": v["seed"],
                                                "note": "WanVAE_ state_dict names (same as Wan2.1_VAE.pth)"})
        t, meta = fx_wanvae.run(ctx.ll, vcfg, vw, latents, pixels, sizes)
        meta["seeds"] = {"weights": v["seed"], "inputs": v["inputs_seed"]}
        meta["config"] = vcfg
        put("wanvae_io.safetensors", t, meta)
    if "taehv" in only:
        import fx_taehv
        if ctx.tmod is None:
            raise SystemExit("taehv needs --taehv-src")
        model = fx_taehv.build(ctx.tmod)
        tw = randinit.taehv_decoder_weights(model.state_dict(), cfg["taehv"]["seed"], fx_taehv.last_bias_key(model))
        parts = {}
        for k, val in tw.items():
            parts.setdefault(fx_taehv.part_of(k), {})[k] = val
        names = []
        for i in sorted(parts):
            name = f"taehv_decoder_weights.part{i}.safetensors"
            if cfg["taehv"]["write_weights"]:
                put(name, parts[i], {"arch": fx_taehv.ARCH, "seed": cfg["taehv"]["seed"]})
            names.append(name)
        t, meta = fx_taehv.run(ctx.tmod, tw, latents, sizes)
        meta["weights"] = names
        put("taehv_io.safetensors", t, meta)
    if "taehv_encoder" in only:
        import fx_taehv_encoder
        if ctx.tmod is None:
            raise SystemExit("taehv_encoder needs --taehv-src")
        e = cfg["taehv_encoder"]
        ew = fx_taehv_encoder.weights(fx_taehv_encoder.build(ctx.tmod), e["seed"])
        t, meta = dict(ew), {"cases": []}
        for i, c in enumerate(e["cases"]):
            frames = fx_taehv_encoder.inputs(c["frames"], c["height"], c["width"], e["inputs_seed"] + i)
            ct, cm = fx_taehv_encoder.run(ctx.tmod, ew, frames, c["odd_frames"])
            t.update({f"case{i}.{k}": v for k, v in ct.items()})
            meta["cases"].append(cm)
        meta.update({"arch": fx_taehv_encoder.ARCH, "seeds": {"weights": e["seed"], "inputs": e["inputs_seed"]},
                     "note": fx_taehv_encoder.NOTE})
        put("taehv_encoder_io.safetensors", t, meta)
    if "vace" in only:
        generate_vace(ctx, cfg, put, uio)
    return written


# ------------------------------------------------------------------------------------------- VACE
def vace_parts(cfg):
    """The DiT of the VACE files: the "dit" section with vace.layers layers."""
    dcfg = copy.deepcopy(cfg)
    dcfg["dit"]["layers"] = cfg["vace"]["layers"]
    mcfg, pl = dit_parts(dcfg)
    return mcfg, pl


def vace_seeds(vc):
    return {"base": vc["seed"], "vace_blocks": vc["blocks_seed"], "vace_patch_embedding": vc["patch_seed"],
            "inputs": vc["inputs_seed"], "loop_global_torch_seed": vc["loop_seed"]}


def vace_weights(ctx, mcfg, pl, vace_layers, in_dim, seeds):
    """Base DiT and VACE module weights from their seeds (the DiT's rules: randinit.dit_weights)."""
    base = randinit.dit_weights(dit_weights_template(ctx, mcfg, pl), seeds["base"], mcfg["dim"])
    blocks, patch = fx_vace.vace_module_template(ctx.ll, ctx.scope, mcfg, pl, vace_layers, in_dim, base)
    module = {**randinit.dit_weights(blocks, seeds["vace_blocks"], mcfg["dim"]),
              **randinit.dit_weights(patch, seeds["vace_patch_embedding"], mcfg["dim"])}
    return base, module


def vace_stream_tensors(ctx, mcfg, pl, base, module, vace_layers, in_dim, noise, embeds, prompts, switches, plan,
                        contexts, loop_seed=None, replay=None):
    """The recorded VACE stream, and the same stream through LongLive's own model (no wrapper, no VACE)
    with the same draws, as output_latents_without_vace."""
    import fx_dit
    with quiet():
        t, calls, draws, latents, pipe = fx_vace.run_stream(
            ctx.ll, ctx.scope, mcfg, pl, base, module, vace_layers, in_dim, noise, embeds, prompts, switches,
            plan, contexts, loop_seed=loop_seed, replay_draws=replay)
        _, _, _, plain, _ = fx_dit.run_stream(ctx.ll, mcfg, pl, base, noise, embeds, prompts, switches,
                                              record_kv=False, replay_draws=[t[n] for n in draws])
    t["output_latents"] = latents.clone()
    t["output_latents_without_vace"] = plain.clone()
    t["noise"] = noise.clone()
    for p in prompts:
        t[f"prompt.{p}"] = embeds[p].clone()
    for b, c in contexts.items():
        t[f"vace_context.b{b}"] = c.clone()
    t.update(fx_dit.schedule_tensors(pipe))
    sa = [m for m in pipe.generator.model.modules() if hasattr(m, "max_attention_size")][0]
    num_blocks = noise.shape[1] // pl["num_frame_per_block"]
    meta_pl = fx_dit.pipeline_meta(pl, num_blocks, prompts, switches, int(pipe.kv_cache1[0]["k"].shape[1]),
                                   int(sa.max_attention_size))
    return t, calls, draws, meta_pl


def generate_vace(ctx, cfg, put, uio):
    if ctx.scope is None:
        raise SystemExit("vace needs --scope-src")
    vc, d = cfg["vace"], cfg["dit"]
    mcfg, pl = vace_parts(cfg)
    seeds = vace_seeds(vc)
    base, module = vace_weights(ctx, mcfg, pl, vc["vace_layers"], vc["in_dim"], seeds)
    common = {"config": mcfg, "vace_layers": vc["vace_layers"], "vace_in_dim": vc["in_dim"], "seeds": seeds}
    put("vace_dit_weights.safetensors", base, {**common, "note": "CausalWanModel state_dict names, as dit_weights"})
    put("vace_module.safetensors", module,
        {**common, "note": "VACE-only module: the names of Wan2_1-VACE_module_1_3B_bf16.safetensors"})
    # One generator for the inputs: the noise, then each VACE block's context in block order.
    F, h, w = d["frames_per_block"], d["latent_h"], d["latent_w"]
    g = torch.Generator().manual_seed(vc["inputs_seed"])
    noise = torch.randn([1, len(vc["plan"]) * F, 16, h, w], generator=g)
    plan, contexts, plan_meta = {}, {}, []
    for b, entry in enumerate(vc["plan"]):
        n = fx_vace.context_frames(entry["kind"], F)
        scale = float(entry["scale"]) if n else 0.0
        plan[b] = {"kind": entry["kind"], "scale": scale}
        plan_meta.append({"block": b, "kind": entry["kind"], "latent_frames": n, "scale": scale})
        if n:
            contexts[b] = torch.randn([vc["in_dim"], n, h, w], generator=g)
    prompts = [prompt_name(i) for i in range(len(vc["switch_frames"]) + 1)]
    embeds = {p: uio["prompt_embeds"][i:i + 1].clone() for i, p in enumerate(prompts)}
    t, calls, draws, meta_pl = vace_stream_tensors(ctx, mcfg, pl, base, module, vc["vace_layers"], vc["in_dim"],
                                                   noise, embeds, prompts, vc["switch_frames"], plan, contexts,
                                                   loop_seed=vc["loop_seed"])
    put("vace_stream.safetensors", t, {**common, "plan": plan_meta, "pipeline": meta_pl, "calls": calls,
                                       "random_draws_in_order": draws,
                                       "patches": refimport.PATCHES + fx_vace.VACE_PATCHES})
    mg = torch.Generator().manual_seed(vc["mask_seed"])
    T, H, W = vc["mask_frames"], vc["mask_height"], vc["mask_width"]
    mask = (torch.rand([1, T, H, W], generator=mg) > 0.5).float()
    encoded = torch.randn([32, (T + 3) // 4, H // 8, W // 8], generator=mg)
    put("vace_masks.safetensors", fx_vace.run_masks(ctx.scope, mask, [4, 8, 8], encoded),
        {"frames": T, "height": H, "width": W, "vae_stride": [4, 8, 8], "seed": vc["mask_seed"],
         "note": "encoded_frames stands for cat(inactive, reactive) latents (Wan VAE encoder)"})


def vae_inputs(cfg):
    v = cfg["wanvae"]
    n = v["encode_latent_frames"]
    return randinit.vae_inputs([1, v["latent_frames"], 16, v["latent_h"], v["latent_w"]],
                               [1, 3, 1 + 4 * (n - 1), 8 * v["latent_h"], 8 * v["latent_w"]], v["inputs_seed"])


# ------------------------------------------------------------------------------------------ check
class Report:
    def __init__(self, log):
        self.rows = []
        self.log = log
        self.failures = []

    def add(self, file, what, diff, tol, note=""):
        ok = diff is not None and diff <= tol
        self.rows.append((file, what, diff, ok, note))
        if not ok:
            self.failures.append((file, what, diff, note))
        d = "n/a" if diff is None else f"{diff:.3g}"
        self.log(f"  {'ok  ' if ok else 'FAIL'} {file:42s} {what:34s} {d:>10s} {note}")


def maxdiff(ref, got, keys=None, skip=()):
    keys = sorted(ref) if keys is None else keys
    worst, where, missing = 0.0, None, []
    for k in keys:
        if k in skip:
            continue
        if k not in got:
            missing.append(k)
            continue
        a, b = ref[k], got[k]
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            missing.append(f"{k}: {tuple(b.shape)} {b.dtype} != stored {tuple(a.shape)} {a.dtype}")
            continue
        if a.numel() == 0:
            continue
        dd = (a.double() - b.double()).abs().max().item()
        if where is None or dd > worst:
            worst, where = dd, k
    return worst, where, missing


def folder_config(d):
    p = os.path.join(d, "config.json")
    if os.path.isfile(p):
        with open(p) as f:
            return json.load(f)
    return {}


def group_of(key):
    """b3.s1.flow_pred -> b*.s*.flow_pred, switch0.recache.kv.l1.k -> switch*.recache.kv.l*.k"""
    import re
    return re.sub(r"(?<=[bls])\d+(?=\.)|(?<=switch)\d+|(?<=feat_cache\.)\d+|(?<=blocks\.)\d+", "*", key)


def group_diffs(ref, got):
    out = {}
    for k in ref:
        if k in got and ref[k].shape == got[k].shape and ref[k].numel():
            dd = (ref[k].double() - got[k].double()).abs().max().item()
            g = group_of(k)
            out[g] = max(out.get(g, 0.0), dd)
    return out


def check(ctx, d, only, log, tol_replay, tol_exact=0.0, detail=False):
    rep = Report(log)
    path = lambda n: os.path.join(d, n)  # noqa: E731
    have = lambda n: os.path.isfile(path(n))  # noqa: E731

    def cmp_file(fname, ref, got, skip=(), what="replayed outputs", tol=None):
        worst, where, missing = maxdiff(ref, got, skip=skip)
        extra = sorted(set(got) - set(ref) - set(skip))
        note = f"(worst: {where})" if where and worst > 0 else ""
        if missing:
            note += f" MISSING/MISMATCHED {missing[:3]}{'...' if len(missing) > 3 else ''}"
            worst = float("inf")
        if extra:
            note += f" EXTRA {extra[:3]}"
            worst = float("inf")
        rep.add(fname, what, worst, tol_replay if tol is None else tol, note)
        if detail and what == "replayed outputs":
            for g, v in sorted(group_diffs(ref, got).items()):
                log(f"         {g:60s} {v:.3g}")

    def same(fname, what, a, b):
        rep.add(fname, what, 0.0 if a == b else float("inf"), 0.0, "" if a == b else f"{a!r} != {b!r}"[:300])

    # ---- umT5
    if "umt5" in only and have("umt5_io.safetensors"):
        import fx_umt5
        uw, mw = load(path("umt5_weights.safetensors"))
        ui, mi = load(path("umt5_io.safetensors"))
        ucfg = mw["config"]
        regen = randinit.umt5_weights(fx_umt5.build_encoder(ctx.ll, ucfg).state_dict(), mw["seed"])
        cmp_file("umt5_weights.safetensors", uw, regen, what="regenerated from seed", tol=tol_exact)
        ids_seed = folder_config(d).get("umt5", {}).get("ids_seed", mw["seed"] + 1)  # public set: seed + 1
        ids, mask = randinit.token_ids(mi["lengths"], mi["text_len"], ucfg["vocab_size"], ids_seed)
        cmp_file("umt5_io.safetensors", {"input_ids": ui["input_ids"], "attention_mask": ui["attention_mask"]},
                 {"input_ids": ids, "attention_mask": mask}, what=f"ids regenerated (seed {ids_seed})", tol=0.0)
        got = fx_umt5.run(ctx.ll, ucfg, uw, ui["input_ids"], ui["attention_mask"])
        cmp_file("umt5_io.safetensors", ui, got)
    # ---- DiT stream
    if "dit" in only and have("dit_weights.safetensors"):
        w, mw = load(path("dit_weights.safetensors"))
        mcfg = mw["config"]
        for fname in ("dit_stream.safetensors", "dit_stream_no_global_sink.safetensors"):
            if not have(fname):
                continue
            st, ms = load(path(fname))
            pl = dict(ms["pipeline"])
            if fname == "dit_stream.safetensors":
                tmpl = dit_weights_template(ctx, mcfg, pl)
                cmp_file("dit_weights.safetensors", w, randinit.dit_weights(tmpl, mw["seed"], mcfg["dim"]),
                         what="regenerated from seed", tol=tol_exact)
            prompts = pl["prompts"]
            embeds = {p: st[f"prompt.{p}"] for p in prompts}
            draws = [st[n] for n in ms["random_draws_in_order"]]
            record_kv = any(".kv.l" in k for k in st)
            t, meta = stream_file(ctx, mcfg, {k: pl[k] for k in pl}, w, st["noise"], embeds, prompts,
                                  pl["switch_frame_indices"], pl["global_sink"], record_kv, replay=draws)
            cmp_file(fname, st, t)
            same(fname, "metadata calls", ms["calls"], meta["calls"])
            same(fname, "metadata random_draws_in_order", ms["random_draws_in_order"], meta["random_draws_in_order"])
            same(fname, "metadata pipeline", ms["pipeline"], meta["pipeline"])
            same(fname, "metadata config", ms["config"], mcfg)
            # seeds: the noise and the loop's draws
            sd = ms["seeds"]
            n2 = randinit.noise(st["noise"].shape, sd["noise"])
            torch.manual_seed(sd["loop_global_torch_seed"])
            regen = {"noise": n2}
            for n in ms["random_draws_in_order"]:
                regen[n] = torch.randn_like(st[n])
            cmp_file(fname, {k: st[k] for k in regen}, regen, what="noise+draws regenerated from seeds", tol=tol_exact)
            if "umt5" in only and have("umt5_io.safetensors"):
                ui, _ = load(path("umt5_io.safetensors"))
                pe = {f"prompt.{p}": ui["prompt_embeds"][i:i + 1] for i, p in enumerate(prompts)}
                cmp_file(fname, {k: st[k] for k in pe}, pe, what="prompt.* == umt5 prompt_embeds rows", tol=0.0)
    # ---- LoRA
    if "lora" in only and have("dit_lora_io.safetensors"):
        import fx_lora
        w, mw = load(path("dit_weights.safetensors"))
        mcfg = mw["config"]
        if have("dit_stream.safetensors"):
            _, ms = load(path("dit_stream.safetensors"))
            pl = dict(ms["pipeline"], global_sink=True)
        else:  # LoRA-only folder: the loop settings come from its config.json
            fc = folder_config(d)
            if "dit" not in fc:
                raise SystemExit(f"{d}: dit_lora_io needs dit_stream.safetensors or config.json for the loop settings")
            _, pl = dit_parts(fc)
        lsd, ml = load(path("dit_lora.safetensors"))
        lio, mio = load(path("dit_lora_io.safetensors"))
        with quiet():
            tmpl = fx_lora.template(ctx.ll, mcfg, pl, w, ml["rank"], ml["alpha"])
        cmp_file("dit_lora.safetensors", lsd, randinit.lora_weights(tmpl, ml["seed"], ml["rank"]),
                 what="regenerated from seed", tol=tol_exact)
        draws = [lio[f"lora.{n}"] for n in mio["random_draws_in_order"]]
        with quiet():
            t, calls, dr, _ = fx_lora.run(ctx.ll, mcfg, pl, w, lsd, ml["rank"], ml["alpha"], lio["noise"],
                                          lio["prompt.A"], replay_draws=draws)
        t["noise"] = lio["noise"]
        t["prompt.A"] = lio["prompt.A"]
        cmp_file("dit_lora_io.safetensors", lio, t)
        same("dit_lora_io.safetensors", "metadata calls", mio["calls"], calls)
        sd = mio["seeds"]
        torch.manual_seed(sd["loop_global_torch_seed"])
        regen = {"noise": randinit.noise(lio["noise"].shape, sd["noise"])}
        for n in mio["random_draws_in_order"]:
            regen[f"lora.{n}"] = torch.randn_like(lio[f"lora.{n}"])
        cmp_file("dit_lora_io.safetensors", {k: lio[k] for k in regen}, regen,
                 what="noise+draws regenerated from seeds", tol=tol_exact)
    # ---- Wan VAE
    vio = None
    if ("wanvae" in only or "taehv" in only) and have("wanvae_io.safetensors"):
        vio, mio = load(path("wanvae_io.safetensors"))
    if "wanvae" in only and vio is not None:
        import fx_wanvae
        vw, mw = load(path("wanvae_weights.safetensors"))
        vcfg = mw["config"]
        cmp_file("wanvae_weights.safetensors", vw,
                 randinit.vae_weights(fx_wanvae.build_model(ctx.ll, vcfg).state_dict(), mw["seed"]),
                 what="regenerated from seed", tol=tol_exact)
        sizes = fx_wanvae.sizes_from_ranges(mio["stream_chunk_frame_ranges"])
        t, meta = fx_wanvae.run(ctx.ll, vcfg, vw, vio["latents"], vio["encode.pixels"], sizes)
        cmp_file("wanvae_io.safetensors", vio, t)
        for k in ("stream_chunk_frame_ranges", "feat_cache_kinds", "decoder_causal_conv_count"):
            same("wanvae_io.safetensors", f"metadata {k}", mio[k], meta[k])
        rep.add("wanvae_io.safetensors", "stream vs full (this run)", meta["stream_vs_full_maxdiff"], max(tol_replay, 1e-5))
        lat, px = randinit.vae_inputs(vio["latents"].shape, vio["encode.pixels"].shape, mio["seeds"]["inputs"])
        cmp_file("wanvae_io.safetensors", {"latents": vio["latents"], "encode.pixels": vio["encode.pixels"]},
                 {"latents": lat, "encode.pixels": px}, what="inputs regenerated from seed", tol=tol_exact)
    # ---- TAEHV
    if "taehv" in only and have("taehv_io.safetensors"):
        import fx_taehv
        import fx_wanvae
        if ctx.tmod is None:
            raise SystemExit("checking taehv needs --taehv-src")
        tio, mt = load(path("taehv_io.safetensors"))
        model = fx_taehv.build(ctx.tmod)
        if all(have(n) for n in mt["weights"]):
            tw, seed = {}, None
            for name in mt["weights"]:
                part, mp = load(path(name))
                tw.update(part)
                seed = mp["seed"]
            regen = randinit.taehv_decoder_weights(model.state_dict(), seed, fx_taehv.last_bias_key(model))
            cmp_file("taehv_decoder_weights.part*.safetensors", tw, regen, what="regenerated from seed", tol=tol_exact)
        else:  # folder without the (full-size) weight files: they follow from the seed in config.json
            seed = folder_config(d).get("taehv", {}).get("seed", PUBLIC_CONFIG["taehv"]["seed"])
            tw = randinit.taehv_decoder_weights(model.state_dict(), seed, fx_taehv.last_bias_key(model))
            log(f"  note taehv weights not in {d}: regenerated from seed {seed} (config.json)")
        sizes = fx_wanvae.sizes_from_ranges(mt["stream_chunk_frame_ranges"])
        t, meta = fx_taehv.run(ctx.tmod, tw, tio["latents"], sizes)
        cmp_file("taehv_io.safetensors", tio, t)
        same("taehv_io.safetensors", "metadata stream_chunk_frame_ranges", mt["stream_chunk_frame_ranges"],
             meta["stream_chunk_frame_ranges"])
        rep.add("taehv_io.safetensors", "stream vs full (this run)", meta["stream_vs_full_maxdiff"], max(tol_replay, 1e-5),
                "(streaming and parallel decodes differ by float rounding)")
        if vio is not None:
            cmp_file("taehv_io.safetensors", {"latents": tio["latents"]}, {"latents": vio["latents"]},
                     what="latents == wanvae_io latents", tol=0.0)
    # ---- VACE
    if "vace" in only and (have("vace_stream.safetensors") or have("vace_masks.safetensors")):
        if ctx.scope is None:
            raise SystemExit("checking vace needs --scope-src")
    if "vace" in only and have("vace_stream.safetensors"):
        base, _ = load(path("vace_dit_weights.safetensors"))
        module, _ = load(path("vace_module.safetensors"))
        st, ms = load(path("vace_stream.safetensors"))
        mcfg, pl = ms["config"], dict(ms["pipeline"])
        layers, in_dim = ms["vace_layers"], ms["vace_in_dim"]
        rb, rm = vace_weights(ctx, mcfg, pl, layers, in_dim, ms["seeds"])
        cmp_file("vace_dit_weights.safetensors", base, rb, what="regenerated from seed", tol=tol_exact)
        cmp_file("vace_module.safetensors", module, rm, what="regenerated from seeds", tol=tol_exact)
        plan = {e["block"]: {"kind": e["kind"], "scale": e["scale"]} for e in ms["plan"]}
        contexts = {b: st[f"vace_context.b{b}"] for b in plan if f"vace_context.b{b}" in st}
        prompts = pl["prompts"]
        embeds = {p: st[f"prompt.{p}"] for p in prompts}
        draws = [st[n] for n in ms["random_draws_in_order"]]
        t, calls, dr, _ = vace_stream_tensors(ctx, mcfg, pl, base, module, layers, in_dim, st["noise"], embeds,
                                              prompts, pl["switch_frame_indices"], plan, contexts, replay=draws)
        cmp_file("vace_stream.safetensors", st, t)
        same("vace_stream.safetensors", "metadata calls", ms["calls"], calls)
        same("vace_stream.safetensors", "metadata random_draws_in_order", ms["random_draws_in_order"], dr)
    if "vace" in only and have("vace_masks.safetensors"):
        m, mm = load(path("vace_masks.safetensors"))
        got = fx_vace.run_masks(ctx.scope, m["mask"], mm["vae_stride"], m["encoded_frames"])
        cmp_file("vace_masks.safetensors", m, got, tol=0.0)
    return rep


# ---------------------------------------------------------------------------------------- compare
def compare_dirs(a, b, log):
    """Structure and values of every fixture file in A against the same file in B."""
    bad = 0
    for name in sorted(os.listdir(a)):
        if not name.endswith(".safetensors"):
            continue
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not os.path.isfile(pb):
            log(f"  {name:42s} missing in {b}")
            bad += 1
            continue
        ta, ma = load(pa)
        tb, mb = load(pb)
        issues = []
        if set(ta) != set(tb):
            issues.append(f"tensor names differ: only A {sorted(set(ta) - set(tb))[:3]}, only B {sorted(set(tb) - set(ta))[:3]}")
        shape_bad = [k for k in set(ta) & set(tb) if ta[k].shape != tb[k].shape or ta[k].dtype != tb[k].dtype]
        if shape_bad:
            issues.append(f"shape/dtype differ: {shape_bad[:3]}")
        if set(ma) != set(mb):
            issues.append(f"metadata keys differ: {sorted(set(ma) ^ set(mb))}")
        meta_diff = [k for k in set(ma) & set(mb) if ma[k] != mb[k]]
        worst, where, _ = maxdiff(ta, tb, keys=[k for k in ta if k in tb and k not in shape_bad])
        bad += bool(issues)
        log(f"  {name:42s} max|A-B| {worst:.3g} ({where})  metadata values differing: {meta_diff or 'none'}"
            + ("".join("\n      " + i for i in issues) if issues else ""))
    return bad


# ------------------------------------------------------------------------------------------- main
def command_line(argv):
    """The command as run, with the local reference paths replaced by placeholders."""
    argv = list(argv if argv is not None else sys.argv[1:])
    out = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev == "--longlive-src":
            a = "<LongLive@e52d9ef6>"
        elif prev == "--taehv-src":
            a = "<taehv@1f14a568>"
        elif a.startswith("--longlive-src="):
            a = "--longlive-src=<LongLive@e52d9ef6>"
        elif a.startswith("--taehv-src="):
            a = "--taehv-src=<taehv@1f14a568>"
        elif prev == "--scope-src":
            a = "<scope@68b0f956>"
        elif a.startswith("--scope-src="):
            a = "--scope-src=<scope@68b0f956>"
        out.append(shlex.quote(a) if not a.startswith("<") else a)
    return " ".join(out)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--longlive-src", help="extracted NVlabs/LongLive at e52d9ef6 (v1.0 branch)")
    ap.add_argument("--taehv-src", help="extracted madebyollin/taehv at 1f14a568 (needed for taehv)")
    ap.add_argument("--scope-src", help="extracted daydreamlive/scope at 68b0f956, the repository root or its "
                                        "src/scope/core/pipelines/wan2_1/vace folder (needed for vace)")
    ap.add_argument("--clone-refs", metavar="DIR",
                    help="git clone both references at the pinned commits into DIR (needs internet) and use them")
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--config", help="JSON file: sections umt5/dit/lora/wanvae/taehv overriding the public config; "
                                     "optional 'components' and 'name'")
    ap.add_argument("--set", action="append", metavar="SECTION.KEY=JSON", help="override one config value")
    ap.add_argument("--only", help=f"comma list of components ({','.join(COMPONENTS)}); default all")
    ap.add_argument("--name", help="name recorded in config.json")
    ap.add_argument("--latent", metavar="HxW", help="DiT latent size (multiples of 2), e.g. 10x6")
    for flag in ALIASES:
        ap.add_argument("--" + flag.replace("_", "-"), dest=flag, type=parse_value,
                        help=f"= --set {ALIASES[flag]}=VALUE")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    ap.add_argument("--check-against", metavar="DIR", help="replay the fixtures in DIR through the reference and compare")
    ap.add_argument("--detail", action="store_true", help="check: also print the max diff per tensor group")
    ap.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"),
                    help="compare names, shapes, dtypes, metadata and values of the fixture files of two folders")
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="check: max abs diff accepted for replayed outputs (default 1e-4, the public README's "
                         "test tolerance; the report prints every file's actual max diff)")
    args = ap.parse_args(argv)

    if args.compare:
        return 1 if compare_dirs(args.compare[0], args.compare[1], print) else 0
    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(cfg, indent=2))
        return 0
    only = COMPONENTS if not args.only else [c.strip() for c in args.only.split(",") if c.strip()]
    bad = [c for c in only if c not in COMPONENTS]
    if bad:
        raise SystemExit(f"--only: unknown {bad}")
    if args.clone_refs:
        args.longlive_src = refimport.clone_at(refimport.LONGLIVE_REPO, refimport.LONGLIVE_COMMIT,
                                               os.path.join(args.clone_refs, "LongLive"))
        args.taehv_src = refimport.clone_at(refimport.TAEHV_REPO, refimport.TAEHV_COMMIT,
                                            os.path.join(args.clone_refs, "taehv"))
        if "vace" in only:
            args.scope_src = refimport.clone_at(fx_vace.SCOPE_REPO, fx_vace.SCOPE_COMMIT,
                                                os.path.join(args.clone_refs, "scope"))
    needs_longlive = any(c in only for c in ("dit", "lora", "umt5", "wanvae", "vace"))
    if needs_longlive and not args.longlive_src:
        raise SystemExit("--longlive-src (or --clone-refs) is required")
    ll = None
    if args.longlive_src:
        with quiet():
            ll = refimport.LongLive(args.longlive_src)
    tmod = refimport.load_taehv(args.taehv_src) if args.taehv_src else None
    scope = None
    if args.scope_src:
        scope = fx_vace.Scope(args.scope_src)
    ctx = Ctx(ll, tmod, scope)
    torch.set_grad_enabled(False)
    log = lambda s: print(s, flush=True)  # noqa: E731

    if args.check_against:
        log(f"checking {args.check_against} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        t0 = time.time()
        rep = check(ctx, args.check_against, only, log, args.tolerance, detail=args.detail)
        log(f"done in {time.time() - t0:.1f} s: {len(rep.rows) - len(rep.failures)} ok, {len(rep.failures)} failed")
        return 1 if rep.failures else 0

    if not args.out:
        raise SystemExit("--out is required (or --check-against)")
    validate(cfg, only)
    t0 = time.time()
    log(f"generating {only} into {args.out}")
    written = generate(ctx, cfg, args.out, only, log)
    record = {
        "name": args.name or os.path.basename(os.path.abspath(args.out)),
        **({"note": args.note} if getattr(args, "note", None) else {}),
        "components": [c for c in COMPONENTS if c in only],
        "command": "python3 tests/reference/make_fixtures.py " + command_line(argv),
        "reference": {"longlive": f"NVlabs/LongLive@{refimport.LONGLIVE_COMMIT}",
                      "taehv": f"madebyollin/taehv@{refimport.TAEHV_COMMIT}",
                      **({"scope": f"daydreamlive/scope@{fx_vace.SCOPE_COMMIT}"} if "vace" in only else {}),
                      "torch": torch.__version__},
        "harness_patches": refimport.PATCHES + (fx_vace.VACE_PATCHES if "vace" in only else []),
        **cfg,
        "files": written,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    total = sum(written.values())
    log(f"done in {time.time() - t0:.1f} s, {len(written)} files, {total / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
