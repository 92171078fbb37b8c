"""Writes checkpoints shaped like the public ones, with their expected values:
  state_dict.pth             a module's state_dict() (an OrderedDict carrying `_metadata`, which
                             torch.save writes with BUILD), as Wan2.1_VAE.pth, taew2_1.pth and
                             the umT5 encoder file are;
  state_dict_nested.pt       {"generator": state_dict(), "generator_ema": state_dict(), "step": 7},
                             as LongLive's longlive_base.pt is (the same OrderedDict class used twice,
                             so the second is a memo reference);
  state_dict_expected.safetensors  the tensors of both (the nested file's under "generator." /
                             "generator_ema.").
Run with the project venv: .venv/bin/python3 tests/data/make_state_dict_checkpoints.py"""
import os

import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(7)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)
        self.proj = torch.nn.Linear(4, 3)
        self.register_buffer("steps", torch.arange(5, dtype=torch.int64))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(), Block()])
        self.head = torch.nn.Linear(3, 2).to(torch.bfloat16)


def randomised(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


model = randomised(Model())
state = model.state_dict()
assert isinstance(state, dict) and hasattr(state, "_metadata")
torch.save(state, os.path.join(here, "state_dict.pth"))
ema = randomised(Model()).state_dict()
torch.save({"generator": state, "generator_ema": ema, "step": 7},
           os.path.join(here, "state_dict_nested.pt"))
expected = {k: v.clone() for k, v in state.items()}
expected.update({"generator." + k: v.clone() for k, v in state.items()})
expected.update({"generator_ema." + k: v.clone() for k, v in ema.items()})
save_file(expected, os.path.join(here, "state_dict_expected.safetensors"))
