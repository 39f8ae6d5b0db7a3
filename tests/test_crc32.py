"""CRC-32 of PNG chunks: every implementation against zlib's, at every length and alignment."""

import random
import zlib

import pytest

from fasttb import _core

IMPLEMENTATIONS = [_core.crc32]
if _core.crc32_pclmul_available():
    IMPLEMENTATIONS.append(_core.crc32_pclmul)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
def test_every_length_up_to_2048_and_every_alignment(impl):
    # The folding covers 64 bytes or more, 16 at a time; the lengths around each step and the
    # tails zlib finishes are all here, from every start modulo 16.
    buf = random.Random(1).randbytes(2048 + 16)
    for n in range(2049):
        offset = n % 16
        chunk = buf[offset : offset + n]
        assert impl(chunk) == zlib.crc32(chunk), n
        assert impl(chunk, 0xDEADBEEF) == zlib.crc32(chunk, 0xDEADBEEF), n


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [64, 127, 128, 4096 + 63, 1 << 20, (1 << 22) + 5])
def test_large_buffers_and_extremes(impl, n):
    rng = random.Random(n)
    for data in (rng.randbytes(n), bytes(n), b"\xff" * n):
        assert impl(data) == zlib.crc32(data)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
def test_extend_equals_concatenation(impl):
    rng = random.Random(7)
    for _ in range(100):
        a, b = rng.randbytes(rng.randrange(0, 5000)), rng.randbytes(rng.randrange(0, 5000))
        assert impl(b, impl(a)) == impl(a + b) == zlib.crc32(a + b)


def test_published_check_value():
    assert _core.crc32(b"123456789") == 0xCBF43926 and _core.crc32(b"") == 0
