"""The ``remote`` benchmark: fasttb and torch's writer logging one long run to S3, side by side.

Both write to the same local S3 server (moto, ``fasttb.cli.local_s3``), through a proxy that counts
every byte sent to it (request lines, headers and bodies). fasttb goes through fsspec/s3fs;
torch's writer through tensorboard's own S3 support (boto3, ``S3_ENDPOINT``). Each makes the same
calls: ``steps`` scalars, ``flush()`` every ``flush_every`` of them, then ``close()``. Reported per
writer: the caller's cost per ``add_scalar`` (median over the blocks between flushes), the median
``flush()``, ``close()``, the bytes sent, and the final objects' total size. fasttb's local writer
and a no-op method are timed in the same run for reference.

Run it as ``python -m fasttb bench --only remote`` or ``python benchmarks/remote.py``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional


class _Noop:
    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def missing() -> str:
    """What is not installed for this benchmark ("" when everything is)."""
    absent = []
    for module, package in (("moto.server", "moto[server]"), ("s3fs", "s3fs"), ("boto3", "boto3"),
                            ("flask", "moto[server]")):
        try:
            __import__(module)
        except ImportError:
            if package not in absent:
                absent.append(package)
    return ", ".join(absent)


def _drive(writer: Any, steps: int, flush_every: int) -> Dict[str, float]:
    """Log ``steps`` scalars, flushing every ``flush_every``; the caller's costs."""
    per_call: List[float] = []
    flushes: List[float] = []
    add = writer.add_scalar
    clock = time.perf_counter
    step = 0
    started = clock()
    while step < steps:
        block = min(flush_every, steps - step)
        t0 = clock()
        for i in range(step, step + block):
            add("train/loss", i * 0.001, i)
        t1 = clock()
        writer.flush()
        t2 = clock()
        per_call.append((t1 - t0) / block)
        flushes.append(t2 - t1)
        step += block
    t3 = clock()
    writer.close()
    t4 = clock()
    return {"add_scalar": statistics.median(per_call), "flush": statistics.median(flushes),
            "close": t4 - t3, "total": t4 - started}


def run(quick: bool = False, out: Callable[[str], None] = print, steps: Optional[int] = None,
        flush_every: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """Measure every writer; results by writer name (``{"missing": ...}`` when not runnable).
    ``steps`` and ``flush_every`` override the run's size (40,000 and 400; quick: 10,000, 200)."""
    absent = missing()
    if absent:
        return {"fasttb (s3)": {"missing": f"{absent} not installed"}}
    from .. import SummaryWriter
    from .local_s3 import LocalS3

    steps = steps or (10_000 if quick else 40_000)
    flush_every = flush_every or (200 if quick else 400)
    results: Dict[str, Dict[str, Any]] = {}
    restore: List[Callable[[], None]] = []
    scratch = tempfile.mkdtemp(prefix="fasttb-bench-remote-")
    saved = {k: os.environ.get(k) for k in ("FASTTB_SPOOL", "S3_ENDPOINT")}
    os.environ["FASTTB_SPOOL"] = os.path.join(scratch, "spool")
    try:
        with LocalS3(bucket="fasttb-bench") as s3:
            os.environ["S3_ENDPOINT"] = s3.endpoint  # tensorboard's S3 support (torch's writer)
            writers: Dict[str, Callable[[], Any]] = {
                "no-op method": _Noop,
                "fasttb (local)": lambda: SummaryWriter(os.path.join(scratch, "local")),
                "fasttb (s3)": lambda: SummaryWriter(f"s3://{s3.bucket}/fasttb",
                                                     storage_options=s3.storage_options()),
            }
            try:
                from tensorboard.compat.tensorflow_stub.io import gfile
                from torch.utils.tensorboard import SummaryWriter as TorchWriter

                # tensorboard reads S3_ENDPOINT once, when it is imported (maybe before this).
                registered = getattr(gfile, "_REGISTERED_FILESYSTEMS", {}).get("s3")
                if registered is not None:
                    before = registered._s3_endpoint
                    registered._s3_endpoint = s3.endpoint
                    restore.append(lambda: setattr(registered, "_s3_endpoint", before))
                writers["torch (s3)"] = lambda: TorchWriter(f"s3://{s3.bucket}/torch")
            except ImportError as exc:
                results["torch (s3)"] = {"missing": f"{exc.name} not installed"}
            for name, make in writers.items():
                out(f"[bench] remote: {name}, {steps:,} scalars, flush() every {flush_every}")
                prefix = name.split()[0] if "s3" in name else None
                s3.proxy.reset()  # type: ignore[union-attr]
                writer = make()
                r: Dict[str, Any] = _drive(writer, steps, flush_every)
                if prefix is not None:
                    objects = s3.objects(prefix + "/")
                    requests = s3.requests
                    r.update(objects=len(objects), object_bytes=sum(len(v) for v in objects.values()),
                             sent_bytes=s3.bytes_received, body_bytes=sum(q.body_bytes for q in requests),
                             requests=len(requests), puts=sum(q.method == "PUT" for q in requests))
                results[name] = r
            results["run"] = {"steps": steps, "flush_every": flush_every}
    finally:
        for undo in restore:
            undo()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def report(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The section's lines of the benchmark report."""
    run_ = results.get("run", {})
    title = "remote log dir on a local S3 server (moto), the same run for each writer"
    if run_:
        title += f": {run_['steps']:,} scalars, flush() every {run_['flush_every']}"
    lines = [title]
    local = results.get("fasttb (local)", {}).get("add_scalar")
    for name, r in results.items():
        if name == "run":
            continue
        if "missing" in r:
            lines.append(f"  {name:16s} not run: {r['missing']}")
            continue
        text = f"  {name:16s} add_scalar {r['add_scalar'] * 1e9:10,.0f} ns"
        if local and name != "fasttb (local)" and name != "no-op method":
            text += f" ({r['add_scalar'] / local:5.2f}x local)"
        if "sent_bytes" in r:
            text += (f"; flush {r['flush'] * 1e3:7.2f} ms, close {r['close'] * 1e3:7.1f} ms; sent "
                     f"{r['sent_bytes'] / 1e6:8.2f} MB ({r['body_bytes'] / 1e6:.2f} MB bodies) for "
                     f"{r['objects']} objects of {r['object_bytes'] / 1e6:.2f} MB: "
                     f"{r['sent_bytes'] / max(r['object_bytes'], 1):6.2f}x, {r['puts']} PUTs")
        lines.append(text)
    ours, theirs = results.get("fasttb (s3)", {}), results.get("torch (s3)", {})
    if "sent_bytes" in ours and "sent_bytes" in theirs:
        lines.append(f"  fasttb sends {theirs['sent_bytes'] / ours['sent_bytes']:,.1f}x fewer bytes than torch's "
                     f"writer; its add_scalar costs {theirs['add_scalar'] / ours['add_scalar']:,.0f}x less")
    return lines
