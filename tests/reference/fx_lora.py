"""LongLive v1.0 LoRA: utils/lora_utils.configure_lora_for_model + peft.set_peft_model_state_dict,
applied to the generator's CausalWanModel exactly as interactive_inference.py does."""
from __future__ import annotations

import torch

import fx_dit


def lora_config(rank, alpha):
    from omegaconf import OmegaConf
    return OmegaConf.create({"type": "lora", "rank": int(rank), "alpha": alpha, "dropout": 0.0, "verbose": False})


def apply(ll, pipe, rank, alpha, lora_sd=None):
    """Wrap pipe.generator.model with PEFT (and load lora_sd). Returns the PEFT state-dict template."""
    import peft
    pipe.generator.model = ll.lora_utils.configure_lora_for_model(
        pipe.generator.model, model_name="generator", lora_config=lora_config(rank, alpha), is_main_process=False)
    template = peft.get_peft_model_state_dict(pipe.generator.model)
    if lora_sd is not None:
        if set(lora_sd) != set(template):
            raise SystemExit("LoRA dict keys do not match the PEFT model")
        result = peft.set_peft_model_state_dict(pipe.generator.model, lora_sd)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise SystemExit(f"LoRA load: unexpected keys {unexpected[:4]}")
    return template


def template(ll, cfg, pl, base_sd, rank, alpha):
    """The PEFT LoRA state-dict names/shapes for this model (values are PEFT's init)."""
    model = fx_dit.build_model(ll, cfg, pl["local_attn_size"], pl["sink_size"], base_sd)
    import peft
    pm = ll.lora_utils.configure_lora_for_model(model, model_name="generator",
                                                lora_config=lora_config(rank, alpha), is_main_process=False)
    return {k: v.clone() for k, v in peft.get_peft_model_state_dict(pm).items()}


def run(ll, cfg, pl, base_sd, lora_sd, rank, alpha, noise, embed_a, loop_seed=None, replay_draws=None):
    """One block, prompt A, through the same loop with the adapter active; then the same run after
    merge_and_unload() (its block-0 merged weights are kept).
    Returns (tensors, calls, draws, unmerged_vs_merged_maxdiff)."""
    pl1 = dict(pl)
    embeds = {"A": embed_a}
    merged = {}

    def with_lora(pipe):
        apply(ll, pipe, rank, alpha, lora_sd)

    tensors, calls, draws, latents, pipe = fx_dit.run_stream(
        ll, cfg, pl1, base_sd, noise, embeds, ["A"], [], record_kv=False,
        loop_seed=loop_seed, replay_draws=replay_draws, prefix="lora.", lora=with_lora)
    tensors["output_latents"] = latents.clone()

    def with_merged(pipe):
        apply(ll, pipe, rank, alpha, lora_sd)
        pipe.generator.model = pipe.generator.model.merge_and_unload()
        for name, mod in pipe.generator.model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name.startswith("blocks.0."):  # block 0, as the public set
                merged[f"merged.{name}.weight"] = mod.weight.detach().clone()

    replay2 = [tensors[f"lora.{d}"] for d in draws] if replay_draws is not None else None
    _, _, _, latents_m, _ = fx_dit.run_stream(
        ll, cfg, pl1, base_sd, noise, embeds, ["A"], [], record_kv=False,
        loop_seed=loop_seed, replay_draws=replay2, prefix="merged_run.", lora=with_merged)
    tensors["output_latents_merged_weights"] = latents_m.clone()
    tensors.update(merged)
    return tensors, calls, draws, (latents - latents_m).abs().max().item()
