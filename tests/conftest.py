"""Shared helpers: an independent TFRecord reader (CRCs checked with the `crc32c` package) and
the real tensorboard's loaders, so every test reads files back the way users' tools do."""

from __future__ import annotations

import glob
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional

import crc32c
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2


def masked(data: bytes) -> int:
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# Records read back and checked by this test session, reported at its end.
checked = {"records": 0, "files": 0}


def read_records(path: str, allow_torn_tail: bool = False) -> List[bytes]:
    """Every record payload of one event file; fails on a bad CRC, and on a torn final record
    unless `allow_torn_tail` (what a killed process may leave)."""
    with open(path, "rb") as f:
        data = f.read()
    checked["files"] += 1
    out, pos = [], 0
    while pos < len(data):
        if allow_torn_tail and (pos + 12 > len(data) or pos + 16 + struct.unpack_from("<Q", data, pos)[0] > len(data)):
            break
        assert pos + 12 <= len(data), f"{path}: torn record header at {pos}"
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        assert length_crc == masked(data[pos : pos + 8]), f"{path}: bad length CRC at {pos}"
        end = pos + 12 + length
        assert end + 4 <= len(data), f"{path}: torn record at {pos}"
        payload = data[pos + 12 : end]
        (data_crc,) = struct.unpack_from("<I", data, end)
        assert data_crc == masked(payload), f"{path}: bad data CRC at {pos}"
        out.append(payload)
        pos = end + 4
    checked["records"] += len(out)
    return out


def event_files(directory: str) -> List[str]:
    return sorted(glob.glob(os.path.join(str(directory), "*tfevents*")))


def read_events(directory: str) -> List[event_pb2.Event]:
    """Events of every file directly in `directory`, files in name order."""
    return [event_pb2.Event.FromString(p) for f in event_files(directory) for p in read_records(f)]


def pil_decode(png: bytes) -> np.ndarray:
    """A PNG's pixels as (height, width, channels), decoded by Pillow."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im.load()
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def image_values(directory: str) -> list:
    """(step, tag, height, width, colorspace, decoded pixels) of every image in `directory`."""
    out = []
    for event in read_events(directory):
        for value in event.summary.value:
            if value.HasField("image"):
                im = value.image
                out.append((event.step, value.tag, im.height, im.width, im.colorspace,
                            pil_decode(im.encoded_image_string)))
    return out


def accumulator(directory: str) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(
        str(directory), size_guidance=event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE
    )
    acc.Reload()
    return acc


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path / "run")


def run_child(code: str, timeout: float = 120, env: Optional[Dict[str, str]] = None,
              check: bool = True) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter: whatever could crash or hang does it there. Fails the
    test (with the child's output) if the child hangs past `timeout` or, with `check`, if it
    does not exit with status 0."""
    full_env = dict(os.environ, **(env or {}))
    try:
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                                text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"child hung for {timeout} s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
    if check and result.returncode != 0:
        how = (f"killed by {signal.Signals(-result.returncode).name}" if result.returncode < 0
               else f"exit status {result.returncode}")
        pytest.fail(f"child failed ({how})\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def read_tree(directory: str) -> Dict[str, List[event_pb2.Event]]:
    """Events of every event file under `directory`, by file, each checked record by record."""
    out = {}
    for root, _, names in os.walk(str(directory)):
        for name in sorted(names):
            if "tfevents" in name:
                path = os.path.join(root, name)
                out[path] = [event_pb2.Event.FromString(p) for p in read_records(path)]
    return out


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"fasttb: {checked['records']:,} records in {checked['files']:,} "
                                "event files read back with their CRCs checked")
