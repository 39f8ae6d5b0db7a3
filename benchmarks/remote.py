"""Remote log dirs, side by side: fasttb and torch's writer logging the same long run to a local
S3 server (moto), with the bytes each sends counted on the wire.

    python benchmarks/remote.py [--quick] [--json PATH]

The same measurement as ``python -m fasttb bench --only remote`` (``fasttb.cli.bench_remote``):
the caller's cost per add_scalar (fasttb local, fasttb to S3, torch's writer to S3 through
tensorboard's boto3 support with ``S3_ENDPOINT``), the flush() and close() times, and the bytes
sent against the final objects' total.
"""

from __future__ import annotations

import argparse
import json
import sys

from fasttb.cli import bench_remote
from fasttb.cli.bench import machine_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    print(f"fasttb remote benchmark: {machine_line()}")
    results = bench_remote.run(args.quick)
    print()
    print("\n".join(bench_remote.report(results)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_line(), "quick": args.quick, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
