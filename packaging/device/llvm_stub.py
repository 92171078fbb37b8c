#!/usr/bin/env python3
"""Writes the assembly of a stand-in libLLVM-15.so.1 for Mesa's DRI driver (Xvfb's GLX).

Xvfb's GLX extension loads Mesa's swrast_dri.so only to list visuals and configs; the clients
render through NVIDIA's GLX. swrast_dri.so links libLLVM-15 (llvmpipe), 112 MB: this defines
just the symbols the driver imports (functions return 0, objects are zeroed with the real size),
under the LLVM_15 version, so the driver loads. Run Xvfb with GALLIUM_DRIVER=softpipe and
DRAW_USE_LLVM=0 so nothing calls into it.
  llvm_stub.py DRIVER.so REAL_libLLVM-15.so.1 > stub.s
"""
import subprocess
import sys


def dyn_syms(path):
    out = subprocess.run(["readelf", "--dyn-syms", "-W", path], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0].endswith(":") and f[0] != "Num:":
            yield f


driver, real = sys.argv[1], sys.argv[2]
sizes = {f[7].split("@")[0]: int(f[2], 0) for f in dyn_syms(real) if f[6] != "UND"}
print(".text")
for f in dyn_syms(driver):
    if f[6] != "UND" or "@LLVM_15" not in f[7]:
        continue
    name = f[7].split("@")[0]
    if f[3] == "OBJECT":
        size = max(sizes.get(name, 64), 8)
        print(f".data\n.globl {name}\n.type {name},@object\n.size {name},{size}\n.balign 16\n"
              f"{name}:\n.zero {size}\n.text")
    else:
        print(f".globl {name}\n.type {name},@function\n{name}:\nxor %eax,%eax\nret")
