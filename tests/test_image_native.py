"""add_image's native path: uint8 and float arrays laid out CHW or HWC go to the core with no
numpy work; the core scales floats to pixels while it copies (``_core.scale_to_uint8``) and the
worker interleaves planes. Everything here is compared with the stock writer's numpy rule or with
the pixels its PNG decodes to."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import accumulator, image_values, pil_decode
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from fasttb import SummaryWriter, _core
from fasttb._image import ImageFormatError, native_layout

RNG = np.random.default_rng(77)
SPECIAL = [0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 255.0, 1e-9, 3e38, -3e38, np.nan, -np.nan, np.inf, -np.inf,
           np.nextafter(1.0, 0.0), np.nextafter(1.0, 2.0), 1 / 255, np.nextafter(1 / 255, 0.0)]


def stock_rule(x: np.ndarray) -> np.ndarray:
    """The stock writer's conversion, as torch.utils.tensorboard.summary.image writes it."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (x.astype(np.float32) * 255).clip(0, 255).astype(np.uint8)


# -- the scaling kernel ------------------------------------------------------------------------


def test_scale_float32_sweep_of_bit_patterns():
    # Every 61st bit pattern: all signs, exponents, NaN payloads and subnormals are visited.
    bits = np.arange(0, 1 << 32, 61, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    np.testing.assert_array_equal(_core.scale_to_uint8(values), stock_rule(values))


def test_scale_float32_every_value_near_the_pixel_boundaries():
    # All floats within 64 ulps of k / 255 for every k, where truncation changes its answer.
    centers = (np.arange(256, dtype=np.float32) / np.float32(255)).view(np.int32)
    values = (centers[:, None] + np.arange(-64, 65, dtype=np.int32)).reshape(-1).view(np.float32)
    np.testing.assert_array_equal(_core.scale_to_uint8(values), stock_rule(values))


def test_scale_float64():
    values = np.concatenate([
        RNG.integers(0, 1 << 64, 1 << 20, dtype=np.uint64, endpoint=False).view(np.float64),
        RNG.uniform(-0.1, 1.1, 1 << 20),
        np.arange(256) / 255 + np.arange(-3, 4)[:, None] * 2.0 ** -30,
        np.array(SPECIAL + [1e300, -1e300, 5e-324, 1 - 2.0 ** -53, 2.0 ** -25]),
    ], axis=None)
    np.testing.assert_array_equal(_core.scale_to_uint8(values), stock_rule(values))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", list(range(0, 40)) + [1023, 1025])
def test_scale_every_length_and_an_unaligned_start(dtype, n):
    values = np.resize(np.array(SPECIAL, dtype), n) + RNG.uniform(0, 1, n).astype(dtype)
    np.testing.assert_array_equal(_core.scale_to_uint8(values), stock_rule(values))
    raw = np.zeros(values.nbytes + 1, np.uint8)
    raw[1:] = values.view(np.uint8)
    unaligned = np.frombuffer(raw.data, dtype, n, offset=1)
    np.testing.assert_array_equal(_core.scale_to_uint8(unaligned), stock_rule(values))


def test_scale_keeps_the_shape_and_rejects_other_dtypes():
    assert _core.scale_to_uint8(np.zeros((2, 3, 4), np.float32)).shape == (2, 3, 4)
    for bad in (np.zeros(3, np.float16), np.zeros(3, np.uint8), np.zeros(3, ">f4")):
        with pytest.raises(ValueError, match="values"):
            _core.scale_to_uint8(bad)


# -- which arrays take the native path ---------------------------------------------------------


def test_native_layout_choices():
    chw = np.zeros((3, 4, 5), np.float32)
    assert native_layout(chw, "CHW") is True and native_layout(chw, "chw") is True
    assert native_layout(np.zeros((4, 5, 3), np.float64), "HWC") is False
    assert native_layout(np.zeros((4, 5, 3), np.uint8), "HWC") is False
    # Cases numpy must still convert: other layouts, dtypes, byte orders, memory orders, sizes.
    assert native_layout(np.zeros((4, 5, 1), np.float32), "HWC") is None  # grey HWC -> RGB
    assert native_layout(np.zeros((5, 4, 5), np.float32), "CHW") is None
    assert native_layout(chw, "HWC") is None and native_layout(chw, "WHC") is None
    assert native_layout(np.zeros((4, 5), np.float32), "HW") is True
    assert native_layout(np.zeros((4, 5), np.float32), "WH") is None
    assert native_layout(chw.astype(np.float16), "CHW") is None
    assert native_layout(chw.astype(">f4"), "CHW") is None
    assert native_layout(np.asfortranarray(chw), "CHW") is None
    assert native_layout(np.zeros((3, 0, 5), np.float32), "CHW") is None


# -- end to end ----------------------------------------------------------------------------------


def assert_writers_agree(tmp_path, log):
    results = []
    for name, cls in (("stock", TorchWriter), ("fasttb", SummaryWriter)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the stock writer's NaN casts
            w = cls(str(tmp_path / name))
            log(w)
            w.close()
        results.append(image_values(str(tmp_path / name)))
    stock, ours = results
    assert [v[:5] for v in ours] == [v[:5] for v in stock] and ours
    for a, b in zip(ours, stock):
        np.testing.assert_array_equal(a[5], b[5], err_msg=str(a[:5]))
    # The real tensorboard reads every image back as written.
    acc = accumulator(str(tmp_path / "fasttb"))
    for step, tag, height, width, _, pixels in ours:
        event = next(e for e in acc.Images(tag) if e.step == step)
        assert (event.height, event.width) == (height, width)
        np.testing.assert_array_equal(pil_decode(event.encoded_image_string), pixels)


def with_specials(a: np.ndarray) -> np.ndarray:
    flat = a.reshape(-1)
    k = min(flat.size, len(SPECIAL))
    flat[:k] = np.array(SPECIAL[:k], a.dtype) if a.dtype.kind == "f" else flat[:k]
    RNG.shuffle(flat)
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 33), (17, 1)])
def test_float_images_match_stock(tmp_path, monkeypatch, dtype, shape):
    def numpy_path(*args):
        raise AssertionError("took the numpy path")

    monkeypatch.setattr("fasttb.writer.image_to_hwc_uint8", numpy_path)
    calls = []
    with np.errstate(over="ignore"):
        for channels in (1, 2, 3, 4):
            chw = with_specials(RNG.uniform(-0.2, 1.2, (channels, *shape)).astype(dtype))
            calls.append((f"chw{channels}", chw, channels, "CHW"))
            if channels > 1:
                hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
                calls.append((f"hwc{channels}", hwc, channels, "HWC"))
        calls.append(("hw", chw[0].copy(), 5, "HW"))
        calls.append(("hw_lower", chw[0].copy(), 6, "hw"))
        calls.append(("hw_uint8", RNG.integers(0, 256, shape, dtype=np.uint8), 7, "HW"))

    def log(w):
        for tag, img, step, dataformats in calls:
            w.add_image(tag, img, step, dataformats=dataformats)

    assert_writers_agree(tmp_path, log)


