"""What a process killed with SIGKILL loses, measured: the records it had logged that are not in
its file, and how long before the kill the first of them was logged.

Two loops, as training jobs run them: scalars at a steady step rate (the worker keeps up and
writes each time it drains the queue), and 3x512x512 noise images every step (the worker cannot
keep up, so the queue fills to its bound and the loss is what the queue holds). The README quotes
this script's output.

    python benchmarks/loss_on_kill.py [--runs 5] [--writer fasttb] [--writer torch]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

LOOPS = {
    "scalars, 10 per 1 ms step": """
        i = 0
        while True:
            for _ in range(10):
                w.add_scalar("x", float(i), i)
                i += 1
            print(i, time.monotonic(), flush=True)
            time.sleep(0.001)
        """,
    "3x512x512 noise image every step": """
        image = np.random.default_rng(0).integers(0, 255, (3, 512, 512), dtype=np.uint8)
        i = 0
        while True:
            w.add_image("im", image, i)
            i += 1
            print(i, time.monotonic(), flush=True)
        """,
}


def count_records(path: str) -> int:
    """Whole records in a TFRecord file, read by their length fields (a torn last one is not
    counted; the tests check CRCs, this only counts)."""
    size = os.path.getsize(path)
    count = pos = 0
    with open(path, "rb") as f:
        while pos + 12 <= size:
            f.seek(pos)
            length = int.from_bytes(f.read(8), "little")
            if pos + 16 + length > size:
                break
            pos += 16 + length
            count += 1
    return count


WRITERS = {"fasttb": "from fasttb import SummaryWriter",
           "torch": "from torch.utils.tensorboard import SummaryWriter"}


def kill_once(writer: str, loop: str, settle: float) -> tuple:
    """(records lost, ms between the first lost record's call and the kill)."""
    with tempfile.TemporaryDirectory() as logdir:
        code = f"import time, numpy as np\n{WRITERS[writer]}\nw = SummaryWriter({logdir!r})\n"
        child = subprocess.Popen([sys.executable, "-u", "-c", code + textwrap.dedent(loop)],
                                 stdout=subprocess.PIPE, text=True)
        logged = []  # (records logged, when the call returned)
        start = time.monotonic()
        try:
            while time.monotonic() - start < settle:
                count, when = child.stdout.readline().split()
                logged.append((int(count), float(when)))
            child.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            child.wait(timeout=30)
            for line in child.stdout.read().splitlines():
                count, when = line.split()
                logged.append((int(count), float(when)))
        finally:
            child.kill()
            child.stdout.close()
        [name] = [n for n in os.listdir(logdir) if "tfevents" in n]
        kept = count_records(os.path.join(logdir, name)) - 1
        total = logged[-1][0]
        first_lost = next((when for count, when in logged if count > kept), killed_at)
        return total - kept, (killed_at - first_lost) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--writer", choices=sorted(WRITERS), action="append",
                        help="writers to measure (default: both)")
    args = parser.parse_args()
    for writer in args.writer or sorted(WRITERS):
        for name, loop in LOOPS.items():
            results = [kill_once(writer, loop, 2.0) for _ in range(args.runs)]
            lost = [r[0] for r in results]
            age = [r[1] for r in results]
            print(f"{writer}, {name}: lost {statistics.median(lost):.0f} records (max {max(lost)}), "
                  f"logged {statistics.median(age):.0f} ms (max {max(age):.0f} ms) before the kill, "
                  f"median of {args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
