#!/usr/bin/env python3
"""Time one ENT training step in the reference PyTorch formulation, on the shapes of the
criterion group `cpu/train_step` (`benches/train.rs`): batch 8, 5 s utterances, 60-character
transcripts.

    python benches/train_torch.py --threads 2 [--device cpu|cuda] [--runs 5] [--json out.json]
        [--only fbank_small|ent_backbone_features]

The model is docs/method.md §2 written as the reference code writes it: a softmax scalar mix,
`nn.LSTM` (cuDNN on the GPU), the predictor, the two joints, `torchaudio.functional.rnnt_loss`
(log-softmax outside the loss, as the reference does), lattice max pooling with torch ops,
the utterance head, clipping at 5 and AdamW. Two configurations, as in the Rust benchmark:

- `ent_backbone_features`: the paper's ENT on precomputed 13 x 250 x 768 hidden states;
- `fbank_small`: ModelConfig::fbank_small (conformer front end replaced by what the
  reference has for it: torchaudio's Conformer with the same sizes) on 500 x 80 filterbanks.

Prints the median seconds per step after one warm-up and optionally writes JSON.
Requires torch==2.11.0 and torchaudio==2.11.0 (benches/requirements.txt).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

B, U = 8, 60


class Joint(nn.Module):
    def __init__(self, e, p, j, out):
        super().__init__()
        self.enc = nn.Linear(e, j)
        self.pred = nn.Linear(p, j, bias=False)
        self.out = nn.Linear(j, out)

    def forward(self, h, g):
        return self.out(torch.tanh(self.enc(h).unsqueeze(2) + self.pred(g).unsqueeze(1)))


class Ent(nn.Module):
    def __init__(self, layers, dim, enc_hidden, embed, pred_hidden, j, v=31, k=4, fbank=None):
        super().__init__()
        self.fbank = fbank
        self.mix_w = nn.Parameter(torch.zeros(layers))
        self.gamma = nn.Parameter(torch.ones(1))
        self.encoder = nn.LSTM(dim, enc_hidden, batch_first=True, bidirectional=True)
        self.embed = nn.Embedding(v, embed)
        self.drop = nn.Dropout(0.1)
        self.pred_lstm = nn.LSTM(embed, pred_hidden, batch_first=True)
        self.pred_proj = nn.Linear(pred_hidden, j)
        e = 2 * enc_hidden
        self.joint_asr = Joint(e, j, j, v)
        self.joint_emo = Joint(e, j, j, k)
        self.norm = nn.LayerNorm(e + j)
        self.head = nn.Linear(e + j, k)

    def forward(self, feats, tokens):
        if self.fbank is not None:
            conv, proj, conformer = self.fbank
            x = conv(feats.unsqueeze(1))
            b, c, t, f = x.shape
            x = proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
            lens = torch.full((b,), t, dtype=torch.int32, device=x.device)
            x, _ = conformer(x, lens)
            states = torch.stack([x] * self.mix_w.numel())  # the states the mix reads
        else:
            states = feats
        w = torch.softmax(self.mix_w, 0).view(-1, 1, 1, 1)
        h, _ = self.encoder(self.gamma * (w * states).sum(0))
        start = torch.zeros(tokens.shape[0], 1, dtype=tokens.dtype, device=tokens.device)
        g, _ = self.pred_lstm(self.drop(self.embed(torch.cat([start, tokens], 1))))
        g = self.pred_proj(g)
        asr = self.joint_asr(h, g)
        emo = self.joint_emo(h, g)
        utt = self.head(self.norm(torch.cat([h.mean(1), g.mean(1)], 1)))
        return asr, emo, utt


def lattice_pool(emo, labels, neutral=3):
    p = torch.softmax(emo, -1)
    b = p.shape[0]
    idx = torch.arange(b, device=p.device)
    pk = p[idx, :, :, labels].reshape(b, -1).max(1).values
    pn = p[..., neutral].reshape(b, -1).min(1).values
    return (-torch.log(pk.clamp(1e-8, 1)) - torch.log(pn.clamp(1e-8, 1))).mean()


def build(name, dev):
    if name == "ent_backbone_features":
        model = Ent(13, 768, 384, 640, 640, 768)
        feats = torch.randn(13, B, 250, 768)
    else:
        conv = nn.Sequential(nn.Conv2d(1, 32, 3, 2), nn.ReLU(), nn.Conv2d(32, 32, 3, 2), nn.ReLU())
        proj = nn.Linear(32 * 19, 144)
        conformer = torchaudio.models.Conformer(144, 4, 576, 2, 15, dropout=0.1)
        model = Ent(3, 144, 128, 128, 256, 256, fbank=nn.ModuleList([conv, proj, conformer]))
        feats = torch.randn(B, 500, 80)
    return model.to(dev), feats.to(dev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["fbank_small", "ent_backbone_features"],
                    help="one model (the process's peak memory is then that model's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    dev = torch.device(args.device)
    out = {}
    for name in [args.only] if args.only else ["fbank_small", "ent_backbone_features"]:
        model, feats = build(name, dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        tokens = torch.randint(2, 30, (B, U), device=dev)
        labels = torch.arange(B, device=dev) % 4

        def step():
            opt.zero_grad(set_to_none=True)
            asr, emo, utt = model(feats, tokens)
            t = asr.shape[1]
            rnnt = torchaudio.functional.rnnt_loss(
                F.log_softmax(asr, -1), tokens.int(),
                torch.full((B,), t, dtype=torch.int32, device=dev),
                torch.full((B,), U, dtype=torch.int32, device=dev), blank=0)
            loss = 0.5 * rnnt + 0.5 * lattice_pool(emo, labels) + 0.5 * F.cross_entropy(utt, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        step()  # warm-up
        runs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            step()
            runs.append(time.perf_counter() - t0)
        med = statistics.median(runs)
        key = f"{name}/B{B}_5s_U{U}"
        # ru_maxrss is in KiB on Linux: the process's peak so far (with --only, this model's).
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out[key] = {"median_s": med, "runs": runs, "peak_rss_mib": peak_mib}
        print(f"torch/train_step/{key}: median {med * 1e3:.1f} ms over {args.runs} runs "
              f"({B / med:.2f} utt/s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "device": args.device, "torch": torch.__version__,
                       "results": out}, f, indent=1)


if __name__ == "__main__":
    main()
