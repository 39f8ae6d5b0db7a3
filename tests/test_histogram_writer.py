"""add_histogram / add_histogram_raw end to end: the same records as torch's writer (sum_squares
within rounding, SPEC §4.4), read back by the real tensorboard."""

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import accumulator, assert_same_runs, read_events
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from fasttb import SummaryWriter, _core

RNG = np.random.default_rng(5)
CASES = [
    ("normal32", RNG.standard_normal(10_000).astype(np.float32), {}),
    ("wide64", RNG.standard_normal(3_000) * 1e10, {}),
    ("ints", RNG.integers(-1000, 1000, (40, 50)), {}),
    ("half", RNG.standard_normal(500).astype(np.float16), {}),
    ("bools", RNG.random(100) > 0.5, {}),
    ("specials", np.array([0.0, -0.0, 1e-300, np.nan, np.inf, -np.inf, 1e20, 1.0, -1e-12]), {}),
    ("tensor", torch.linspace(-3, 3, 1001), {}),
    ("bf16", torch.linspace(-70000, 70000, 11, dtype=torch.bfloat16), {}),
    ("merged", RNG.standard_normal(5000), {"max_bins": 10}),
    ("auto", RNG.standard_normal(5000), {"bins": "auto"}),
    ("int_bins", np.arange(10, dtype=np.float32), {"bins": 5, "max_bins": 3}),
    ("edges", RNG.uniform(0, 20, 300), {"bins": [0, 2, 4, 20]}),
    ("scalar", 3.5, {}),
]


def log(writer):
    for step, (tag, values, kwargs) in enumerate(CASES):
        writer.add_histogram(tag, values, step, walltime=100.0 + step, **kwargs)
    writer.add_histogram_raw("raw", 0.0, 9.0, 10, 45.0, 285.0, [3.0, 6.0, 9.0], [3, 3, 4], 20, walltime=1.0)
    writer.add_histogram_raw("raw_np", np.float32(1), torch.tensor(2.0), 3, 4, None,
                             np.array([1.5, 2.5]), torch.tensor([1, 2]), 21, walltime=1.0)
    writer.add_histogram_raw("raw_empty", 0, 0, 0, 0, 0, [], [], 22, walltime=1.0)


def test_same_records_as_torch(tmp_path):
    with TorchWriter(str(tmp_path / "torch")) as w, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the stock writer's inf - inf in numpy
        log(w)
    with SummaryWriter(str(tmp_path / "fasttb")) as w:
        log(w)
    theirs = read_events(tmp_path / "torch")[1:]
    ours = read_events(tmp_path / "fasttb")[1:]
    assert len(ours) == len(theirs) == len(CASES) + 3
    for a, b in zip(ours, theirs):
        ha, hb = a.summary.value[0].histo, b.summary.value[0].histo
        assert a.summary.value[0].tag == b.summary.value[0].tag
        assert math.isclose(ha.sum_squares, hb.sum_squares, rel_tol=1e-12, abs_tol=1e-300) or (
            math.isnan(ha.sum_squares) and math.isnan(hb.sum_squares)) or ha.sum_squares == hb.sum_squares
        ha.sum_squares = hb.sum_squares = 0
        for field in ("min", "max", "sum"):  # NaN bits may differ; compare them as NaN
            x, y = getattr(ha, field), getattr(hb, field)
            if math.isnan(x) and math.isnan(y):
                setattr(ha, field, 0)
                setattr(hb, field, 0)
        assert a.SerializeToString() == b.SerializeToString(), (a, b)


def test_tensorboard_reads_histograms(logdir):
    values = RNG.standard_normal(100_000).astype(np.float32)
    with SummaryWriter(logdir) as w:
        for step in range(5):
            w.add_histogram("weights", values + step, step)
    acc = accumulator(logdir)
    hist = acc.Histograms("weights")
    assert [h.step for h in hist] == list(range(5))
    assert hist[0].histogram_value.num == 100_000
    assert sum(hist[0].histogram_value.bucket) == 100_000
    assert hist[3].histogram_value.min == float((values + 3).min())
    compressed = acc.CompressedHistograms("weights")
    assert len(compressed) == 5 and len(compressed[0].compressed_histogram_values) == 9
    basis_point, median = compressed[0].compressed_histogram_values[4]
    assert basis_point == 5000
    assert abs(median - float(np.median(values))) < 0.1


def test_values_are_copied_before_the_call_returns(logdir):
    values = np.ones(1_000_000, dtype=np.float32)
    with SummaryWriter(logdir) as w:
        w.add_histogram("h", values, 1)
        values[:] = 100.0  # the caller reuses its buffer at once
    h = accumulator(logdir).Histograms("h")[0].histogram_value
    assert h.min == h.max == 1.0


