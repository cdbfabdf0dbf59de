#!/usr/bin/env python3
"""Time kaldi-native-fbank on the audio of the criterion group `cpu/fbank`.

    python benches/fbank_kaldi_native.py [--seconds 60] [--runs 10] [--json out.json]

The audio is the committed test sentence (crates/ent-features/tests/fixtures/sentence.wav, 16 kHz,
16-bit, read as int / 32768 like ent-features does) repeated to `--seconds`. The options are
those of `FbankOptions::default()`: Kaldi's defaults with 80 bins and no dither.

Two figures per run, median over the runs after one warm-up:
- compute: `OnlineFbank.accept_waveform` + `input_finished`, where kaldi-native-fbank computes
  every frame (C++, single-threaded); this is the figure compared with ent's;
- with_copy: compute plus reading all frames back into one numpy array (`get_frame` per frame).
"""
import argparse
import json
import statistics
import struct
import time
from pathlib import Path

import numpy as np
import kaldi_native_fbank as knf

ROOT = Path(__file__).resolve().parent.parent
WAV = ROOT / "crates/ent-features/tests/fixtures/sentence.wav"


def read_wav16(path):
    raw = path.read_bytes()
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        if cid == b"data":
            q = np.frombuffer(raw[pos + 8 : pos + 8 + size], dtype="<i2")
            return q.astype(np.float32) / np.float32(32768.0)
        pos += 8 + size + (size & 1)
    raise ValueError(f"no data chunk in {path}")


def options():
    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.frame_opts.samp_freq = 16000
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

    run()  # warm-up
    runs = [run() for _ in range(args.runs)]
    compute = statistics.median(r[0] for r in runs)
    with_copy = statistics.median(r[1] for r in runs)
    print(
        f"kaldi-native-fbank {knf.__version__}: {args.seconds} s of audio, compute {compute * 1e3:.1f} ms "
        f"({args.seconds / compute:.0f} s/s), with copy-out {with_copy * 1e3:.1f} ms",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(json.dumps({
            "kaldi_native_fbank": knf.__version__, "seconds": args.seconds,
            "compute_median_s": compute, "with_copy_median_s": with_copy,
            "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
