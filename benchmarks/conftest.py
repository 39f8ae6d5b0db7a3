"""Fixtures for the pytest-benchmark suite: one writer of each installed kind, side by side.

Run: python -m pytest benchmarks --benchmark-only --benchmark-autosave
(each test is grouped by what it measures, so the table compares the writers directly)."""

import pytest

from fasttb.cli.bench import writer_classes


WRITERS = writer_classes()


@pytest.fixture(params=list(WRITERS))
def writer(request, tmp_path):
    w = WRITERS[request.param](str(tmp_path / request.param))
    yield w
    w.close()
