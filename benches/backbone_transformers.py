#!/usr/bin/env python3
"""Time transformers (PyTorch) on the input and weights of the criterion group `cpu/backbone`.

    python benches/backbone_transformers.py MODEL_DIR [--threads N] [--runs 5] [--device cpu|cuda]
        [--json out.json]

MODEL_DIR is the checkpoint the Rust benchmark used (by default
target/bench-data/wav2vec2-base-random, written by `ent_benches::backbone_checkpoint`). The input
is the committed test sentence (crates/ent-features/tests/fixtures/sentence.wav, read as
int / 32768) repeated to 10 s, one utterance, all hidden states (`output_hidden_states=True`),
eval mode under `torch.inference_mode()`. Medians over the runs after one warm-up, on 1 thread
and on N threads (CPU), or on the GPU with `torch.cuda.synchronize()` before the clock is read.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModel

from bench_audio import WAV, read_wav16
SECONDS = 10




def median_time(model, x, runs, sync):
    with torch.inference_mode():
        model(x, output_hidden_states=True)
        sync()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            out = model(x, output_hidden_states=True)
            sync()
            times.append(time.perf_counter() - start)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    args = p.parse_args()

    one = read_wav16(WAV)
    samples = np.resize(one, SECONDS * 16000)
    model = AutoModel.from_pretrained(args.model_dir).eval().to(args.device)
    x = torch.from_numpy(samples)[None].to(args.device)
    result = {"torch": torch.__version__, "transformers": transformers.__version__,
              "device": args.device, "seconds": SECONDS}
    if args.device == "cpu":
        for n in sorted({1, args.threads}):
            torch.set_num_threads(n)
            result[f"threads_{n}_s"] = median_time(model, x, args.runs, lambda: None)
            print(f"transformers, {n} thread(s): {result[f'threads_{n}_s'] * 1e3:.0f} ms per {SECONDS} s "
                  f"(real-time factor {result[f'threads_{n}_s'] / SECONDS:.4f})")
    else:
        result["gpu_s"] = median_time(model, x, args.runs, torch.cuda.synchronize)
        print(f"transformers on {args.device}: {result['gpu_s'] * 1e3:.1f} ms per {SECONDS} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
