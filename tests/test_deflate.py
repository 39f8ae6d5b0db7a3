"""The PNG encoder's deflate (csrc/encoders/deflate.*) on its own, checked against zlib's
inflate: random and structured bytes (runs, periods, near-repeats, noise) given in slices as the
PNG layer gives filtered rows must come back exactly (hypothesis, bounded examples)."""

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fasttb import _core


def inflate(raw: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    out = d.decompress(raw) + d.flush()
    assert d.eof and not d.unused_data, "the stream must end exactly where its final block does"
    return out


def structured(seed: int, size: int, kind: str) -> bytes:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    if kind == "runs":
        values = rng.integers(0, 256, size // 16 + 1, dtype=np.uint8)
        return np.repeat(values, rng.integers(1, 400, values.size))[:size].tobytes()
    if kind == "period":
        period = int(rng.integers(1, 5000))
        tile = rng.integers(0, 256, period, dtype=np.uint8)
        return np.resize(tile, size).tobytes()
    if kind == "near":  # a period with a few bytes changed: long matches broken here and there
        tile = rng.integers(0, 4, int(rng.integers(3, 300)), dtype=np.uint8)
        data = np.resize(tile, size)
        data[rng.integers(0, size, size // 50 + 1)] = rng.integers(0, 256, size // 50 + 1, dtype=np.uint8)
        return data.tobytes()
    # "mixed": stretches of each kind, and repeats of far-back stretches
    parts, total = [], 0
    while total < size:
        n = int(rng.integers(1, 20000))
        k = rng.choice(["noise", "runs", "period", "near"])
        part = structured(int(rng.integers(0, 2**31)), n, k)
        if parts and rng.random() < 0.3:
            part = parts[int(rng.integers(0, len(parts)))]
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


SLICES = st.sampled_from([1, 7, 300, 4096, 65536, 131072])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=5000), unit=st.integers(1, 4), max_slice=SLICES)
def test_random_bytes_inflate_back(data, unit, max_slice):
    assert inflate(_core._deflate(data, unit, max_slice)) == data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 300_000),
       kind=st.sampled_from(["noise", "runs", "period", "near", "mixed"]),
       unit=st.integers(1, 4), max_slice=SLICES)
def test_structured_bytes_inflate_back(seed, size, kind, unit, max_slice):
    data = structured(seed, size, kind)
    assert inflate(_core._deflate(data, unit, max_slice)) == data


@pytest.mark.parametrize("size", [1, 2, 3, 258, 259, 32768, 32769, 131072, 131073, 400_000])
def test_sizes_at_the_edges(size):
    for data in (bytes(size), structured(size, size, "mixed"), structured(size, size, "noise")):
        assert inflate(_core._deflate(data)) == data


def test_compresses_what_repeats():
    data = bytes(range(256)) * 400
    assert len(_core._deflate(data)) < len(data) // 50


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        _core._deflate(b"")
    with pytest.raises(ValueError):
        _core._deflate(b"x", max_slice=0)
    with pytest.raises(ValueError):
        _core._deflate(b"x", unit=0)
