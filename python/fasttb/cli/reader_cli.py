"""``python -m fasttb inspect PATH`` and ``python -m fasttb export PATH``: what a log holds, and
its scalars as CSV or Parquet, read with ``fasttb.reader``."""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import warnings
from typing import Any, Dict, List, Optional, TextIO, Tuple

import numpy as np

from ..reader import (CorruptRecordError, CorruptRecordWarning, EventFile, SummaryReader, _walk, files_for,
                      is_summary_events_file, scan_tree)

_KIND_NAMES = {4: "image", 5: "histogram", 6: "audio", 8: "tensor"}


def _tag_rows(f: EventFile) -> List[Tuple[str, str, int, Optional[int], Optional[int]]]:
    """(tag, kind, count, first step, last step) for every tag of one file."""
    plugin_of: Dict[str, str] = {}
    for tag in f.metadata:
        for plugin in ("text", "hparams", "pr_curves", "scalars", "mesh", "custom_scalars"):
            if tag in f.plugin_contents(plugin):
                plugin_of[tag] = plugin
    rows = []
    for tag_id in f.scalar_tags:
        steps = f.scalar_step[f.scalar_tag == tag_id]
        rows.append((f.tags[tag_id], "scalar", len(steps), *(_range(steps))))
    for kind in (5, 4, 6, 8):
        for tag_id in f.value_tags[kind]:
            steps = f.value_step[(f.value_kind == kind) & (f.value_tag == tag_id)]
            name = _KIND_NAMES[kind]
            tag = f.tags[tag_id]
            if kind == 8 and tag in plugin_of:
                name = f"tensor ({plugin_of[tag]})"
            rows.append((tag, name, len(steps), *(_range(steps))))
    for tag in f.metadata:
        if plugin_of.get(tag) == "hparams" and not any(r[0] == tag for r in rows):
            rows.append((tag, "hparams", 1, 0, 0))
    return rows


def _shown(name: str) -> str:
    """A file or folder name as printed: bytes that are no UTF-8 as escapes, not an error."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _range(steps: np.ndarray) -> Tuple[Optional[int], Optional[int]]:
    return (int(steps.min()), int(steps.max())) if len(steps) else (None, None)


def _verdict(f: EventFile) -> str:
    parts = []
    if f.skipped:
        parts.append(f"CORRUPT: {len(f.skipped)} record(s) fail their check, the first at byte {f.skipped[0]}")
    if f.truncated_at is not None:
        parts.append(f"last record cut short at byte {f.truncated_at} (still being written?)")
    return "; ".join(parts) or "CRC OK"


def inspect(path: str, out: TextIO = sys.stdout) -> int:
    """Prints each run under ``path``: its event files with their record counts and CRC verdict,
    and each tag's kind, count and step range. Returns 1 if any file is corrupt, else 0."""
    fs = files_for(path)
    if not fs.exists(path):
        print(f"fasttb inspect: no such file or directory: {path}", file=sys.stderr)
        return 2
    files = [p for p in _walk(path, fs) if is_summary_events_file(p)]
    if not files:
        print(f"no event files under {path}", file=out)
        return 0
    with warnings.catch_warnings():  # the verdicts below say it, once per file
        warnings.simplefilter("ignore", CorruptRecordWarning)
        scanned = scan_tree(files, skip_corrupt=True, files=fs)
    if fs.isfile(path):
        root = path.rsplit("/", 1)[0] if "/" in path else ""  # (a file in the working directory)
    else:
        root = path.rstrip("/")
    runs: Dict[str, List[EventFile]] = {}
    for f in sorted(scanned, key=lambda f: f.path):
        directory = f.path.rsplit("/", 1)[0] if "://" in path else os.path.dirname(f.path) or "."
        run = directory[len(root):].lstrip("/") if "://" in path else os.path.relpath(directory, root or ".")
        runs.setdefault(run or ".", []).append(f)
    status = 0
    for run, run_files in runs.items():
        print(f"run {_shown(run)}", file=out)
        tags: Dict[Tuple[str, str], List[Any]] = {}  # [count, first step, last step]
        for f in run_files:
            status |= bool(f.skipped)
            print(f"  {_shown(os.path.basename(f.path))}: {f.size:,} bytes, {f.events:,} records, {_verdict(f)}", file=out)
            for tag, kind, count, first, last in _tag_rows(f):
                entry = tags.setdefault((tag, kind), [0, None, None])
                entry[0] += count
                if first is not None:  # (a file whose values of the tag were all purged has none)
                    entry[1] = first if entry[1] is None else min(entry[1], first)
                    entry[2] = last if entry[2] is None else max(entry[2], last)
            if f.graphs or f.run_metadata:
                print(f"    graphs: {f.graphs}, run metadata: {f.run_metadata}", file=out)
        width = max((len(t) for t, _ in tags), default=3)
        for (tag, kind), (count, first, last) in tags.items():
            steps = "no steps" if first is None else f"steps {first}..{last}"
            print(f"    {tag:{width}s}  {kind:20s} {count:>10,} values, {steps}", file=out)
    return status


