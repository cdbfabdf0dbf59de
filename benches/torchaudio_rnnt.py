#!/usr/bin/env python3
"""Time torchaudio.functional.rnnt_loss (loss + backward) on the shapes of the criterion groups
`cpu/rnnt_loss` (CPU, a given number of threads) or `cuda/rnnt_loss` (GPU).

    python benches/torchaudio_rnnt.py --threads 2 [--runs 5] [--json out.json]
    python benches/torchaudio_rnnt.py --device cuda [--dtypes float32,float16] [--json out.json]

Prints one line per shape (median seconds over the runs, after one warm-up) and optionally
writes them as JSON: {"shapes": {"B8_T200_U50_V512": {"median_s": ..., "runs": [...]}, ...}}.
On the GPU the keys carry the dtype (`B32_T500_U100_V1000_f16`), the device is synchronised
before each clock read, and every run starts from the same inputs (uniform in [-3, 3)).
Requires torch==2.11.0 and torchaudio==2.11.0 (see benches/requirements.txt).
"""
import argparse
import json
import statistics
import time

import torch
import torchaudio

CPU_SHAPES = [(8, 200, 50, 512), (4, 500, 100, 1000), (8, 250, 60, 31)]
# The shapes of benches/src/lib.rs CUDA_RNNT_SHAPES.
CUDA_SHAPES = [(32, 500, 100, 1000), (8, 250, 60, 31), (16, 300, 80, 5000)]
SUFFIX = {"float32": "f32", "float16": "f16"}


def name(b, t, u, v):
    return f"B{b}_T{t}_U{u}_V{v}"


def time_shape(b, t, u, v, device, dtype, runs):
    logits = (torch.rand(b, t, u + 1, v, device=device) * 6 - 3).to(dtype).requires_grad_()
    targets = torch.randint(1, v, (b, u), dtype=torch.int32, device=device)
    logit_lens = torch.full((b,), t, dtype=torch.int32, device=device)
    target_lens = torch.full((b,), u, dtype=torch.int32, device=device)
    cuda = device == "cuda"

    def step():
        logits.grad = None
        loss = torchaudio.functional.rnnt_loss(
            logits, targets, logit_lens, target_lens, blank=0, reduction="mean"
        )
        loss.backward()
        return loss

    step()  # warm-up
    out = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    del logits
    if cuda:
        torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtypes", default="float32", help="comma-separated: float32,float16")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    cuda = args.device == "cuda"
    shapes = CUDA_SHAPES if cuda else CPU_SHAPES
    out = {}
    for b, t, u, v in shapes:
        for dt in args.dtypes.split(","):
            runs = time_shape(b, t, u, v, args.device, getattr(torch, dt), args.runs)
            key = f"{name(b, t, u, v)}_{SUFFIX[dt]}" if cuda else name(b, t, u, v)
            med = statistics.median(runs)
            out[key] = {"median_s": med, "runs": runs}
            print(f"torchaudio/rnnt_loss/{args.device}/{key}: median {med * 1e3:.2f} ms "
                  f"over {args.runs} runs", flush=True)
    if args.json:
        info = {"threads": args.threads, "device": args.device, "torch": torch.__version__,
                "torchaudio": torchaudio.__version__, "shapes": out}
        if cuda:
            info["gpu"] = torch.cuda.get_device_name(0)
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
