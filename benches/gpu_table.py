#!/usr/bin/env python3
"""The GPU comparison table: the criterion groups `cuda/rnnt_loss` and `cuda/lattice_pool`
(benches/lattice_cuda.rs) beside torchaudio (benches/torchaudio_rnnt.py --device cuda).

    python benches/gpu_table.py CRITERION_DIR TORCHAUDIO_JSON

Prints Markdown: per shape and type, ent's loss + gradient, torchaudio's loss + backward and
their ratio, and the achieved bandwidth against the floor of two reads and one write of the
logits, taken at the bandwidth of a device copy of the same logits measured in the same run.
"""
import json
import os
import sys


def median_s(root, group, func, ident):
    path = os.path.join(root, group.replace("/", "_"), func, ident, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] * 1e-9
    except FileNotFoundError:
        return None


def ms(s):
    return "-" if s is None else f"{s * 1e3:.2f} ms"


def numel(ident):
    dims = [int(p[1:]) for p in ident.split("_")[:4]]
    b, t, u, v = dims
    return b * t * (u + 1) * v


def main():
    root, ta_path = sys.argv[1], sys.argv[2]
    with open(ta_path) as f:
        ta = json.load(f)
    print(f"\nGPU: {ta.get('gpu', '?')}; torch {ta.get('torch')} / torchaudio {ta.get('torchaudio')}\n")
    print("| shape | type | ent loss+grad | ent loss+backward (candle) | torchaudio loss+backward "
          "| torchaudio ÷ ent | achieved (2 reads + 1 write) | copy bandwidth | of the floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    group = "cuda/rnnt_loss"
    for ident in sorted({k for k in ta["shapes"]}, key=lambda k: (numel(k), k)):
        shape, dtype = ident.rsplit("_", 1)
        size = 2 if dtype == "f16" else 4
        ours = median_s(root, group, "loss_grad", ident)
        candle = median_s(root, group, "loss_grad_candle", ident)
        copy = median_s(root, group, "copy", ident)
        theirs = ta["shapes"][ident]["median_s"]
        nbytes = numel(ident) * size
        if ours is None or copy is None:
            print(f"| {shape} | {dtype} | - | - | {ms(theirs)} | - | - | - | - |")
            continue
        achieved = 3 * nbytes / ours / 1e9
        copy_bw = 2 * nbytes / copy / 1e9
        print(f"| {shape} | {dtype} | {ms(ours)} | {ms(candle)} | {ms(theirs)} | "
              f"{theirs / ours:.2f}x | {achieved:.0f} GB/s | {copy_bw:.0f} GB/s | "
              f"{achieved / copy_bw * 100:.0f}% |")
    group = "cuda/lattice_pool"
    base = os.path.join(root, group.replace("/", "_"), "loss_grad")
    if os.path.isdir(base):
        print("\n| pooling shape | type | ent loss+grad | ent loss+backward (candle) | copy of the logits |")
        print("|---|---|---|---|---|")
        for ident in sorted(os.listdir(base)):
            shape, dtype = ident.rsplit("_", 1)
            print(f"| {shape} | {dtype} | {ms(median_s(root, group, 'loss_grad', ident))} | "
                  f"{ms(median_s(root, group, 'loss_grad_candle', ident))} | "
                  f"{ms(median_s(root, group, 'copy', ident))} |")


if __name__ == "__main__":
    main()
