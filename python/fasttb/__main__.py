"""Command line: ``python -m fasttb demo``, ``bench``, ``run``, ``inspect``, ``export`` and
``upload``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fasttb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a synthetic high-step-rate training loop that logs as it goes")
    demo.add_argument("--logdir", default=None, help="run directory (default: runs/<date>_<host>_fasttb-demo)")
    demo.add_argument("--steps", type=int, default=20000, help="training steps (default 20000)")
    bench = commands.add_parser("bench", help="fasttb against torch's and tensorboardX's writers, side by side")
    bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    sections = ["imports", "scalars", "throughput", "training_loop", "histograms", "images", "kinds", "png",
                "lightning", "reader", "remote", "cuda"]
    bench.add_argument("--only", metavar="SECTION", action="append", choices=sections,
                       help=f"run this section only (may be repeated): {', '.join(sections)}")
    run = commands.add_parser(
        "run", help="run a Python script (or -m module) with the stock writers patched to fasttb",
        description="Runs a script as `python script.py args` would, after fasttb.patch(): "
                    "torch's and tensorboardX's SummaryWriter create fasttb writers.")
    run.add_argument("-m", dest="module", action="store_true", help="the target is a module, as in python -m")
    run.add_argument("target", help="the script's path (or the module's name with -m)")
    run.add_argument("args", nargs="*", help="the script's own arguments, passed on as given")
    inspect = commands.add_parser("inspect", help="runs, tags, kinds, counts, step ranges and a CRC verdict per file")
    inspect.add_argument("path", help="a log directory or an event file")
    export = commands.add_parser("export", help="write the scalars of a log as CSV or Parquet")
    export.add_argument("path", help="a log directory or an event file")
    export.add_argument("--format", choices=["csv", "parquet"],
                        help="csv or parquet (default: parquet for an output ending in .parquet or .pq, else csv)")
    export.add_argument("-o", "--output", required=True, help="the file to write (-: standard output)")
    export.add_argument("--tags", metavar="REGEX", help="only tags that contain a match of REGEX")
    export.add_argument("--skip-corrupt", action="store_true",
                        help="skip records that fail their check (with a warning) instead of stopping")
    upload = commands.add_parser(
        "upload", help="upload the spool folders that runs with a remote log dir left behind",
        description="Uploads what a remote run (s3://, gs://, ...) could not upload before its process "
                    "ended; with no SPOOL, every spool folder no running process owns, in $FASTTB_SPOOL "
                    "or <tempdir>/fasttb-spool-<uid>.")
    upload.add_argument("spools", nargs="*", metavar="SPOOL", help="a spool folder (default: all orphans)")
    upload.add_argument("--storage-options", metavar="JSON", default=None,
                        help="fsspec storage options as JSON (default: the non-secret ones the run saved; "
                             "credentials come from the environment)")
    upload.add_argument("--timeout", type=float, default=600.0, help="seconds to keep trying per spool (600)")
    argv = sys.argv[1:] if argv is None else list(argv)
    script_args = None
    if argv[:1] == ["run"]:
        # Everything after the target is the script's, "--" and options included, as python
        # passes it on; only run's own options (-m, -h) come before the target.
        target = 1
        while target < len(argv) and argv[target].startswith("-") and argv[target] != "-":
            target += 1
        argv, script_args = argv[:target + 1], argv[target + 1:]
    args = parser.parse_args(argv)
    if script_args is not None:
        args.args = script_args
    if args.command == "upload":
        return upload_spools(args.spools, args.storage_options, args.timeout)
    if args.command in ("inspect", "export"):
        from .cli import reader_cli

        return reader_cli.main_inspect(args) if args.command == "inspect" else reader_cli.main_export(args)
    if args.command == "run":
        return run_patched(args.target, args.args, args.module)
    if args.command == "demo":
        from .cli.demo import run_demo

        if args.steps < 1:
            parser.error("--steps must be at least 1")
        return run_demo(args.logdir, args.steps)
    from .cli.bench import main as bench_main

    return bench_main(args.quick, args.json, args.only)


def upload_spools(spools: List[str], storage_options: Optional[str], timeout: float) -> int:
    """``python -m fasttb upload``: upload spool folders left behind; returns the exit status."""
    import json

    from . import _remote

    options = None
    if storage_options is not None:
        try:
            options = json.loads(storage_options)
        except ValueError as exc:
            print(f"python -m fasttb upload: --storage-options: not JSON ({exc})", file=sys.stderr)
            return 2
        if not isinstance(options, dict):
            print("python -m fasttb upload: --storage-options: expected a JSON object", file=sys.stderr)
            return 2
    return _remote.upload_spools(spools, options, timeout, print)


def run_patched(target: str, args: List[str], module: bool = False) -> int:
    """Run ``target`` (a script's path, or a module's name when ``module``) as ``__main__``
    with ``args`` as its arguments, after ``fasttb.patch()``. Returns its exit status."""
    import importlib.util
    import os
    import runpy
    import zipfile

    from ._patch import patch

    patch()  # (which sets FASTTB_PATCH=1 for the interpreters the script starts)
    sys.argv = [target, *args]
    try:
        if module:
            # As under python -m: the working directory first (under the installed `fasttb`
            # command, sys.path[0] was the command's own folder).
            sys.path[0] = os.getcwd()
            try:
                found = importlib.util.find_spec(target) is not None
            except ImportError:
                found = False
            if not found:
                print(f"{sys.executable}: No module named {target}", file=sys.stderr)
                return 1
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            if not os.path.exists(target):
                print(f"python -m fasttb run: can't open file {target!r}", file=sys.stderr)
                return 2
            # As under python script.py: __file__ absolute, and sys.path[0] the folder of the
            # script, symbolic links resolved (or the folder or zip archive itself, which
            # run_path puts there).
            path = os.path.abspath(target)
            if os.path.isfile(path) and not zipfile.is_zipfile(path):
                sys.path[0] = os.path.dirname(os.path.realpath(path))
            else:
                del sys.path[0]
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
