#!/usr/bin/env python3
"""One training step on a GPU: criterion's `cuda/train_step` (benches/train.rs run with
ENT_BENCH_DEVICE=cuda) beside benches/train_torch.py --device cuda, as `cargo xtask bench --only
train` prints them for the CPU.

    python benches/train_table.py CRITERION_DIR TRAIN_TORCH_JSON

Prints one line per model, `train <model>: ent X ms, PyTorch Y ms, PyTorch/ent Z`; a model
missing on either side prints `-` and makes the exit status 1.
"""
import json
import sys

from gpu_table import median_s  # beside this script, in benches/ and in the GPU bundle

MODELS = ["fbank_small", "ent_backbone_features"]
IDENT = "B8_5s_U60"


def main():
    root, torch_path = sys.argv[1], sys.argv[2]
    with open(torch_path) as f:
        peer = json.load(f)
    missing = False
    for m in MODELS:
        ours = median_s(root, "cuda/train_step", m, IDENT)
        r = peer.get("results", {}).get(f"{m}/{IDENT}")
        theirs = r["median_s"] if r else None
        if ours is None or theirs is None:
            missing = True
            print(f"train {m}: ent {'-' if ours is None else f'{ours * 1e3:.1f} ms'}, PyTorch "
                  f"{'-' if theirs is None else f'{theirs * 1e3:.1f} ms'}, PyTorch/ent -")
            continue
        print(f"train {m}: ent {ours * 1e3:.1f} ms, PyTorch {theirs * 1e3:.1f} ms, "
              f"PyTorch/ent {theirs / ours:.2f}")
    print(f"(torch {peer.get('torch')}, device {peer.get('device')})")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
