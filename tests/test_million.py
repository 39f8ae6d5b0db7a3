"""1,000,000 add_scalar calls, then close(): exactly 1,000,000 events, read back by tensorboard."""

import pytest
from conftest import accumulator


@pytest.mark.slow
def test_one_million_scalars(logdir):
    from fasttb import SummaryWriter

    w = SummaryWriter(logdir)
    for i in range(1_000_000):
        w.add_scalar("loss", i * 0.5, i)
    w.close()
    assert w.stats()["records"] == 1_000_001  # with the file's first record
    events = accumulator(logdir).Scalars("loss")
    assert len(events) == 1_000_000
    assert [e.step for e in events[:3]] == [0, 1, 2]
    assert events[-1].step == 999_999 and events[-1].value == 499_999.5
    assert all(e.step == i for i, e in enumerate(events))