def test_tensors_and_fallbacks_match_stock(tmp_path):
    chw = with_specials(RNG.uniform(-0.2, 1.2, (3, 24, 40)).astype(np.float32))
    large = RNG.uniform(0, 1, (3, 700, 600))

    def log(w):
        w.add_image("tensor", torch.from_numpy(chw), 1)
        w.add_image("parameter", torch.nn.Parameter(torch.from_numpy(chw.copy())), 2)
        w.add_image("big_endian", chw.astype(">f4"), 3)
        w.add_image("fortran", np.asfortranarray(chw), 4)
        w.add_image("strided", chw[:, ::2, ::3], 5)
        w.add_image("large", large, 6)  # converted without the GIL

    assert_writers_agree(tmp_path, log)


def test_float_pixels_are_taken_before_the_call_returns(tmp_path):
    img = np.full((3, 600, 600), 0.5, np.float32)  # over 1 MiB: converted without the GIL
    with SummaryWriter(str(tmp_path)) as w:
        w.add_image("img", img, 1)
        img[:] = 1.0
        w.add_image("img", img[:, :8, :8].copy(), 2, dataformats="CHW")
    (*_, first), (*_, second) = image_values(str(tmp_path))
    assert (first == 127).all() and (second == 255).all()


def test_bad_float_images_raise_stock_errors_and_keep_earlier_records(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        w.add_image("ok", np.zeros((3, 2, 2), np.float32), 1)
        with pytest.raises(ImageFormatError, match="empty"):
            w.add_image("bad", np.zeros((3, 0, 2), np.float32), 2)
        with pytest.raises(ImageFormatError, match="channels"):
            w.add_image("bad", np.zeros((2, 2, 5), np.float32), 3, dataformats="HWC")
        with pytest.raises(ValueError, match="global_step"):
            w.add_image("bad", np.zeros((3, 2, 2), np.float32), "x")
    assert [v[1] for v in image_values(str(tmp_path))] == ["ok"]
