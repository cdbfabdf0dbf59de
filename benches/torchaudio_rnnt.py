#!/usr/bin/env python3
"""Time torchaudio.functional.rnnt_loss (loss + backward) on the CPU, on the shapes of the
criterion group `cpu/rnnt_loss`, with a given number of threads.

    python benches/torchaudio_rnnt.py --threads 2 [--runs 5] [--json out.json]

Prints one line per shape (median seconds over the runs, after one warm-up) and optionally
writes them as JSON: {"B8_T200_U50_V512": {"median_s": ..., "runs": [...]}, ...}.
Requires torch==2.11.0 and torchaudio==2.11.0 (see benches/requirements.txt).
"""
import argparse
import json
import statistics
import time

import torch
import torchaudio

SHAPES = [(8, 200, 50, 512), (4, 500, 100, 1000), (8, 250, 60, 31)]


def name(b, t, u, v):
    return f"B{b}_T{t}_U{u}_V{v}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    out = {}
    for b, t, u, v in SHAPES:
        logits = (torch.rand(b, t, u + 1, v) * 6 - 3).requires_grad_()
        targets = torch.randint(1, v, (b, u), dtype=torch.int32)
        logit_lens = torch.full((b,), t, dtype=torch.int32)
        target_lens = torch.full((b,), u, dtype=torch.int32)

        def step():
            logits.grad = None
            loss = torchaudio.functional.rnnt_loss(
                logits, targets, logit_lens, target_lens, blank=0, reduction="mean"
            )
            loss.backward()
            return loss

        step()  # warm-up
        runs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            step()
            runs.append(time.perf_counter() - t0)
        med = statistics.median(runs)
        out[name(b, t, u, v)] = {"median_s": med, "runs": runs}
        print(f"torchaudio/rnnt_loss/{name(b, t, u, v)}: median {med * 1e3:.1f} ms over {args.runs} runs", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__,
                       "torchaudio": torchaudio.__version__, "shapes": out}, f, indent=1)


if __name__ == "__main__":
    main()
