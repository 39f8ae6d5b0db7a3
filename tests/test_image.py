"""Images: fasttb's PNG encoder (``_core.encode_png``) and the caller-side conversion
(``fasttb._image``), checked pixel for pixel against the stock writer.

Every PNG fasttb writes is decoded by Pillow (and small ones also by a reference decoder written
here from the PNG specification) and compared with the pixels the stock writer's own PNG decodes
to, for the same input. Nothing here asserts a timing.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from conftest import image_values, pil_decode, read_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.tensorboard import SummaryWriter as TorchWriter
from torch.utils.tensorboard import summary as stock
from torch.utils.tensorboard._utils import figure_to_image as stock_figure_to_image

from fasttb import _core, _image
from fasttb._image import (
    ImageFormatError,
    figure_to_chw_uint8,
    image_to_hwc_uint8,
    image_with_boxes_to_hwc_uint8,
    images_to_hwc_uint8,
)
from fasttb.cli.bench import png_images

RNG = np.random.default_rng(20240611)
COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
PIL_MODE = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
SPECIAL = [0.0, 0.2, 0.5, 0.6, 0.999, 1.0, -0.5, 2.0, np.nan, np.inf, -np.inf, 1e-8, 255.0, -0.0]


# -- helpers -------------------------------------------------------------------------------------


def chunks(png: bytes):
    """(type, data) of every chunk, CRCs checked."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        kind = png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", png, pos + 8 + length)
        assert crc == zlib.crc32(kind + data), f"bad CRC in {kind!r}"
        out.append((kind, data))
        pos += 12 + length
    assert pos == len(png)
    return out


def reference_decode(png: bytes) -> np.ndarray:
    """A decoder independent of Pillow: chunk layout, IHDR, zlib (Python's), and the five PNG
    filters undone row by row as the specification defines them."""
    parts = chunks(png)
    kinds = [k for k, _ in parts]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    width, height, depth, color, method, filt, interlace = struct.unpack(">IIBBBBB", parts[0][1])
    assert (depth, method, filt, interlace) == (8, 0, 0, 0)
    bpp = {v: k for k, v in COLOR_TYPE.items()}[color]
    raw = zlib.decompress(b"".join(d for k, d in parts if k == b"IDAT"))
    stride = width * bpp
    assert len(raw) == height * (stride + 1)
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        row = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        assert ftype <= 4, f"filter type {ftype}"
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (row[x] + pred) & 255
        out[y] = cur
        prev = cur
    return out.astype(np.uint8).reshape(height, width, bpp)


def encode_and_check(pixels: np.ndarray, reference: bool = False) -> bytes:
    """fasttb's PNG of `pixels`, verified to decode (with Pillow) to exactly `pixels`."""
    png = _core.encode_png(pixels)
    decoded = pil_decode(png)
    assert decoded.shape == pixels.shape
    np.testing.assert_array_equal(decoded, pixels)
    kinds = [k for k, _ in chunks(png)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    assert png[25] == COLOR_TYPE[pixels.shape[2]]  # IHDR colour type
    if reference:
        np.testing.assert_array_equal(reference_decode(png), pixels)
    return png


def stock_image(img, dataformats):
    """Pixels and (height, width, colorspace) the stock writer stores for add_image[s]."""
    with warnings.catch_warnings():
        # The stock writer lets numpy warn about NaN and overflow in its casts.
        warnings.simplefilter("ignore", RuntimeWarning)
        value = stock.image("t", img, dataformats=dataformats).value[0].image
    return pil_decode(value.encoded_image_string), (value.height, value.width, value.colorspace)


def fasttb_image(pixels: np.ndarray):
    """What fasttb stores for converted `pixels`: the decoded PNG and (height, width, colorspace)."""
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.flags.c_contiguous
    assert pixels.shape[2] in (2, 3, 4)
    return pil_decode(encode_and_check(pixels)), pixels.shape


def assert_same_as_stock(img, dataformats, convert=image_to_hwc_uint8):
    expected, expected_meta = stock_image(img, dataformats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fasttb's conversion must not warn
        pixels = convert(img, dataformats)
    got, meta = fasttb_image(pixels)
    assert tuple(meta) == expected_meta
    np.testing.assert_array_equal(got, expected)


def random_values(shape, dtype, rng=RNG):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -300), min(info.max, 300), shape, endpoint=True).astype(dtype)
    values = rng.uniform(-0.25, 1.25, shape)
    flat = values.reshape(-1)
    k = min(flat.size, len(SPECIAL))
    flat[:k] = SPECIAL[:k]
    rng.shuffle(flat)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