def export(path: str, output: str, fmt: Optional[str] = None, tags: Optional[str] = None,
           skip_corrupt: bool = False) -> int:
    """Writes the scalars under ``path`` (run, tag, step, value, wall_time; sorted as the reader
    sorts them) to ``output`` (``-``: standard output) as CSV or Parquet (``fmt``; by default
    Parquet for an output named ``*.parquet`` or ``*.pq``, else CSV); ``tags``: a regular
    expression a tag must contain a match of. Returns the number of rows written."""
    if fmt is None:
        fmt = "parquet" if output.lower().endswith((".parquet", ".pq")) else "csv"
    if fmt not in ("csv", "parquet"):  # (before the read, which may be long)
        raise ValueError(f"format: expected 'csv' or 'parquet', got {fmt!r}")
    pattern = re.compile(tags) if tags is not None else None  # a bad one fails before the read
    reader = SummaryReader(path, extra_columns={"dir_name", "wall_time"}, event_types={"scalars"},
                           skip_corrupt=skip_corrupt)
    cols = reader.columns("scalars")
    if "dir_name" not in cols:  # no scalars at all
        cols["dir_name"] = np.zeros(0, object)
        cols["wall_time"] = np.zeros(0)
    if pattern is not None:
        unique = np.unique(cols["tag"]) if len(cols["tag"]) else np.zeros(0, object)
        wanted = [t for t in unique if pattern.search(t)]
        keep = np.isin(cols["tag"], np.array(wanted, dtype=object))
        cols = {k: v[keep] for k, v in cols.items()}
    names = ["dir_name", "tag", "step", "value", "wall_time"]
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("export --format parquet: install pyarrow (pip install pyarrow)") from None
        types = {"dir_name": pa.string(), "tag": pa.string(), "step": pa.int64(), "value": pa.float64(),
                 "wall_time": pa.float64()}  # also when there are no rows to tell them
        # Parquet strings are UTF-8: the bytes of a name that is none (a run folder's, say)
        # are written as \xNN escapes.
        table = pa.table({("run" if n == "dir_name" else n):
                          pa.array([_shown(v) for v in cols[n].tolist()] if cols[n].dtype == object else cols[n],
                                   type=types[n])
                          for n in names})
        if output == "-":
            sys.stdout.flush()
            pq.write_table(table, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            pq.write_table(table, output)
    else:
        # Names that are no UTF-8 (run folders, say) keep their bytes, as the file system has them.
        if output == "-":
            sys.stdout.flush()
            f = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline="")
        else:
            f = open(output, "w", newline="", encoding="utf-8", errors="surrogateescape")
        try:
            writer = csv.writer(f)
            writer.writerow(["run", "tag", "step", "value", "wall_time"])
            writer.writerows(zip(*(cols[n].tolist() for n in names)))
        finally:
            if output == "-":
                f.flush()
                f.detach()  # standard output stays open
            else:
                f.close()
    return len(cols["step"])


def main_inspect(args: Any) -> int:
    """``python -m fasttb inspect``: an error is one line on stderr and exit status 2."""
    try:
        return inspect(args.path)
    except Exception as exc:  # (a storage backend's own errors too: botocore's are no OSError)
        print(f"fasttb inspect: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {message}"


def main_export(args: Any) -> int:
    """``python -m fasttb export``: bad input is one line on stderr and exit status 2."""
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always", CorruptRecordWarning)
            rows = export(args.path, args.output, args.format, args.tags, args.skip_corrupt)
        for w in skipped:
            print(f"fasttb export: {w.message}", file=sys.stderr)
    except re.error as exc:
        print(f"fasttb export: --tags: not a regular expression ({exc})", file=sys.stderr)
        return 2
    except CorruptRecordError as exc:
        print(f"fasttb export: {exc} (--skip-corrupt skips such records)", file=sys.stderr)
        return 2
    except Exception as exc:  # (a storage backend's own errors too: botocore's are no OSError)
        print(f"fasttb export: {_one_line(exc)}", file=sys.stderr)
        return 2
    # (on stderr: standard output may be the data itself, with -o -)
    where = "standard output" if args.output == "-" else args.output
    print(f"fasttb export: {rows:,} scalars written to {where}", file=sys.stderr)
    return 0
