"""add_histogram of float32 values: the caller's cost, and the cost until flush() returns."""

import numpy as np
import pytest


@pytest.mark.parametrize("n", [10_000, 1_000_000])
def test_add_histogram_call(benchmark, writer, n):
    benchmark.group = f"add_histogram {n:.0e} float32 (caller's thread)"
    values = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    benchmark.pedantic(writer.add_histogram, args=("h", values, 1), rounds=10, warmup_rounds=1)
    writer.flush()


@pytest.mark.parametrize("n", [10_000, 1_000_000])
def test_add_histogram_until_flushed(benchmark, writer, n):
    benchmark.group = f"add_histogram {n:.0e} float32 + flush"
    values = np.random.default_rng(0).standard_normal(n).astype(np.float32)

    def run():
        writer.add_histogram("h", values, 1)
        writer.flush()

    benchmark.pedantic(run, rounds=10, warmup_rounds=1)


def test_bucketing_kernel(benchmark):
    """The worker's whole histogram computation (bins, min, max, sum, sum_squares) run on this
    thread: divide the median by 1e7 for the cost per value."""
    from fasttb import _core

    benchmark.group = "tensorflow histogram of 1e7 float32, the worker's kernel"
    values = np.random.default_rng(0).standard_normal(10_000_000).astype(np.float32)
    benchmark.pedantic(_core.tf_histogram, args=(values, 0), rounds=10, warmup_rounds=1)