# -- the encoder -----------------------------------------------------------------------------------


def content(kind: str, shape, rng=RNG) -> np.ndarray:
    h, w, c = shape
    if kind == "noise":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "flat":
        return np.full(shape, rng.integers(0, 256), np.uint8)
    if kind == "few":  # small alphabet, short repeats everywhere
        return rng.integers(0, 3, shape, dtype=np.uint8)
    if kind == "rows":  # every row the same: long matches one row back
        return np.ascontiguousarray(np.broadcast_to(rng.integers(0, 256, (1, w, c), dtype=np.uint8), shape))
    if kind == "tiles":  # a tile repeated: matches at many distances
        tile = rng.integers(0, 256, (7, 13, c), dtype=np.uint8)
        return np.ascontiguousarray(np.tile(tile, (h // 7 + 1, w // 13 + 1, 1))[:h, :w])
    if kind == "ramp":
        y, x = np.mgrid[0:h, 0:w]
        return np.stack([((x * (k + 1) + y * (3 - k)) // 3 % 256) for k in range(c)], -1).astype(np.uint8)
    if kind == "smooth":
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        planes = [127.5 + 127 * np.sin(x / (9 + 7 * k)) * np.cos(y / (13 + 5 * k)) for k in range(c)]
        return np.stack(planes, -1).astype(np.uint8)
    if kind == "halves":  # noise above flat: stored and Huffman blocks in one stream
        a = np.zeros(shape, np.uint8)
        a[: h // 2] = rng.integers(0, 256, (h // 2, w, c), dtype=np.uint8)
        return a
    y, x = np.mgrid[0:h, 0:w]
    if kind == "gradient":  # exact, wrapping at 256: residuals one constant but at the wraps
        return np.stack([(x * (k % 2 + 1) + y * (k + 1)) % 256 for k in range(c)], -1).astype(np.uint8)
    if kind == "hramp":  # every row the same ramp: rows of zeros after filtering
        return np.repeat((x % 256).astype(np.uint8)[..., None], c, -1)
    if kind == "regions":  # a few flat colours with straight and round edges
        colours = rng.integers(0, 256, (4, c), dtype=np.uint8)
        a = np.empty(shape, np.uint8)
        a[:] = colours[0]
        a[: h // 3] = colours[1]
        a[h // 2 :, w // 4 : w // 2] = colours[2]
        a[(x - 0.7 * w) ** 2 + (y - 0.6 * h) ** 2 < (0.2 * min(h, w)) ** 2] = colours[3]
        return a
    if kind == "checker":  # squares of 5 pixels: each row repeats a period, every fifth row flips
        colours = rng.integers(0, 256, (2, c), dtype=np.uint8)
        return colours[(y // 5 + x // 5) % 2]
    if kind == "periodic":  # a short random period, shifted along each row: periods behind far matches
        period = int(rng.integers(2, 40))
        pattern = rng.integers(0, 256, (period, c), dtype=np.uint8)
        return pattern[(x + y * int(rng.integers(0, period))) % period]
    if kind == "sparse":  # plateaus of a slow function: zeros with a residual here and there
        planes = [2.5 + 2 * np.sin(x / (23 + 4 * k)) * np.cos(y / (17 + 3 * k)) for k in range(c)]
        return np.stack(planes, -1).astype(np.uint8)
    if kind == "photo":  # smoothed noise, a hard-edged shape, and grain
        coarse = rng.uniform(40, 215, (h // 8 + 2, w // 8 + 2, c))
        t = ((x % 8) / 8)[..., None]
        a = coarse[y // 8, x // 8] * (1 - t) + coarse[y // 8, x // 8 + 1] * t
        a[h // 4 : h // 2, w // 3 : 2 * w // 3] = 230
        return np.clip(a + rng.normal(0, 2, shape), 0, 255).astype(np.uint8)
    raise AssertionError(kind)


KINDS = ["noise", "flat", "few", "rows", "tiles", "ramp", "smooth", "halves", "gradient", "hramp",
         "regions", "checker", "periodic", "sparse", "photo"]


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", KINDS)
def test_encode_png_small_shapes(channels, kind):
    for h, w in [(1, 1), (1, 2), (2, 1), (1, 7), (3, 5), (5, 3), (16, 16), (17, 33), (2, 100)]:
        encode_and_check(content(kind, (h, w, channels)), reference=True)


@pytest.mark.parametrize("kind", KINDS)
def test_encode_png_tiny_shapes(kind):
    # Every width up to a SIMD step and a bit, in one to three rows: the filters' first pixel,
    # their 16-byte steps and the last partial step, and matches shorter than their checks.
    for c in [1, 2, 3, 4]:
        for h in [1, 2, 3]:
            for w in range(1, 18):
                encode_and_check(content(kind, (h, w, c)), reference=True)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", KINDS)
def test_encode_png_medium_shapes(channels, kind):
    # Sizes around the encoder's internal boundaries: rows longer than a block, many blocks,
    # blocks that are a single row, odd widths.
    for h, w in [(64, 1), (300, 257), (3, 40000), (1, 70000), (1000, 31)]:
        encode_and_check(content(kind, (h, w, channels)))


@pytest.mark.parametrize("kind", ["flat", "hramp", "rows", "checker", "periodic", "gradient", "noise", "halves"])
def test_encode_png_boundaries(kind):
    shapes = [
        (4, 86, 3), (3, 258, 1), (3, 259, 1), (5, 257, 1), (2, 129, 2),  # rows of about 258 bytes
        (2, 30000, 3),  # rows over 64 KiB: stored blocks in several pieces
        (2, 45000, 3), (3, 33000, 4),  # rows over 128 KiB: a row deflated in two slices
        (200, 500, 3), (150, 1000, 2),  # 43 or 32 rows to a slice: slices end mid-pattern
        (700, 700, 1),  # many slices gathered into one Huffman block
    ]
    for shape in shapes:
        encode_and_check(content(kind, shape))


def test_encode_png_gathered_block_fills_up():
    # Each 8-pixel word one of two: compressible slices with a match every few bytes, more
    # than one gathered Huffman block holds (it is written out and a new one started).
    rng = np.random.default_rng(3)
    words = rng.integers(0, 256, (2, 8), dtype=np.uint8)
    pixels = words[rng.integers(0, 2, (400, 150))].reshape(400, 1200, 1)
    encode_and_check(pixels)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_encode_png_planes_equal_interleaved(count):
    # CHW planes are interleaved a row at a time inside the encoder (16 pixels a step, the rest
    # one by one): the PNG must be the very one of the HWC image, one plane spread over RGB.
    rng = np.random.default_rng(count)
    for width in list(range(1, 40)) + [255, 1000]:
        for kind in ["noise", "smooth"]:
            planes = np.ascontiguousarray(content(kind, (3, width, count), rng).transpose(2, 0, 1))
            hwc = np.ascontiguousarray(np.repeat(planes, 3, 0) if count == 1 else planes).transpose(1, 2, 0)
            png = _core.encode_png(planes, planar=True)
            assert png == _core.encode_png(np.ascontiguousarray(hwc)), (kind, width)
            np.testing.assert_array_equal(pil_decode(png), hwc)
    with pytest.raises(ValueError, match="channels, height, width"):
        _core.encode_png(np.zeros((2, 3), np.uint8), planar=True)
    with pytest.raises(ValueError, match="1 to 4 channels"):
        _core.encode_png(np.zeros((5, 3, 3), np.uint8), planar=True)


def test_encode_png_buffers_reused_across_images_and_threads():
    # The encoder keeps its buffers per thread from one image to the next: nothing of an earlier
    # image (larger, smaller, other channels, other content) may reach a later one's PNG, and
    # threads encoding at once must not share them.
    shapes = [(300, 301, 4), (5, 7, 1), (256, 256, 3), (1, 1, 2), (40, 1290, 1), (64, 64, 3)]
    images = [content(kind, shape, np.random.default_rng(k))
              for k, (kind, shape) in enumerate(zip(["smooth", "noise", "tiles", "few", "rows", "flat"], shapes))]
    expected = [_core.encode_png(a) for a in images]
    for a, png in zip(images + images[::-1], expected + expected[::-1]):
        assert _core.encode_png(a) == png
        np.testing.assert_array_equal(pil_decode(png), a)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(_core.encode_png, images * 4)) == expected * 4


def test_encode_png_long_runs_across_rows():
    # One value throughout, and rows that repeat exactly: matches of 258 bytes that run over
    # row ends, slice ends and the end of the image, at the previous pixel and the previous row.
    for shape in [(1, 1000, 1), (40, 1290, 1), (9, 86, 3), (300, 301, 4), (2, 70000, 1)]:
        encode_and_check(np.full(shape, 7, np.uint8))
        encode_and_check(content("rows", shape))
    a = np.zeros((64, 64, 3), np.uint8)
    a[::7, ::5] = 255  # a lone pixel between long runs
    encode_and_check(a, reference=True)


@pytest.mark.slow
def test_encode_png_large():
    a = content("smooth", (2048, 2048, 3))
    a[::5, ::3] = RNG.integers(0, 256, a[::5, ::3].shape, dtype=np.uint8)
    encode_and_check(a)


def pillow_size(pixels: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG")
    return len(buf.getvalue())


@pytest.mark.parametrize("name", list(png_images(8)))
def test_encode_png_sizes_stay_near_pillow(name):
    # Not a speed test. The benchmark's image classes (python -m fasttb bench), at half its size:
    # the bound is 1.25x Pillow's default PNG, and a little more for the constant part
    # of a stream (headers, codes), which tiny images feel.
    pixels = png_images(512)[name]
    assert len(encode_and_check(pixels)) <= 1.25 * pillow_size(pixels) + 64
    tiny = png_images(16)[name]
    assert len(encode_and_check(tiny)) <= 1.25 * pillow_size(tiny) + 128


def test_encode_png_never_expands_noise():
    # Stored blocks when Huffman coding would not pay: a few bytes per 64 KiB and per row.
    for shape in [(256, 256, 3), (3, 40000, 4), (1, 1, 1)]:
        noise = content("noise", shape)
        assert len(_core.encode_png(noise)) < noise.nbytes + noise.shape[0] + 128


@pytest.mark.parametrize("kind", KINDS)
def test_encode_png_sizes_near_pillow_for_every_kind(kind):
    for shape in [(8, 8, 3), (32, 32, 4), (100, 37, 2), (256, 256, 3)]:
        pixels = content(kind, shape, np.random.default_rng(1))
        assert len(encode_and_check(pixels)) <= 1.25 * pillow_size(pixels) + 64, shape


@pytest.mark.parametrize("kind", ["smooth", "sparse"])
def test_encode_png_smooth_greyscale_size_bound(kind):
    """A known gap, held where it is: on small quantised smooth greyscale images zlib's deep hash
    chains find longer matches than the encoder's few candidates, so these come out at 1.33x and
    1.40x Pillow's size, above the 1.25x the other classes meet. Fail if that grows."""
    pixels = content(kind, (256, 256, 1), np.random.default_rng(1))
    assert len(encode_and_check(pixels)) <= 1.45 * pillow_size(pixels) + 64


def test_encode_png_rejects_bad_arrays():
    with pytest.raises(ValueError):
        _core.encode_png(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        _core.encode_png(np.zeros((4, 0, 3), np.uint8))
    with pytest.raises(ValueError):
        _core.encode_png(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError):
        _core.encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        _core.encode_png(np.zeros((4, 4, 3), np.float32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 90),
    c=st.integers(1, 4),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32 - 1),
)
def test_encode_png_property(h, w, c, kind, seed):
    encode_and_check(content(kind, (h, w, c), np.random.default_rng(seed)), reference=h * w <= 400)


# -- conversion, against the stock writer -----------------------------------------------------------

LAYOUTS = [
    ((3, 5, 7), "CHW"),
    ((5, 7, 3), "HWC"),
    ((5, 7), "HW"),
    ((5, 7), "WH"),
    ((3, 5, 7), "chw"),
    ((5, 7, 3), "hwc"),
    ((1, 6, 9), "CHW"),
    ((6, 9, 1), "HWC"),
    ((2, 6, 9), "CHW"),
    ((6, 9, 4), "HWC"),
    ((4, 6, 9), "CHW"),
    ((7, 3, 5), "HCW"),
    ((3, 3, 5, 6), "NCHW"),
    ((3, 5, 6, 1), "NHWC"),
    ((10, 3, 2, 3), "nchw"),
    ((4, 1, 5, 6), "NCHW"),
    ((5, 6, 3, 2), "HWCN"),
    ((3, 4, 5), "CHX"),  # the stock writer reads a missing letter as the last axis
    ((4, 5, 3), "HWh"),
    ((1, 1, 1), "CHW"),
    ((1, 1), "HW"),
    ((1, 1, 1, 1), "NCHW"),
]


@pytest.mark.parametrize("shape,dataformats", LAYOUTS)
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
def test_layouts_match_stock(shape, dataformats, dtype):
    assert_same_as_stock(random_values(shape, dtype), dataformats)


@pytest.mark.parametrize(
    "dtype", ["uint8", "float16", "float32", "float64", "int64", "int32", "int8", "uint16", "bool"]
)
@pytest.mark.parametrize("shape,dataformats", [((3, 9, 11), "CHW"), ((9, 11, 4), "HWC"), ((8, 9), "HW")])
def test_dtypes_match_stock(dtype, shape, dataformats):
    assert_same_as_stock(random_values(shape, dtype), dataformats)


def test_scaling_rule_values():
    values = np.array([0.5, 1.0, 0.999, -0.5, 2.0, np.inf, -np.inf, np.nan, 0.2, 0.6, 0.0, 1e30])
    img = np.broadcast_to(values, (3, 1, values.size))
    expected = [127, 255, 254, 0, 255, 255, 0, 0, 51, 153, 0, 255]
    got = image_to_hwc_uint8(img.astype(np.float64), "CHW")
    assert got[0, :, 0].tolist() == expected
    assert_same_as_stock(img.astype(np.float64), "CHW")
    assert_same_as_stock(img.astype(np.float32), "CHW")
    # Integer images other than uint8 are scaled too: 1..255 all become 255.
    ints = np.arange(-2, 256, dtype=np.int64).reshape(1, 2, 129)
    assert set(image_to_hwc_uint8(ints, "CHW").ravel().tolist()) == {0, 255}
    assert_same_as_stock(ints, "CHW")
    assert_same_as_stock(ints.astype(np.uint16), "CHW")


def test_float64_rounds_to_float32_before_scaling():
    # 2,000,001 evenly spaced values in [0, 1]: seven of them truncate differently when the
    # product is taken in double; the stock writer rounds to float32 first.
    values = np.linspace(0, 1, 2_000_001)
    img = np.concatenate([values, np.zeros(3 * 1000 * 667 - values.size)]).reshape(3, 1000, 667)
    assert_same_as_stock(img, "CHW")
    assert image_to_hwc_uint8(np.full((1, 1, 1), 0.2), "CHW")[0, 0, 0] == 51


@pytest.mark.parametrize("n", [1, 3, 8, 10, 17])
@pytest.mark.parametrize("channels", [1, 3])
def test_grids_match_stock(n, channels):
    batch = random_values((n, channels, 5, 7), "float32")
    assert_same_as_stock(batch, "NCHW", images_to_hwc_uint8)
    assert_same_as_stock(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)), "NHWC", images_to_hwc_uint8)
    as_uint8 = (np.nan_to_num(np.clip(batch, 0, 1)) * 255).astype(np.uint8)
    assert_same_as_stock(as_uint8, "NCHW", images_to_hwc_uint8)


def test_grid_layout():
    # Ten 2x3 images: a 4x24 image, images 1-8 on top, 9 and 10 below, then black cells.
    batch = np.stack([np.full((3, 2, 3), i + 1, np.uint8) for i in range(10)])
    grid = images_to_hwc_uint8(batch)
    assert grid.shape == (4, 24, 3)
    assert grid[0, ::3, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert grid[2, ::3, 0].tolist() == [9, 10, 0, 0, 0, 0, 0, 0]
    # add_images with a 3-letter layout behaves exactly like add_image.
    img = random_values((3, 4, 5), "float32")
    np.testing.assert_array_equal(images_to_hwc_uint8(img, "CHW"), image_to_hwc_uint8(img, "CHW"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_torch_tensors_match_stock(dtype):
    base = torch.from_numpy(random_values((3, 6, 10), "float32")).nan_to_num(0.5)
    t = (base * 255).clamp(0, 255).to(dtype) if dtype == torch.uint8 else base.to(dtype)
    assert_same_as_stock(t, "CHW")
    grad = base.clone().requires_grad_(True)
    assert_same_as_stock(grad, "CHW")
    assert_same_as_stock(torch.stack([base, base * 0.5]), "NCHW", images_to_hwc_uint8)


def test_large_image_matches_stock():
    img = RNG.random((3, 2048, 2048), dtype=np.float32)
    img[:, ::7] = 0.25
    assert_same_as_stock(img, "CHW")


def test_result_contract():
    img = (RNG.random((6, 7, 3)) * 255).astype(np.uint8)
    out = image_to_hwc_uint8(img, "HWC")
    np.testing.assert_array_equal(out, img)  # uint8 kept as is
    for shape, fmt in LAYOUTS:
        out = image_to_hwc_uint8(random_values(shape, "float64"), fmt)
        assert out.dtype == np.uint8 and out.flags.c_contiguous and out.shape[2] in (2, 3, 4)
    # A non-contiguous input view works and the input is left alone.
    big = RNG.random((4, 10, 12), dtype=np.float32)
    view = big[::2, ::3, 1::2]
    before = big.copy()
    assert_same_as_stock(view, "CHW")
    np.testing.assert_array_equal(big, before)
    # Fortran-ordered arrays and transposed tensors, large enough for several conversion slices.
    assert_same_as_stock(np.asfortranarray(random_values((3, 300, 900), "float64")), "CHW")
    assert_same_as_stock(torch.from_numpy(random_values((900, 300, 3), "float32")).transpose(0, 1), "WHC")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    ndim=st.sampled_from([2, 3, 4]),
    dtype=st.sampled_from(["uint8", "float16", "float32", "float64", "int64", "uint16", "bool"]),
    lower=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_conversion_property(data, ndim, dtype, lower, seed):
    target = {2: "HW", 3: "HWC", 4: "NCHW"}[ndim]
    letters = data.draw(st.permutations(target))
    dataformats = "".join(letters)
    sizes = {
        "N": data.draw(st.integers(1, 11)),
        "C": data.draw(st.sampled_from([1, 3]) if ndim == 4 else st.integers(1, 4)),
        "H": data.draw(st.integers(1, 12)),
        "W": data.draw(st.integers(1, 13)),
    }
    shape = tuple(sizes[letter] for letter in dataformats)
    if lower:
        dataformats = dataformats.lower()
    img = random_values(shape, dtype, np.random.default_rng(seed))
    assert_same_as_stock(img, dataformats)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,dataformats,match",
    [
        ((3, 4, 5), "CCW", "dataformats"),
        ((3, 4, 5), "HW", "img_tensor"),
        ((3, 4), "CHW", "img_tensor"),
        ((3, 4, 5), "ABC", "dataformats"),
        ((5,), "H", "dataformats"),
        ((2, 3, 4, 5, 6), "NTCHW", "dataformats"),
        ((5, 4, 6), "CHW", "channels"),
        ((0, 4, 6), "CHW", "channels"),
        ((3, 0, 6), "CHW", "empty"),
        ((0, 3, 4, 4), "NCHW", "no images"),
        ((2, 4, 4, 4), "NCHW", "1 or 3 channels"),
        ((2, 3, 0, 4), "NCHW", "empty"),
    ],
)
def test_errors_name_the_argument(shape, dataformats, match):
    with pytest.raises(ImageFormatError, match=match) as info:
        image_to_hwc_uint8(np.zeros(shape, np.float32), dataformats)
    # Code written against the stock writer catches AssertionError.
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)


def test_errors_for_other_inputs():
    with pytest.raises(NotImplementedError, match="img_tensor"):
        image_to_hwc_uint8([[0.5]], "HW")
    with pytest.raises(TypeError, match="dataformats"):
        image_to_hwc_uint8(np.zeros((2, 2)), None)


# -- boxes -------------------------------------------------------------------------------------------


def stock_boxes(tmp_path, *args, **kwargs):
    """The stock writer's add_image_with_boxes, read back from its event file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = TorchWriter(str(tmp_path / "stock"))
        w.add_image_with_boxes("b", *args, **kwargs)
        w.close()
    (event,) = [e for e in read_events(str(tmp_path / "stock")) if e.HasField("summary")]
    value = event.summary.value[0].image
    return pil_decode(value.encoded_image_string), (value.height, value.width, value.colorspace)


BOXES = np.array([[1, 2, 30, 25], [10.5, 3.25, 18, 40], [-5, -5, 70, 70]], np.float32)


@pytest.mark.parametrize(
    "img,dataformats",
    [
        (RNG.random((3, 48, 64), dtype=np.float32), "CHW"),
        ((RNG.random((48, 64, 4)) * 255).astype(np.uint8), "HWC"),
        ((RNG.random((48, 64, 2)) * 255).astype(np.uint8), "HWC"),
        (RNG.random((48, 64)), "HW"),
        (RNG.random((2, 3, 24, 32), dtype=np.float32), "NCHW"),
    ],
)
@pytest.mark.parametrize(
    "boxes,labels,rescale",
    [
        (BOXES, None, 1),
        (BOXES, ["cat", "dog", "a longer label"], 1),
        (BOXES[:1], "solo", 1),
        (BOXES, ["too", "few"], 1),
        (BOXES, ["", "x", "y"], 1),
        (BOXES.astype(np.int64), ["one", "two", "three"], 2),
        (torch.from_numpy(BOXES), ["one", "two", "three"], 0.5),
        (np.zeros((0, 4)), None, 1.5),
        # A diverged detector's boxes, and boxes far outside: Pillow draws them, as for the stock writer.
        (np.array([[np.nan, 3, 20, 25], [1, 2, 30, 25]]), None, 1),
        (np.array([[0, 0, np.inf, 10]]), None, 1),
        (np.array([[0, 0, 3e9, 20], [-1e10, 2, 20, 20]]), None, 1),
    ],
)
def test_boxes_match_stock(tmp_path, img, dataformats, boxes, labels, rescale):
    expected, expected_meta = stock_boxes(
        tmp_path, img, boxes, rescale=rescale, dataformats=dataformats, labels=labels
    )
    before = np.array(img, copy=True)
    pixels, height, width = image_with_boxes_to_hwc_uint8(
        img, boxes, rescale=rescale, dataformats=dataformats, labels=labels
    )
    np.testing.assert_array_equal(img, before)  # drawing never touches the caller's array
    got, shape = fasttb_image(pixels)
    # The stored height and width are the ones before the resize (a stock quirk).
    assert (height, width, shape[2]) == expected_meta
    np.testing.assert_array_equal(got, expected)


def test_boxes_with_the_api_of_an_older_pillow(monkeypatch):
    # Before Pillow 9.2 the default font has no getbbox, only getsize: labels raised
    # AttributeError. (Nor is there Image.Resampling before 9.1, which Pillow's own resize needs
    # today, so that one cannot be taken away here.)
    from PIL import ImageFont

    img = RNG.random((3, 48, 64), dtype=np.float32)
    labels = ["cat", "dog", "a longer label"]
    current, _, _ = image_with_boxes_to_hwc_uint8(img, BOXES, rescale=0.5, labels=labels)
    font_type = type(ImageFont.load_default())
    font_type_getbbox = font_type.getbbox
    for cls in font_type.__mro__:
        if "getbbox" in vars(cls):
            monkeypatch.delattr(cls, "getbbox")

    def getsize(font, text):  # what getsize gave: the width and height of getbbox's box
        x0, y0, x1, y1 = font_type_getbbox(font, text)
        return x1 - x0, y1 - y0

    monkeypatch.setattr(font_type, "getsize", getsize, raising=False)
    older, _, _ = image_with_boxes_to_hwc_uint8(img, BOXES, rescale=0.5, labels=labels)
    np.testing.assert_array_equal(older, current)


def test_boxes_errors():
    img = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(ImageFormatError, match="box_tensor"):
        image_with_boxes_to_hwc_uint8(img, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rescale"):
        image_with_boxes_to_hwc_uint8(img, BOXES, rescale=0.01)


# -- figures -----------------------------------------------------------------------------------------


@pytest.fixture
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    yield pyplot
    pyplot.close("all")


def make_figure(plt, seed, size=(2.0, 1.5)):
    fig = plt.figure(figsize=size, dpi=50)
    ax = fig.add_subplot()
    ax.plot(np.random.default_rng(seed).standard_normal(30).cumsum())
    ax.set_title(f"run {seed}")
    return fig


def test_figure_matches_stock(plt):
    fig = make_figure(plt, 1)
    ours = figure_to_chw_uint8(fig, close=False)
    assert ours.shape == (3, 75, 100) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, stock_figure_to_image(fig, close=False))
    expected, meta = stock_image(stock_figure_to_image(fig, close=False), "CHW")
    got, shape = fasttb_image(image_to_hwc_uint8(ours, "CHW"))
    assert tuple(shape) == meta
    np.testing.assert_array_equal(got, expected)
    assert plt.fignum_exists(fig.number)
    figure_to_chw_uint8(fig, close=True)
    assert not plt.fignum_exists(fig.number)


def test_figure_list_matches_stock(plt):
    figs = [make_figure(plt, seed) for seed in range(3)]
    ours = figure_to_chw_uint8(figs, close=False)
    assert ours.shape == (3, 3, 75, 100)
    stock_batch = stock_figure_to_image(figs, close=False)
    np.testing.assert_array_equal(ours, stock_batch)
    expected, meta = stock_image(stock_batch, "NCHW")
    got, shape = fasttb_image(images_to_hwc_uint8(ours, "NCHW"))
    assert tuple(shape) == meta
    np.testing.assert_array_equal(got, expected)
    figure_to_chw_uint8(figs, close=True)
    assert not any(plt.fignum_exists(f.number) for f in figs)


# -- end to end, through the writers ------------------------------------------------------------


def test_writer_images_match_stock(tmp_path, plt):
    from fasttb import SummaryWriter

    img = random_values((3, 20, 30), "float64")
    batch = random_values((10, 1, 4, 6), "float32")
    fig = make_figure(plt, 7)
    results = []
    for name, cls in (("stock", TorchWriter), ("fasttb", SummaryWriter)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            w = cls(str(tmp_path / name))
            w.add_image("img", img, 5)
            w.add_image("hwc", np.ascontiguousarray(img.transpose(1, 2, 0)), 6, dataformats="HWC")
            w.add_images("batch", batch, 7)
            w.add_figure("fig", fig, 8, close=False)
            w.add_image_with_boxes("boxes", img, BOXES, 9, rescale=2, labels=["a", "b", "c"])
            w.close()
        results.append(image_values(str(tmp_path / name)))
    stock_values, ours = results
    assert len(ours) == 5
    assert [v[:5] for v in ours] == [v[:5] for v in stock_values]
    for a, b in zip(ours, stock_values):
        np.testing.assert_array_equal(a[5], b[5])
    # The real tensorboard reads the same images back.
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(
        str(tmp_path / "fasttb"), size_guidance=event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE)
    acc.Reload()
    assert sorted(acc.Tags()["images"]) == ["batch", "boxes", "fig", "hwc", "img"]
    for step, tag, height, width, _, pixels in ours:
        (event,) = acc.Images(tag)
        assert (event.step, event.height, event.width) == (step, height, width)
        np.testing.assert_array_equal(pil_decode(event.encoded_image_string), pixels)


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, fasttb._image\n"
        "bad = [m for m in ('torch', 'PIL', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _image.__all__


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 33)])
def test_uint8_chw_planes_match_stock(tmp_path, channels, shape):
    """The planar fast path (the worker interleaves CHW uint8) writes what the stock writer does."""
    from fasttb import SummaryWriter

    img = np.random.default_rng(channels).integers(0, 256, (channels, *shape), dtype=np.uint8)
    results = []
    for name, cls in (("stock", TorchWriter), ("fasttb", SummaryWriter)):
        w = cls(str(tmp_path / name))
        w.add_image("planes", img, 3)
        w.add_image("planes_lower", img, 4, dataformats="chw")
        w.close()
        results.append(image_values(str(tmp_path / name)))
    stock_values, ours = results
    assert [v[:5] for v in ours] == [v[:5] for v in stock_values]
    for a, b in zip(ours, stock_values):
        np.testing.assert_array_equal(a[5], b[5])


def test_uint8_chw_is_copied_before_the_call_returns(tmp_path):
    from fasttb import SummaryWriter

    img = np.full((3, 8, 8), 7, dtype=np.uint8)
    with SummaryWriter(str(tmp_path / "r")) as w:
        w.add_image("img", img, 1)
        img[:] = 200  # reused at once by the caller
    ((_, _, _, _, _, pixels),) = image_values(str(tmp_path / "r"))
    assert (pixels == 7).all()
