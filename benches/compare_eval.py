#!/usr/bin/env python3
"""Compare two `ent eval --out` folders of the same manifest and model, decoded on two devices.

    python benches/compare_eval.py CPU_DIR CUDA_DIR

For every `<name>-report.json` in CPU_DIR, prints the scores (WA, UA, macro-F1, WER, CER,
EDER) on both sides, then, over `<name>-utterances.jsonl`, how many utterances got another
text or another utterance emotion, and the largest difference of an utterance-emotion
probability and of a hypothesis score (relative). Exits 1 if a score differs by more than
0.05 points or a folder lacks a file, else 0.
"""
import glob
import json
import os
import sys

SCORES = ["wa", "ua", "macro_f1", "wer", "cer", "eder"]


def lines(path):
    with open(path) as f:
        return {u["transcript"]["id"]: u for u in map(json.loads, f) if "transcript" in u}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a_dir, b_dir = sys.argv[1:]
    reports = sorted(glob.glob(os.path.join(a_dir, "*-report.json")))
    if not reports:
        print(f"no *-report.json in {a_dir}")
        return 1
    bad = False
    for a_path in reports:
        name = os.path.basename(a_path)[: -len("-report.json")]
        b_path = os.path.join(b_dir, os.path.basename(a_path))
        if not os.path.exists(b_path):
            print(f"{name}: {b_path} is missing")
            bad = True
            continue
        a, b = json.load(open(a_path)), json.load(open(b_path))
        print(f"{name} ({a['utterances']} utterances): score, cpu, cuda")
        for k in SCORES:
            x, y = a.get(k), b.get(k)
            same = x == y or (x is not None and y is not None and abs(x - y) <= 0.05)
            bad |= not same
            print(f"  {k:9s} {x!s:>8.8} {y!s:>8.8}{'' if same else '  DIFFERS'}")
        ua = lines(os.path.join(a_dir, f"{name}-utterances.jsonl"))
        ub = lines(os.path.join(b_dir, f"{name}-utterances.jsonl"))
        if ua.keys() != ub.keys():
            print(f"  the utterances differ: {len(ua)} vs {len(ub)}")
            bad = True
            continue
        text = sum(ua[k]["transcript"]["text"] != ub[k]["transcript"]["text"] for k in ua)
        label = sum(
            ua[k]["transcript"]["emotion"]["label"] != ub[k]["transcript"]["emotion"]["label"]
            for k in ua
        )
        prob = max(
            abs(p - q)
            for k in ua
            for (_, p), (_, q) in zip(
                ua[k]["transcript"]["emotion"]["probs"], ub[k]["transcript"]["emotion"]["probs"]
            )
        )
        score = max(
            abs(ua[k]["transcript"]["score"] - ub[k]["transcript"]["score"])
            / max(abs(ua[k]["transcript"]["score"]), 1e-30)
            for k in ua
        )
        print(
            f"  other text: {text}, other emotion: {label}, "
            f"max |dprob| {prob:.2e}, max relative |dscore| {score:.2e}"
        )
    print("cpu and cuda agree" if not bad else "cpu and cuda DIFFER")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
