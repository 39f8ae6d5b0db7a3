"""CRC-32C: published vectors, and every implementation against the `crc32c` package."""

import random

import crc32c
import pytest

from fasttb import _core

IMPLEMENTATIONS = [_core.crc32c, _core.crc32c_portable]
if _core.crc32c_hardware_available():
    IMPLEMENTATIONS.append(_core.crc32c_hardware)

VECTORS = [  # SPEC §2.4, cross-checked there with two independent packages
    (b"", 0x00000000, 0xA282EAD8),
    (b"123456789", 0xE3069283, 0xC78AB0E5),
    (b"a", 0xC1D04330, 0x28E46E78),
    (bytes(32), 0x8A9136AA, 0x0FD7FFFA),
    (b"\xff" * 32, 0x62A8AB43, 0xF909B029),
    (bytes(range(32)), 0x46DD794E, 0x951F7892),
]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("data,crc,masked", VECTORS)
def test_vectors(impl, data, crc, masked):
    assert impl(data) == crc
    assert _core.masked_crc32c(data) == masked


def test_hardware_path_is_chosen_where_available():
    expected = "sse4.2" if _core.crc32c_hardware_available() else "portable"
    if _core.crc32c_implementation() == "armv8-crc":
        expected = "armv8-crc"
    assert _core.crc32c_implementation() == expected


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
def test_every_length_up_to_4096(impl):
    rng = random.Random(1234)
    buf = rng.randbytes(4096 + 8)
    for n in range(4097):
        offset = n % 8  # misaligned starts too
        chunk = buf[offset : offset + n]
        assert impl(chunk) == crc32c.crc32c(chunk), n


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [3 * 4096 - 1, 3 * 4096, 3 * 4096 + 1, 6 * 4096 + 17, 1 << 20, (1 << 22) + 3])
def test_large_buffers_use_interleaved_streams(impl, n):
    data = random.Random(n).randbytes(n)
    assert impl(data) == crc32c.crc32c(data)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda f: f.__name__)
def test_extend_equals_concatenation(impl):
    rng = random.Random(7)
    for _ in range(200):
        a = rng.randbytes(rng.randrange(0, 30000))
        b = rng.randbytes(rng.randrange(0, 30000))
        assert impl(b, impl(a)) == impl(a + b)


def test_accepts_any_buffer():
    data = bytearray(b"123456789")
    assert _core.crc32c(data) == 0xE3069283
    assert _core.crc32c(memoryview(data)) == 0xE3069283


# SPEC §2.4's header table has the bytes of the rows for 1, 21, 128 and 65536 swapped; these values
# are from the independent `crc32c` package (conftest.masked) and agree with the rows for 0, 24, 72.
@pytest.mark.parametrize("length", [0, 1, 21, 24, 26, 72, 128, 65536])
def test_record_header_crc(length):
    from conftest import masked

    record = _core.frame_record(bytes(length))
    assert record[:8] == length.to_bytes(8, "little")
    assert int.from_bytes(record[8:12], "little") == masked(length.to_bytes(8, "little"))
    assert int.from_bytes(record[-4:], "little") == masked(bytes(length))
    assert len(record) == length + 16


def test_known_header_bytes():
    assert _core.frame_record(b"")[8:12].hex() == "29039807"
    assert _core.frame_record(bytes(72))[8:12].hex() == "fe92489d"
