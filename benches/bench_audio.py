"""The benchmark audio the Rust benchmarks use, read the way ent-features reads it."""
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The committed test sentence (16 kHz, 16-bit mono), repeated to the benchmark's length.
WAV = ROOT / "crates/ent-features/tests/fixtures/sentence.wav"


def read_wav16(path=WAV):
    """Samples of a 16-bit PCM WAV file as float32, int / 32768 like ent-features."""
    raw = path.read_bytes()
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        if cid == b"data":
            q = np.frombuffer(raw[pos + 8 : pos + 8 + size], dtype="<i2")
            return q.astype(np.float32) / np.float32(32768.0)
        pos += 8 + size + (size & 1)
    raise ValueError(f"no data chunk in {path}")
