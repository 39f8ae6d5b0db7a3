"""Command line: ``python -m fasttb demo`` and ``python -m fasttb bench``."""

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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        if args.steps < 1:
            parser.error("--steps must be at least 1")
        return run_demo(args.logdir, args.steps)
    from .bench import main as bench_main

    return bench_main(args.quick, args.json)


if __name__ == "__main__":
    sys.exit(main())
