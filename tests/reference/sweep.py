#!/usr/bin/env python3
"""Sweep over KV-cache / prompt-switch edge cases of the DiT stream, and over VACE configurations
(outputs are not committed).

    PYTHONPATH=<deps> python3 tests/reference/sweep.py --longlive-src DIR [--scope-src DIR] --out /work/fixture-sweep [--check]

Each case is written to OUT/<name>/ (dit_weights + dit_stream + dit_stream_no_global_sink +
config.json, and for the vace_* cases the vace_* files too) by make_fixtures.py with small dims;
--check replays every folder afterwards. The vace_* cases need --scope-src.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_fixtures  # noqa: E402

SMALL = {"dim": 32, "heads": 2, "layers": 2, "ffn": 64, "latent_h": 4, "latent_w": 4}
TEXT = {"vocab": 64, "dim": 32, "dim_attn": 32, "ffn": 64, "heads": 2, "layers": 1, "buckets": 16,
        "text_len": 16, "lengths": [5, 16, 9, 12, 7]}

# name: (frames_per_block, window, sink, blocks, switch_frames, extra dit keys, what it covers)
CASES = {
    "window_not_full_at_switch": (3, 12, 3, 6, [6], {}, "switch at frame 6 < window 12: re-cache of frames 0..5 from slot 0"),
    "window_exactly_full_at_switch": (3, 12, 3, 7, [12], {}, "switch at frame 12 = window: re-cache of frames 0..11, current_start 0"),
    "window_full_eviction_at_switch": (3, 9, 3, 8, [15], {}, "switch at 15 after evictions: re-cache frames 6..14, sink slots kept"),
    "switch_after_block0": (3, 9, 3, 5, [3], {}, "switch right after block 0"),
    "consecutive_switches_early": (3, 12, 3, 6, [3, 6], {}, "switches at 3 and 6 (consecutive blocks, window not full)"),
    "consecutive_switches_full": (3, 9, 3, 8, [12, 15], {}, "switches at 12 and 15 (consecutive blocks, after eviction)"),
    "two_switches_one_block": (3, 9, 3, 5, [4, 5], {}, "switch frames 4 and 5: applied at block starts 6 and 9"),
    "switch_unaligned": (3, 9, 3, 6, [7], {}, "switch frame 7 (not a block start): applied at frame 9"),
    "sink4_f3": (3, 12, 4, 8, [9, 15], {}, "sink 4 frames > block of 3"),
    "sink4_f2": (2, 10, 4, 10, [6, 14], {}, "sink 4 = two blocks of 2"),
    "sink6_f3": (3, 12, 6, 8, [9, 18], {}, "sink 6 = two blocks of 3"),
    "window10_sink3_f3": (3, 10, 3, 8, [9, 15], {}, "window - sink = 7, not a multiple of 3 (2-frame first eviction)"),
    "sink0": (3, 9, 0, 8, [6, 15], {}, "no sink"),
    "f1": (1, 6, 2, 12, [3, 8], {}, "one frame per block"),
    "f2": (2, 8, 2, 10, [4, 12], {}, "two frames per block"),
    "odd_tokens_10x6": (3, 9, 3, 8, [12, 18], {"latent_h": 10, "latent_w": 6}, "latent 10x6: 15 tokens per frame"),
    "global_attention": (3, -1, 0, 5, [9], {}, "local_attn_size -1 (global attention, cache = all frames)"),
}

# name: (the CASES geometry, extra dit keys, the vace section, what it covers). The VACE stream has the
# case's geometry and its own switches; its DiT stream runs beside it.
MIX = [{"kind": "conditioning", "scale": 1.0}, {"kind": "both", "scale": 0.8}, {"kind": "none", "scale": 0.0},
       {"kind": "reference", "scale": 1.2}, {"kind": "conditioning", "scale": -0.5}, {"kind": "both", "scale": 1.0}]
VACE_CASES = {
    "vace_every_layer": ((3, 9, 3, 6, [6]), {}, {"layers": 3, "vace_layers": [0, 1, 2], "switch_frames": [6]},
                         "a VACE block at every DiT layer"),
    "vace_tokens_128": ((2, 8, 2, 6, [4]), {"latent_h": 16, "latent_w": 16},
                        {"layers": 2, "vace_layers": [0], "switch_frames": [4], "mask_height": 128, "mask_width": 128},
                        "64 tokens per frame, 128 per block (Scope's padding to 128 would add none)"),
    "vace_sink0_f4": ((4, 12, 0, 6, [8]), {}, {"layers": 4, "vace_layers": [0, 2], "switch_frames": [8],
                                               "mask_frames": 16}, "no sink, 4 frames per block"),
    "vace_one_step": ((3, 9, 3, 6, [6]), {"denoising_steps": [1000]},
                      {"layers": 4, "vace_layers": [0, 2], "switch_frames": [6]}, "a single denoising step"),
    "vace_head_dim_8": ((3, 9, 3, 6, [9]), {"dim": 32, "heads": 4},
                        {"layers": 4, "vace_layers": [0, 2], "switch_frames": [9]}, "head dim 8 (RoPE 4/2/2)"),
    "vace_late_switch_full": ((3, 9, 3, 6, [15]), {},
                              {"layers": 4, "vace_layers": [0, 2], "switch_frames": [15]},
                              "switch after evictions, VACE before and after it"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longlive-src", required=True)
    ap.add_argument("--scope-src", help="Scope at 68b0f956 (for the vace_* cases)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", action="store_true", help="replay every generated folder afterwards")
    ap.add_argument("--cases", help="comma list (default all)")
    args = ap.parse_args()
    every = list(CASES) + (list(VACE_CASES) if args.scope_src else [])
    names = every if not args.cases else args.cases.split(",")
    results = {}
    for i, name in enumerate(names):
        vace = None
        if name in VACE_CASES:
            (F, W, S, B, sw), extra, vace, what = VACE_CASES[name]
            plan = (MIX * B)[:B]
            vace = dict({"plan": plan, "seed": 7005 + 10 * i, "blocks_seed": 7006 + 10 * i,
                         "patch_seed": 7007 + 10 * i, "inputs_seed": 7008 + 10 * i, "loop_seed": 7009 + 10 * i},
                        **vace)
        else:
            F, W, S, B, sw, extra, what = CASES[name]
        dit = dict(SMALL, frames_per_block=F, local_attn_size=W, sink_size=S, num_blocks=B, switch_frames=sw,
                   seed=7001 + 10 * i, noise_seed=7002 + 10 * i, loop_seed=7003 + 10 * i)
        dit.update(extra)
        cfg = {"name": name, "components": ["dit"] + (["vace"] if vace else []), "note": what,
               "umt5": dict(TEXT, seed=7004 + 10 * i), "dit": dit, **({"vace": vace} if vace else {})}
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        cfg_path = os.path.join(args.out, name, "sweep_case.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
        print(f"== {name}: F={F} window={W} sink={S} blocks={B} switches={sw} {extra or ''}", flush=True)
        try:
            scope = ["--scope-src", args.scope_src] if vace else []
            rc = make_fixtures.main(["--longlive-src", args.longlive_src, *scope, "--config", cfg_path,
                                     "--out", os.path.join(args.out, name)])
            if rc == 0 and args.check:
                rc = make_fixtures.main(["--longlive-src", args.longlive_src, *scope, "--only",
                                         ",".join(cfg["components"]), "--tolerance", "0",
                                         "--check-against", os.path.join(args.out, name)])
            results[name] = "ok" if rc == 0 else f"rc {rc}"
        except Exception as e:  # a case the reference cannot run: note it, go on
            results[name] = f"reference crashed: {type(e).__name__}: {e}"
            print(results[name], flush=True)
    print(json.dumps(results, indent=1))
    return 0 if all(v == "ok" for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