@pytest.mark.parametrize(
    "kwargs,error,fragment",
    [
        (dict(values=np.array([])), ValueError, "no element"),
        (dict(values=np.array([np.nan, np.inf])), ValueError, "histogram is empty"),
        (dict(values=[1.0, 2.0]), TypeError, "values"),
        (dict(values=None), TypeError, "values"),
        (dict(values=np.array(["a", "b"])), TypeError, "values"),
        (dict(values=np.ones(3), max_bins=0), ZeroDivisionError, "max_bins"),
        (dict(values=np.ones(3), global_step="x"), ValueError, "global_step"),
        (dict(values=np.ones(3), tag=3), TypeError, "tag"),
    ],
)
def test_bad_input_raises_and_keeps_earlier_records(logdir, kwargs, error, fragment):
    args = dict(tag="h", values=np.ones(3), global_step=2)
    args.update(kwargs)
    with SummaryWriter(logdir) as w:
        w.add_histogram("h", np.arange(5.0), 1)
        with pytest.raises(error, match=fragment):
            w.add_histogram(**args)
    assert [h.step for h in accumulator(logdir).Histograms("h")] == [1]


def test_raw_length_mismatch(logdir):
    with SummaryWriter(logdir) as w:
        with pytest.raises(ValueError, match="len\\(bucket_limits\\) != len\\(bucket_counts\\)"):
            w.add_histogram_raw("r", 0, 1, 1, 1, 1, [1.0], [1.0, 2.0])
        with pytest.raises(TypeError, match="min"):
            w.add_histogram_raw("r", "zero", 1, 1, 1, 1, [1.0], [1.0])


def test_large_histograms_count_against_the_queue_bound(logdir):
    import fasttb
    from fasttb import _core

    before = _core.engine_stats()["queue_limit"]
    fasttb.set_queue_limit(8 << 20)
    _core.reset_queue_high_water()
    try:
        values = np.ones(1_000_000, dtype=np.float64)  # 8 MB each: one in the queue at a time
        with SummaryWriter(logdir) as w:
            for step in range(6):
                w.add_histogram("big", values, step)
            stats = w.stats()
        # each item holds its 8 MB copy, so two never fit: the bound held with copies counted
        assert 8_000_000 < stats["queue_high_water"] <= 8 << 20
    finally:
        fasttb.set_queue_limit(before)
    assert len(accumulator(logdir).Histograms("big")) == 6


# Inputs of 1 MiB and more are queued before they are copied, and the worker buckets them while
# the caller is still copying (SummaryWriter.add_histogram's streamed path).
STREAMED = {
    "float32": RNG.standard_normal(1 << 19).astype(np.float32),
    "float64": np.concatenate([RNG.standard_normal(1 << 17) * 1e3, [np.inf, -0.0, 1e-13]]),
    "float16": RNG.standard_normal(1 << 20).astype(np.float16),
    "int32": RNG.integers(-(1 << 31), 1 << 31, 1 << 18, dtype=np.int32),
    "uint8": RNG.integers(0, 256, 1 << 21, dtype=np.uint8),
    "nan": np.where(RNG.random(1 << 18) < 1e-4, np.nan, RNG.standard_normal(1 << 18)).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(STREAMED))
def test_streamed_histograms_equal_the_kernel_run_in_place(logdir, name):
    values = STREAMED[name]
    assert values.nbytes >= 1 << 20
    with SummaryWriter(logdir) as w:
        w.add_histogram("h", values, 1)
        w.add_histogram("h", values[::-1].copy(), 2)  # a second one right behind the first
    mn, mx, num, total, squares, limits, counts = _core.tf_histogram(values, 0)
    got = [h.histogram_value for h in accumulator(logdir).Histograms("h")]
    assert len(got) == 2 and got[0].num == num == values.size
    assert list(got[0].bucket_limit) == limits and list(got[0].bucket) == counts
    assert list(got[1].bucket) == counts
    for field, want in (("min", mn), ("max", mx), ("sum", total), ("sum_squares", squares)):
        x = getattr(got[0], field)
        assert x == want or (math.isnan(x) and math.isnan(want)), field


def test_streamed_histogram_same_as_torch(tmp_path):
    edges = np.array(_core.default_edges(), dtype=np.float32)
    values = np.concatenate([RNG.standard_normal(1 << 18).astype(np.float32), edges,
                             np.nextafter(edges, np.float32(0)), [0, -0.0, 3e38]]).astype(np.float32)
    assert values.nbytes >= 1 << 20
    with TorchWriter(str(tmp_path / "torch")) as w:
        w.add_histogram("h", values, 7, walltime=1.0)
    with SummaryWriter(str(tmp_path / "fasttb")) as w:
        w.add_histogram("h", values, 7, walltime=1.0)
    (a,), (b,) = read_events(tmp_path / "fasttb")[1:], read_events(tmp_path / "torch")[1:]
    ha, hb = a.summary.value[0].histo, b.summary.value[0].histo
    assert math.isclose(ha.sum_squares, hb.sum_squares, rel_tol=1e-12)
    ha.sum_squares = hb.sum_squares = 0
    assert a.SerializeToString() == b.SerializeToString()


