#!/usr/bin/env python3
"""Time kaldi-native-fbank on the audio of the criterion group `cpu/fbank`.

    python benches/fbank_kaldi_native.py [--seconds 60] [--runs 10] [--json out.json]

The audio is the committed test sentence (crates/ent-features/tests/fixtures/sentence.wav, 16 kHz,
16-bit, read as int / 32768 like ent-features does) repeated to `--seconds`. The options are
those of `FbankOptions::default()`: Kaldi's defaults with 80 bins and no dither.

Three figures, medians over the runs after one warm-up:
- compute: `OnlineFbank.accept_waveform` + `input_finished`, where kaldi-native-fbank computes
  every frame (C++, single-threaded): what a Python caller waits for;
- input: the same call with a frame shift as long as the audio, so that one frame is computed:
  the cost of taking the samples in (the binding converts the numpy array element by element
  into a std::vector<float>, then the samples are buffered);
- frames: compute - input, the frame computation alone, the figure comparable to ent's;
- with_copy: compute plus reading all frames back into one numpy array (`get_frame` per frame).
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import kaldi_native_fbank as knf

from bench_audio import WAV, read_wav16




def options(frame_shift_ms=10.0):
    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.frame_opts.samp_freq = 16000
    o.frame_opts.frame_shift_ms = frame_shift_ms
    o.mel_opts.num_bins = 80
    return o


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    one = read_wav16(WAV)
    x = np.resize(one, args.seconds * 16000)  # repeats the sentence, as ent's benchmark does
    opts = options()

    def run():
        t0 = time.perf_counter()
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(16000, x)
        fb.input_finished()
        t1 = time.perf_counter()
        feats = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
        t2 = time.perf_counter()
        assert feats.shape == (1 + (len(x) - 400) // 160, 80), feats.shape
        return t1 - t0, t2 - t0

    one_frame = options(frame_shift_ms=args.seconds * 1000.0 - 10.0)

    def input_only():
        t0 = time.perf_counter()
        fb = knf.OnlineFbank(one_frame)
        fb.accept_waveform(16000, x)
        fb.input_finished()
        assert fb.num_frames_ready == 1, fb.num_frames_ready
        return time.perf_counter() - t0

    run()  # warm-up
    runs = [run() for _ in range(args.runs)]
    compute = statistics.median(r[0] for r in runs)
    with_copy = statistics.median(r[1] for r in runs)
    inputs = [input_only() for _ in range(args.runs)]
    overhead = statistics.median(inputs)
    frames = compute - overhead
    print(
        f"kaldi-native-fbank {knf.__version__}: {args.seconds} s of audio, compute {compute * 1e3:.1f} ms "
        f"({args.seconds / compute:.0f} s/s), of which taking the input {overhead * 1e3:.1f} ms and "
        f"the frames {frames * 1e3:.1f} ms ({args.seconds / frames:.0f} s/s); "
        f"with copy-out {with_copy * 1e3:.1f} ms",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(json.dumps({
            "kaldi_native_fbank": knf.__version__, "seconds": args.seconds,
            "compute_median_s": compute, "input_median_s": overhead,
            "frames_s": frames, "with_copy_median_s": with_copy,
            "runs": runs, "input_runs": inputs}, indent=1))


if __name__ == "__main__":
    main()
