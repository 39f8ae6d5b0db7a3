"""Shared helpers: an independent TFRecord reader (CRCs checked with the `crc32c` package) and
the real tensorboard's loaders, so every test reads files back the way users' tools do."""

from __future__ import annotations

import glob
import io
import math
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2


try:
    from crc32c import crc32c as _crc32c
except ImportError:  # a machine without the test extra (the GPU machine): tensorboard's own
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as _crc32c


def masked(data: bytes) -> int:
    c = _crc32c(data)
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


_STOCK_NAME = re.compile(r"tfevents\.(\d+)\..+\.\d+\.(\d+)(?:\D.*)?$")


def creation_order(name: str):
    """A sort key that puts the event files of the stock naming (`...tfevents.<T>.<host>.<pid>.<N>`,
    N counting the writers of the process) in the order they were made: by T, then N as numbers.
    As text, ".10" sorts before ".9", and a test that happened to cross such a count read a
    run's files out of order. Other names sort after these, as text."""
    base = os.path.basename(name)
    match = _STOCK_NAME.search(base)
    return (0, int(match.group(1)), int(match.group(2)), base) if match else (1, 0, 0, base)


def event_files(directory: str) -> List[str]:
    """The event files directly in `directory`, in the order they were made."""
    return sorted(glob.glob(os.path.join(str(directory), "*tfevents*")), key=creation_order)


def read_events(directory: str) -> List[event_pb2.Event]:
    """Events of every file directly in `directory`, files in the order they were made."""
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
    does not exit with status 0. A hung child is sent SIGABRT first, so that faulthandler
    prints where each of its threads stood; its output is unbuffered, so nothing printed is lost.
    The child runs in a process group of its own, and whatever it started (forked workers) is
    killed with it: a grandchild that outlived it held the output pipes open, and the wait for
    them never ended (a DataLoader worker hung under ASan kept CI waiting for good)."""
    full_env = dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=full_env, start_new_session=True)
    try:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = child.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(child)
                try:
                    stdout, stderr = child.communicate(timeout=10)
                except subprocess.TimeoutExpired:  # a descendant left the group and kept the pipes
                    stdout, stderr = "", "(no output: the child's pipes stayed open)"
            pytest.fail(f"child hung for {timeout} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    finally:
        _kill_group(child)
    result = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    if check and result.returncode != 0:
        how = (f"killed by {signal.Signals(-result.returncode).name}" if result.returncode < 0
               else f"exit status {result.returncode}")
        pytest.fail(f"child failed ({how})\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def _kill_group(child: subprocess.Popen) -> None:
    """Kills every process left in `child`'s process group (its id is the child's pid)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if child.poll() is None:
        child.wait(10)


def read_tree(directory: str) -> Dict[str, List[event_pb2.Event]]:
    """Events of every event file under `directory`, by file, each checked record by record."""
    out = {}
    for root, _, names in os.walk(str(directory)):
        for name in sorted(names, key=creation_order):
            if "tfevents" in name:
                path = os.path.join(root, name)
                out[path] = [event_pb2.Event.FromString(p) for p in read_records(path)]
    return out


def decoded_frames(encoded: bytes) -> np.ndarray:
    """Every frame of a PNG or GIF as RGB(A) pixels, (frames, height, width, channels)."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as im:
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGBA" if "A" in im.mode else "RGB")))
    return np.stack(frames)


def normalized(event: event_pb2.Event) -> bytes:
    """An event's bytes with what may differ between two faithful writers taken out: wall_time,
    encoded images (checked by their pixels by `assert_same_runs`), and the order of protobuf map
    entries in graphs and hparams records (re-serialized deterministically)."""
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    event = event_pb2.Event.FromString(event.SerializeToString())
    event.wall_time = 0
    if event.graph_def:
        event.graph_def = graph_pb2.GraphDef.FromString(event.graph_def).SerializeToString(deterministic=True)
    for value in event.summary.value:
        if value.HasField("image"):
            value.image.encoded_image_string = b""
        if value.metadata.plugin_data.plugin_name == "hparams":
            data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            value.metadata.plugin_data.content = data.SerializeToString(deterministic=True)
    return event.SerializeToString()


def settled_sum_squares(x: event_pb2.Event, y: event_pb2.Event):
    """Copies of two events whose histograms' sum_squares are set equal once they agree to 1e-12
    (relative). The stock writer takes it from BLAS ddot, whose last bits depend on the kernel
    OpenBLAS picks for the CPU and on its thread count (SPEC §4.4): fasttb follows the AVX2
    kernel's order, so on an AVX-512 machine the two may differ in the last bits."""
    x, y = event_pb2.Event.FromString(x.SerializeToString()), event_pb2.Event.FromString(y.SerializeToString())
    for vx, vy in zip(x.summary.value, y.summary.value):
        if vx.HasField("histo") and vy.HasField("histo"):
            a, b = vx.histo.sum_squares, vy.histo.sum_squares
            if math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300):
                vx.histo.sum_squares = vy.histo.sum_squares
    return x, y


def assert_same_runs(theirs: str, ours: str) -> None:
    """The event files under two log dirs hold the same runs and the same records, compared by
    `normalized` and images by their decoded pixels; every other file is byte for byte the same
    (PNG files by pixels)."""
    def runs(logdir):
        out = {}
        for path, events in read_tree(logdir).items():
            out.setdefault(os.path.relpath(os.path.dirname(path), logdir), []).extend(events)
        return out

    a, b = runs(theirs), runs(ours)
    assert sorted(a) == sorted(b)
    for run in a:
        assert len(a[run]) == len(b[run]), run
        for x, y in zip(a[run], b[run]):
            x, y = settled_sum_squares(x, y)
            assert normalized(x) == normalized(y), f"{run}:\n{x}\n---\n{y}"
            for vx, vy in zip(x.summary.value, y.summary.value):
                if vx.HasField("image"):
                    fx, fy = decoded_frames(vx.image.encoded_image_string), decoded_frames(vy.image.encoded_image_string)
                    assert fx.shape == fy.shape and (fx == fy).all(), vx.tag

    def side_files(logdir):
        return sorted(os.path.relpath(os.path.join(root, n), logdir)
                      for root, _, names in os.walk(logdir) for n in names if "tfevents" not in n)

    assert side_files(theirs) == side_files(ours)
    for name in side_files(theirs):
        with open(os.path.join(theirs, name), "rb") as f, open(os.path.join(ours, name), "rb") as g:
            x, y = f.read(), g.read()
        if name.endswith(".png"):
            assert (decoded_frames(x) == decoded_frames(y)).all(), name
        else:
            assert x == y, name


@pytest.fixture(autouse=True, scope="session")
def _spool_of_the_tests(tmp_path_factory):
    """Remote runs of any test (and of the children it starts) spool under the session's
    temporary folder, never in this user's own spool, which the next real run would adopt."""
    if "FASTTB_SPOOL" not in os.environ:
        os.environ["FASTTB_SPOOL"] = str(tmp_path_factory.mktemp("spool"))
    yield


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller reports the sum
        workeroutput["fasttb_checked"] = dict(checked)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for key, count in getattr(node, "workeroutput", {}).get("fasttb_checked", {}).items():
        checked[key] += count


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"fasttb: {checked['records']:,} records in {checked['files']:,} "
                                "event files read back with their CRCs checked")
