"""Prints one SHA-256 per output of a fixed workload, so that a refactor can be checked to write
the same bytes before and after (``python tools/same_output.py | diff - before.txt``):

* every image of ``png_images(256)`` and ``png_images(1024)`` through ``_core.encode_png``, HWC and
  planar (CHW);
* a log of every record kind (tests/every_kind.py) plus scalars, histograms and images, written with
  fixed wall times into a temporary directory: per event file, the hash of its records' payloads in
  order; per side file, the hash of its bytes.

The clock is frozen (``time.time``) so that default wall times and file names are fixed too."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

FROZEN = 1_700_000_123.5


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def records(path: str) -> list:
    """The payloads of a TFRecord file, in order (framing checked)."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
    assert pos == len(data), path
    return out


def png_hashes() -> None:
    from fasttb import _core
    from fasttb.cli.bench import png_images

    for size in (256, 1024):
        for label, pixels in png_images(size).items():
            print(f"png {size} {label} hwc {sha(_core.encode_png(pixels))}")
            planes = np.ascontiguousarray(pixels.transpose(2, 0, 1))
            print(f"png {size} {label} planar {sha(_core.encode_png(planes, planar=True))}")
    rng = np.random.default_rng(11)
    for c in (1, 2, 3, 4):
        for h, w in ((1, 1), (3, 70), (33, 5), (64, 64), (17, 300)):
            pixels = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            pixels[:, : w // 2] = pixels[:, :1]  # some runs for the matcher
            print(f"png small {c}x{h}x{w} {sha(_core.encode_png(pixels))}")


def log_hashes() -> None:
    time.time = lambda: FROZEN  # type: ignore[assignment]
    from every_kind import WALL, log_every_kind, onnx_model

    from fasttb import SummaryWriter

    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.onnx")
        onnx_model(model)
        logdir = os.path.join(tmp, "log")
        w = SummaryWriter(logdir)
        log_every_kind(w, model)
        for step in range(200):
            w.add_scalar("loss", float(np.float32(1.0 / (step + 1))), step, walltime=WALL + step)
            w.add_scalar("acc", step * 0.001, step, walltime=WALL + step, new_style=True)
        for step in range(5):
            w.add_histogram("h", rng.standard_normal(10000) * (step + 1), step, walltime=WALL + step)
            w.add_histogram("hi", rng.integers(-50, 50, 3000), step, walltime=WALL + step, bins="auto")
            w.add_image("img", rng.integers(0, 256, (3, 64, 48), dtype=np.uint8), step, walltime=WALL + step)
            w.add_image("img_f", rng.random((32, 40, 3)), step, walltime=WALL + step, dataformats="HWC")
            w.add_image("img_g", rng.random((20, 30)), step, walltime=WALL + step, dataformats="HW")
        w.close()
        for dirpath, dirnames, filenames in sorted(os.walk(tmp)):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, tmp).replace(f".{os.getpid()}.", ".PID.")
                if name == "model.onnx":
                    continue
                if "tfevents" in name:
                    h = hashlib.sha256()
                    recs = records(path)
                    for r in recs:
                        h.update(struct.pack("<Q", len(r)) + r)
                    print(f"events {rel} {len(recs)} {h.hexdigest()}")
                else:
                    with open(path, "rb") as f:
                        print(f"file {rel} {sha(f.read())}")


if __name__ == "__main__":
    png_hashes()
    log_hashes()
