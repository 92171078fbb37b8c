"""Import the public reference code (LongLive v1.0 and TAEHV) from an extracted source tree.

Nothing of the reference is copied here: the modules are imported from the directory given on
the command line.  Only what stops them from running on a CPU-only machine in float32 is
patched, and every patch is listed in PATCHES (it is also written into the fixture metadata):

* `torch.cuda.current_device` answers 0 while the reference modules are imported: two of them
  evaluate it at import time (`utils/memory.py` builds a `cuda:N` device object,
  `wan/modules/t5.py` uses it as a default argument).  Nothing is put on that device.
* The package `__init__` files of `wan`, `wan.modules`, `utils` and `pipeline` are not executed
  (they import training code, xfuser, CLIP, ...); the modules needed are imported one by one.
* Attention without flash-attn: the DiT's self-attention calls `attention()` and its cross
  attention calls `flash_attention()`, which casts to bfloat16 (or asserts CUDA).  Both are
  routed to the reference's own `attention()` fallback (`scaled_dot_product_attention`) with
  `dtype=float32`, so the whole model runs in float32.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import types

import torch

LONGLIVE_REPO = "https://github.com/NVlabs/LongLive"
LONGLIVE_COMMIT = "e52d9ef6"
TAEHV_REPO = "https://github.com/madebyollin/taehv"
TAEHV_COMMIT = "1f14a568"

PATCHES = [
    "torch.cuda.current_device() -> 0 during import of the reference modules (import-time device lookups only)",
    "package __init__ files of wan, wan.modules, utils, pipeline skipped; modules imported individually",
    "wan.modules.causal_model.attention and wan.modules.model.flash_attention -> "
    "wan.modules.attention.attention(..., dtype=torch.float32) (SDPA fallback kept in float32)",
]


@contextlib.contextmanager
def _cuda_device_zero():
    orig = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0
    try:
        yield
    finally:
        torch.cuda.current_device = orig


def _stub_package(name: str, path: str):
    if name in sys.modules:
        return sys.modules[name]
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    mod.__package__ = name
    sys.modules[name] = mod
    return mod


def clone_at(repo: str, commit: str, dest: str) -> str:
    """git clone REPO into DEST and check out COMMIT (needs internet)."""
    if not os.path.isdir(dest):
        subprocess.check_call(["git", "clone", "--quiet", repo, dest])
    subprocess.check_call(["git", "-C", dest, "checkout", "--quiet", commit])
    return dest


class LongLive:
    """Handles to the reference modules (imported from SRC)."""

    def __init__(self, src: str):
        src = os.path.abspath(src)
        if not os.path.isfile(os.path.join(src, "wan", "modules", "causal_model.py")):
            raise SystemExit(f"--longlive-src {src}: not a LongLive source tree (wan/modules/causal_model.py missing)")
        self.src = src
        if src not in sys.path:
            sys.path.insert(0, src)
        for pkg in ("wan", "wan.modules", "utils", "pipeline"):
            _stub_package(pkg, os.path.join(src, *pkg.split(".")))
        with _cuda_device_zero():
            self.attention = importlib.import_module("wan.modules.attention")
            self.model = importlib.import_module("wan.modules.model")
            self.causal_model = importlib.import_module("wan.modules.causal_model")
            self.t5 = importlib.import_module("wan.modules.t5")
            self.vae = importlib.import_module("wan.modules.vae")
            self.scheduler = importlib.import_module("utils.scheduler")
            self.wan_wrapper = importlib.import_module("utils.wan_wrapper")
            self.lora_utils = importlib.import_module("utils.lora_utils")
            self.causal_inference = importlib.import_module("pipeline.causal_inference")
            self.interactive = importlib.import_module("pipeline.interactive_causal_inference")
        self._patch_attention()

    def _patch_attention(self):
        ref_attention = self.attention.attention
        if self.attention.FLASH_ATTN_2_AVAILABLE or self.attention.FLASH_ATTN_3_AVAILABLE:
            raise SystemExit("flash-attn is importable here; run the harness in an environment without it (CPU, float32)")

        def attention_fp32(q, k, v, q_lens=None, k_lens=None, **kwargs):
            kwargs["dtype"] = torch.float32
            return ref_attention(q, k, v, q_lens=q_lens, k_lens=k_lens, **kwargs)

        def flash_attention_fp32(q, k, v, q_lens=None, k_lens=None, **kwargs):
            kwargs.pop("version", None)
            kwargs["dtype"] = torch.float32
            return ref_attention(q, k, v, q_lens=q_lens, k_lens=k_lens, **kwargs)

        self.causal_model.attention = attention_fp32
        self.model.flash_attention = flash_attention_fp32


def load_taehv(src: str):
    src = os.path.abspath(src)
    path = os.path.join(src, "taehv.py")
    if not os.path.isfile(path):
        raise SystemExit(f"--taehv-src {src}: taehv.py missing")
    spec = importlib.util.spec_from_file_location("taehv_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
