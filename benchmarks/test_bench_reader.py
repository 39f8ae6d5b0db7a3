"""Reading scalars back into a DataFrame: fasttb.SummaryReader, tbparse and tensorboard's
EventAccumulator side by side on the same logs (the "reader" section of
``python -m fasttb bench`` runs the same, with 1e6 scalars too)."""

import pytest

import fasttb

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module", params=[10_000, 100_000], ids=["1e4", "1e5"])
def scalar_log(request, tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("read"))
    with fasttb.SummaryWriter(logdir) as w:
        for step in range(request.param // 4):
            for tag in ("loss", "accuracy", "lr", "grad/norm"):
                w.add_scalar(tag, step * 1e-3, step)
    return request.param, logdir


def _fasttb(logdir):
    return fasttb.SummaryReader(logdir).scalars


def _tbparse(logdir):
    tbparse = pytest.importorskip("tbparse")
    return tbparse.SummaryReader(logdir).scalars


def _event_accumulator(logdir):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return sum(len(acc.Scalars(tag)) for tag in acc.Tags()[ea.SCALARS])


@pytest.mark.parametrize("read", [_fasttb, _tbparse, _event_accumulator], ids=["fasttb", "tbparse", "EventAccumulator"])
def test_read_scalars(benchmark, scalar_log, read):
    n, logdir = scalar_log
    benchmark.group = f"read {n:,} scalars"
    result = benchmark.pedantic(read, args=(logdir,), rounds=3 if read is not _fasttb else 7)
    assert (len(result) if not isinstance(result, int) else result) == n


def _fasttb_pivot(logdir):
    return fasttb.SummaryReader(logdir, pivot=True).scalars


def _tbparse_pivot(logdir):
    tbparse = pytest.importorskip("tbparse")
    return tbparse.SummaryReader(logdir, pivot=True).scalars


@pytest.mark.parametrize("read", [_fasttb_pivot, _tbparse_pivot], ids=["fasttb", "tbparse"])
def test_read_scalars_pivot(benchmark, scalar_log, read):
    # The wide form, one column per tag: pandas' groupby does most of the work on both sides.
    n, logdir = scalar_log
    benchmark.group = f"read {n:,} scalars, pivot=True"
    result = benchmark.pedantic(read, args=(logdir,), rounds=3)
    assert result.shape == (n // 4, 5)
