"""Writes the seed corpus of fuzz_torch_checkpoint (tests/fuzz/corpus/torch_checkpoint): small
torch.save files, and bare data.pkl pickles whose storages "0" (256 bytes) and "1" (4 bytes)
match what the fuzzer's archive wrapper provides, plus a pickle that asks for os.system (must be
refused). Run with the project venv: .venv/bin/python3 tests/fuzz/make_seeds.py"""
import io
import os
import pickle
import zipfile

import torch

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "torch_checkpoint")
os.makedirs(out, exist_ok=True)


def save(name, obj):
    torch.save(obj, os.path.join(out, name))


def data_pkl(name, obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        with open(os.path.join(out, name), "wb") as f:
            f.write(z.read(pkl))


w = torch.arange(64, dtype=torch.float32)  # storage "0": 256 bytes
b = torch.arange(4, dtype=torch.uint8)  # storage "1": 4 bytes
save("flat.pt", {"w": w.clone(), "b": b.clone()})
save("views.pt", {"t": w.clone().view(8, 8).t(), "narrow": w.clone()[3:9]})
data_pkl("nested.pkl", {"model": {"w": w.view(4, 16), "b": b}, "step": 7, "note": "x"})
data_pkl("bf16.pkl", {"h": w.view(torch.bfloat16)[:100].view(10, 10)})
data_pkl("list.pkl", [w, (b, 3.5, None, True)])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


with open(os.path.join(out, "os_system.pkl"), "wb") as f:
    f.write(pickle.dumps({"w": Evil()}, protocol=2))

# tests/fuzz/corpus/safetensors: several dtypes, an empty tensor, metadata (fuzz_safetensors_*).
from safetensors.torch import save_file  # noqa: E402

st = os.path.join(os.path.dirname(out), "safetensors")
save_file(
    {
        "a.f32": torch.arange(6, dtype=torch.float32).view(2, 3),
        "b.bf16": torch.arange(4, dtype=torch.bfloat16),
        "c.i64": torch.arange(3, dtype=torch.int64),
        "d.u8": torch.arange(5, dtype=torch.uint8),
        "e.empty": torch.zeros(0, 4, dtype=torch.float16),
        "f.f8": torch.zeros(4, dtype=torch.float8_e4m3fn),
        "g.bool": torch.tensor([True, False]),
    },
    os.path.join(st, "dtypes.safetensors"),
    metadata={"format": "pt", "note": "seed"},
)