def test_streamed_histogram_dropped_when_the_queue_is_full(logdir):
    import fasttb

    before = _core.engine_stats()["queue_limit"]
    values = np.arange(1 << 20, dtype=np.float32)  # 4 MiB
    fasttb.set_queue_limit(4 << 20)
    try:
        with SummaryWriter(logdir, on_full="drop") as w:
            w.flush()
            _core._pause_worker(True)
            try:
                w.add_histogram("h", values, 1)  # alone in the queue: goes through
                w.add_histogram("h", values, 2)  # over the bound: dropped, never copied into
                values[:] = -1.0
            finally:
                _core._pause_worker(False)
            dropped = w.stats()["dropped"]
    finally:
        fasttb.set_queue_limit(before)
    assert dropped == 1
    (h,) = accumulator(logdir).Histograms("h")
    assert h.step == 1 and h.histogram_value.min == 0.0 and h.histogram_value.max == (1 << 20) - 1


def test_streamed_histograms_from_several_threads(logdir):
    import threading

    values = {k: (RNG.standard_normal(1 << 18) * (k + 1)).astype(np.float32) for k in range(4)}
    with SummaryWriter(logdir) as w:
        def log(k):
            for step in range(3):
                w.add_histogram(f"t{k}", values[k], step)
                w.add_scalar(f"s{k}", float(step), step)

        threads = [threading.Thread(target=log, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    acc = accumulator(logdir)
    for k in range(4):
        _, _, num, total, _, limits, counts = _core.tf_histogram(values[k], 0)
        hist = acc.Histograms(f"t{k}")
        assert [h.step for h in hist] == [0, 1, 2]
        for h in hist:
            assert h.histogram_value.sum == total and list(h.histogram_value.bucket) == counts
        assert [s.value for s in acc.Scalars(f"s{k}")] == [0.0, 1.0, 2.0]


def stock_and_ours(dialect: str) -> tuple:
    """The stock writer class of ``dialect`` ("torch" or "tensorboardX") and fasttb's."""
    if dialect == "torch":
        return TorchWriter, SummaryWriter
    import tensorboardX

    import fasttb.tensorboardX

    return tensorboardX.SummaryWriter, fasttb.tensorboardX.SummaryWriter


@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_default_bins_changed_in_place_or_replaced_as_in_the_stock_writers(tmp_path, dialect):
    # The stock writers keep default_bins as a plain list that bins="tensorflow" reads: fasttb
    # gave a copy (changes in place were lost), and torch's dialect refused an assignment.
    stock, ours = stock_and_ours(dialect)
    values = np.array([0.5, 1.5, -0.5, 3.0])
    for writer in (stock, ours):
        for name, change in (("in place", lambda w: w.default_bins.__setitem__(slice(None), [-1.0, 0.0, 1.0, 2.0])),
                             ("int", lambda w: setattr(w, "default_bins", 4)),
                             ("estimator", lambda w: setattr(w, "default_bins", "auto")),
                             ("only read", lambda w: w.default_bins)):
            with writer(str(tmp_path / writer.__module__ / name)) as w:
                change(w)
                w.add_histogram("h", values, 1)
    assert_same_runs(str(tmp_path / stock.__module__), str(tmp_path / ours.__module__))


@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_masked_arrays_as_in_the_stock_writers(tmp_path, dialect):
    # The stock writers count masked values in the buckets (np.histogram ignores the mask) but
    # not in min, max, sum and the sum of squares (the masked array's own methods); the native
    # kernel read the raw values for all of them.
    stock, ours = stock_and_ours(dialect)
    masked = np.ma.masked_array(RNG.standard_normal(1000), mask=RNG.random(1000) < 0.3)
    masked[masked.argmax()] = np.ma.masked  # the largest value is masked: max tells
    for writer in (stock, ours):
        with writer(str(tmp_path / writer.__module__)) as w:
            w.add_histogram("h", masked, 0, walltime=1.0)
            w.add_histogram("h", masked.astype(np.float32), 1, walltime=2.0, max_bins=20)
            w.add_histogram("h", masked, 2, walltime=3.0, bins=30)
    assert_same_runs(str(tmp_path / stock.__module__), str(tmp_path / ours.__module__))
    histograms = accumulator(str(tmp_path / ours.__module__)).Histograms("h")
    assert histograms[0].histogram_value.max == masked.max() < masked.data.max()
    assert histograms[0].histogram_value.num == 1000
