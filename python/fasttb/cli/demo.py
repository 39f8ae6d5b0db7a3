"""``python -m fasttb demo``: a synthetic training loop at a high step rate that logs scalars every
step and histograms and images every few steps, then says what it cost."""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

import numpy as np

from ..writer import SummaryWriter


def run_demo(logdir: Optional[str], steps: int) -> int:
    """Run the demo loop for `steps` steps, logging into `logdir`; returns an exit status."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(100_000).astype(np.float32) * 0.1
    y, x = np.mgrid[0:128, 0:128] / 128.0
    try:
        writer = SummaryWriter(logdir, comment="_fasttb-demo")
    except OSError as exc:  # a log dir that is a file, or read-only
        print(f"python -m fasttb demo: --logdir: {exc}", file=sys.stderr)
        return 2
    costs = {"add_scalar": [0.0, 0], "add_histogram": [0.0, 0], "add_image": [0.0, 0]}

    # Two clock reads cost something themselves; measure that and leave it out of the costs.
    clock = time.perf_counter
    overhead = min(-(clock() - clock()) for _ in range(10000))

    def charge(kind: str, seconds: float, calls: int) -> None:
        costs[kind][0] += max(0.0, seconds - overhead)
        costs[kind][1] += calls

    print(f"fasttb demo: {steps} steps into {writer.get_logdir()}")
    start = time.perf_counter()
    loss = 2.0
    for step in range(steps):
        # The "training": a little arithmetic, so that logging is most of what the loop does.
        grad = float(np.sin(step * 0.001)) * 0.01
        loss = loss * 0.9995 + abs(grad)
        lr = 1e-3 * 0.5 ** (step / steps)
        t0 = clock()
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/grad", grad, step)
        writer.add_scalar("train/lr", lr, step)
        charge("add_scalar", clock() - t0, 3)
        if step % 100 == 0:
            weights += rng.standard_normal(weights.size).astype(np.float32) * 0.001
            t0 = clock()
            writer.add_histogram("weights", weights, step)
            charge("add_histogram", clock() - t0, 1)
        if step % 500 == 0:
            phase = step / max(steps, 1)
            image = (np.stack([np.sin(8 * x + phase), np.cos(6 * y - phase), x * y]) * 0.5 + 0.5).astype(np.float32)
            t0 = clock()
            writer.add_image("samples", image, step)
            charge("add_image", clock() - t0, 1)
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - start
            print(f"  step {step + 1:>8}/{steps}  {(step + 1) / elapsed:10,.0f} steps/s", flush=True)
    loop = time.perf_counter() - start
    writer.close()
    total = time.perf_counter() - start
    stats = writer.stats()
    print(f"\n{steps} steps in {loop:.2f} s ({steps / loop:,.0f} steps/s); everything on disk "
          f"{total - loop:.3f} s later")
    for kind, (seconds, count) in costs.items():
        if count:
            print(f"  {kind:14s} {count:8d} calls  {seconds / count * 1e6:10.2f} us per call on the loop's thread")
    print(f"  {stats['records']:,} records, {stats['bytes']:,} bytes written; "
          f"queue high-water {stats['queue_high_water']:,} bytes; dropped {stats['dropped']}")
    print(f"\nOpen it with:  tensorboard --logdir {os.path.dirname(os.path.abspath(str(writer.get_logdir())))}")
    return 0 if stats["dropped"] == 0 and stats["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run_demo(None, 2000))
