"""Helpers of the tensorboardX dialect's differential tests: the same calls through
tensorboardX's SummaryWriter and fasttb.tensorboardX's, and the two log dirs compared record by
record (see conftest.assert_same_runs, which these extend)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import Any, Callable, Dict, List, Tuple

from conftest import decoded_frames, normalized, read_tree
from tensorboard.compat.proto import event_pb2

def run_both(tmp_path: Any, calls: Callable[[Any], Any], name: str = "run", close: bool = True,
             **kwargs: Any) -> Tuple[str, str, List[str]]:
    """Runs ``calls(writer)`` through tensorboardX's writer and fasttb's dialect, each in its own
    log dir ``<tmp_path>/{tbx,fasttb}/<name>`` (constructed with ``kwargs``). Returns the two log
    dirs and what each printed ([tensorboardX's, ours])."""
    import tensorboardX

    from fasttb.tensorboardX import SummaryWriter

    dirs, printed = [], []
    for key, cls in (("tbx", tensorboardX.SummaryWriter), ("fasttb", SummaryWriter)):
        logdir = str(tmp_path / key / name)
        out = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            # tensorboardX lets numpy warn about its unclipped casts; fasttb keeps quiet.
            warnings.simplefilter("ignore", RuntimeWarning)
            w = cls(logdir, **kwargs)
            calls(w)
            if close:
                w.close()
        dirs.append(logdir)
        printed.append(out.getvalue())
    return dirs[0], dirs[1], printed


def _runs(logdir: str) -> Dict[str, List[event_pb2.Event]]:
    """{run directory relative to logdir: events}. The first record of every file is checked:
    a file_version without source_metadata, which torch's writer adds and tensorboardX does not."""
    out: Dict[str, List[event_pb2.Event]] = {}
    for path, events in read_tree(logdir).items():
        assert events and events[0].file_version == "brain.Event:2", path
        assert not events[0].HasField("source_metadata"), path
        out.setdefault(os.path.relpath(os.path.dirname(path), logdir), []).extend(events)
    return out


def side_files(logdir: str) -> List[str]:
    return sorted(os.path.relpath(os.path.join(root, n), logdir)
                  for root, _, names in os.walk(logdir) for n in names if "tfevents" not in n)


def assert_same_tbx_runs(theirs: str, ours: str) -> Dict[str, List[event_pb2.Event]]:
    """The two log dirs hold the same runs with the same records (compared by
    conftest.normalized, so wall_time aside; images and GIFs by decoded pixels; audio byte for
    byte), and the same other files, byte for byte (PNG by pixels). Returns our runs."""
    a, b = _runs(theirs), _runs(ours)
    assert sorted(a) == sorted(b)
    for run in a:
        assert len(a[run]) == len(b[run]), (run, a[run], b[run])
        for x, y in zip(a[run], b[run]):
            assert normalized(x) == normalized(y), f"{run}:\n{x}\n---\n{y}"
            for vx, vy in zip(x.summary.value, y.summary.value):
                if vx.HasField("image"):
                    fx = decoded_frames(vx.image.encoded_image_string)
                    fy = decoded_frames(vy.image.encoded_image_string)
                    assert fx.shape == fy.shape and (fx == fy).all(), vx.tag
    assert side_files(theirs) == side_files(ours)
    for name in side_files(theirs):
        with open(os.path.join(theirs, name), "rb") as f, open(os.path.join(ours, name), "rb") as g:
            x, y = f.read(), g.read()
        if name.endswith(".png"):
            fx, fy = decoded_frames(x), decoded_frames(y)
            assert fx.shape == fy.shape and (fx == fy).all(), name
        else:
            assert x == y, name
    return b


def same_records(tmp_path: Any, calls: Callable[[Any], Any], **kwargs: Any) -> Dict[str, List[event_pb2.Event]]:
    """run_both, then assert_same_tbx_runs; returns our runs."""
    theirs, ours, _ = run_both(tmp_path, calls, **kwargs)
    return assert_same_tbx_runs(theirs, ours)


def raised(call: Callable[[], Any]) -> BaseException:
    """The exception ``call()`` raises (fails the test if it returns)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every kind is the point
            return exc
    raise AssertionError(f"{call} raised nothing")
