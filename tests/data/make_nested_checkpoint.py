"""Writes nested_checkpoint.pt (a LongLive-style torch.save dict) and its expected values in
nested_checkpoint_expected.safetensors. Run with the project venv: .venv/bin/python3 tests/data/make_nested_checkpoint.py"""
import os
import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
g = torch.Generator().manual_seed(123)
tensors = {
    "generator.model.blocks.0.self_attn.q.weight": torch.randn(4, 4, generator=g),
    "generator.model.patch_embedding.bias": torch.randn(4, generator=g).to(torch.bfloat16),
    "generator_lora.base_model.model.blocks.0.ffn.0.lora_A.weight": torch.randn(2, 4, generator=g),
    "generator.model.step_ids": torch.arange(5, dtype=torch.int64),
}
ckpt = {"generator": {}, "generator_lora": {}, "step": 3, "note": "not a tensor"}
for name, t in tensors.items():
    top, rest = name.split(".", 1)
    ckpt[top][rest] = t
torch.save(ckpt, os.path.join(here, "nested_checkpoint.pt"))
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(here, "nested_checkpoint_expected.safetensors"))
