"""umT5 encoder (wan/modules/t5.py, encoder only) and LongLive's WanTextEncoder.forward."""
from __future__ import annotations

import torch


def umt5_config(vocab=256, dim=64, dim_attn=None, ffn=128, heads=4, layers=2, buckets=32):
    dim_attn = dim if dim_attn is None else dim_attn
    if dim_attn % heads:
        raise SystemExit(f"umT5 dim_attn {dim_attn} not divisible by heads {heads}")
    return {"vocab_size": vocab, "dim": dim, "dim_attn": dim_attn, "dim_ffn": ffn, "num_heads": heads,
            "encoder_layers": layers, "num_buckets": buckets, "shared_pos": False, "dropout": 0.1}


def build_encoder(ll, cfg, state_dict=None):
    """umt5_xxl(encoder_only=True, ...) with the tiny sizes (the reference's own factory)."""
    kw = dict(cfg)
    enc = ll.t5.umt5_xxl(encoder_only=True, return_tokenizer=False, dtype=torch.float32, device="cpu", **kw)
    if state_dict is not None:
        enc.load_state_dict(state_dict, strict=True)
    return enc.eval().requires_grad_(False)


def text_encoder_forward(ll, enc, ids, mask):
    """Run LongLive's WanTextEncoder.forward with a tokenizer stand-in that returns (ids, mask)."""
    Base = ll.wan_wrapper.WanTextEncoder

    class _TinyTextEncoder(Base):
        def __init__(self):
            torch.nn.Module.__init__(self)
            self.text_encoder = enc
            self.tokenizer = lambda texts, return_mask=True, add_special_tokens=True: (ids.clone(), mask.clone())

        @property
        def device(self):
            return torch.device("cpu")

    te = _TinyTextEncoder()
    with torch.no_grad():
        return te(text_prompts=[f"prompt{i}" for i in range(ids.shape[0])])["prompt_embeds"]


def run(ll, cfg, state_dict, ids, mask):
    enc = build_encoder(ll, cfg, state_dict)
    L = ids.shape[1]
    with torch.no_grad():
        raw = enc(ids, mask)
        pe = enc.blocks[0].pos_embedding
        rel = torch.arange(L).unsqueeze(0) - torch.arange(L).unsqueeze(1)
        buckets = pe._relative_position_bucket(rel)
        bias0 = pe(L, L)
    embeds = text_encoder_forward(ll, enc, ids, mask)
    return {
        "input_ids": ids.clone(), "attention_mask": mask.clone(),
        "encoder_out_raw": raw.clone(), "prompt_embeds": embeds.clone(),
        "rel_pos_buckets": buckets.clone(), "layer0_pos_bias": bias0.clone(),
    }
