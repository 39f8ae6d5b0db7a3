"""Caller-thread image conversion for ``add_image``, ``add_images``, ``add_figure`` and
``add_image_with_boxes``: the stock writer's rules (layout, grid, uint8 scaling) done with a few
vectorised numpy calls, producing the HWC uint8 pixels that ``_core`` encodes to PNG on its
background thread.

The pixels equal the stock writer's for every input it accepts. Two things make that cheaper
than the stock path without changing a value: numbers are scaled to uint8 *before* the layout is
rearranged (scaling is element-wise and maps the grid's zero padding to zero, so the order does
not matter), and the rearranging is done on bytes, one channel at a time, which numpy copies
several times faster than a transposed array.

Errors: where the stock writer raises ``AssertionError`` (or fails later in Pillow or with a
``ZeroDivisionError``) on a bad shape or layout, this module raises :class:`ImageFormatError`,
a ``ValueError`` that is also an ``AssertionError`` so that code written against the stock
writer still catches it. Its message names the argument at fault.

torch, Pillow and matplotlib are imported only inside the functions that need them (Pillow for the
text of box labels, and for resizing where it is installed).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._boxes import draw_boxes, resize
from ._convert import ArgumentAttributeError, ArgumentValueTypeError, make_np, require

__all__ = [
    "ImageFormatError",
    "figure_to_chw_uint8",
    "image_to_hwc_uint8",
    "image_with_boxes_to_hwc_uint8",
    "images_to_hwc_uint8",
    "native_layout",
]

_GRID_COLUMNS = 8  # images per grid row, as in the stock writer
_SLICE = 1 << 18  # elements scaled per step (see _to_uint8)


class ImageFormatError(ValueError, AssertionError):
    """An image's shape or ``dataformats`` cannot be logged.

    A ``ValueError``; also an ``AssertionError`` because that is what the stock writer raises
    for most of these cases.
    """


class ImageChannelsError(ImageFormatError, TypeError):
    """A channel count no image holds (Pillow, under the stock writer, raises TypeError)."""


class EmptyBatchError(ImageFormatError, ZeroDivisionError):
    """A batch of no images (the stock writers divide by the batch size)."""


class BoxesShapeError(ImageFormatError, IndexError):
    """Boxes that are not rows of four coordinates (the stock writer indexes past them)."""


def _layout(shape: Tuple[int, ...], dataformats: Any) -> Tuple[str, List[int]]:
    """Check ``dataformats`` against an array shape the way the stock writer does; return the
    target letters (``NCHW``, ``HWC`` or ``HW``) and the permutation that brings the array to
    them."""
    if not isinstance(dataformats, str):
        raise TypeError(f"dataformats: expected a str such as 'CHW', got {type(dataformats).__name__}")
    # Both checks look at the string as given, before upper-casing, as the stock writer does.
    if len(set(dataformats)) != len(dataformats):
        raise ImageFormatError(
            f"dataformats: {dataformats!r} uses the same dimension letter twice")
    if len(shape) != len(dataformats):
        raise ImageFormatError(
            f"img_tensor: has {len(shape)} dimensions (shape {tuple(shape)}) but dataformats "
            f"{dataformats!r} names {len(dataformats)}")
    target = {4: "NCHW", 3: "HWC", 2: "HW"}.get(len(dataformats))
    if target is None:
        raise ImageFormatError(
            f"dataformats: {dataformats!r} must have 2 (HW), 3 (CHW, HWC) or 4 (NCHW, NHWC) letters")
    upper = dataformats.upper()
    # str.find gives -1 for a missing letter and numpy reads -1 as the last axis; the stock
    # writer relies on both, so e.g. "CHX" works as "CHW". Reproduce that, then require a
    # permutation (numpy's own "repeated axis" error in the stock writer).
    index = [upper.find(letter) % len(shape) for letter in target]
    if sorted(index) != list(range(len(shape))):
        raise ImageFormatError(
            f"dataformats: {dataformats!r} is not an arrangement of the letters {target!r}")
    return target, index


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """The stock uint8 rule, element-wise, keeping the shape (and, for the arithmetic, the memory
    order): ``uint8(trunc(clip(float32(float32(a) * scale), 0, 255)))`` with scale 1 for uint8
    and 255 for every other dtype."""
    if a.dtype == np.uint8:
        return a
    kind = a.dtype.kind
    if kind in "biu":
        # float32(x) * 255 is at least 255 for any integer x >= 1 and at most 0 for x <= 0, so
        # after clipping only the sign matters (True counts as 1).
        return np.greater(a, 0).view(np.uint8) * np.uint8(255)
    if kind == "c":
        a = a.real  # what astype(float32) keeps of a complex number
    # Overflow to inf (float64 beyond float32's range, or x * 255) and NaN are part of the rule;
    # keep numpy from warning about them. The cast of NaN to uint8 is numpy's, as in the stock
    # writer (0 on x86-64 and arm64).
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "f" and (a.flags.c_contiguous or a.flags.f_contiguous):
            # Slices of 1 MiB of float32 stay in cache through all three steps, and reusing one
            # buffer spares the page faults of a fresh full-size temporary: about 2x faster.
            out = np.empty_like(a, dtype=np.uint8)
            src, dst = a.ravel(order="K"), out.ravel(order="K")
            buf = np.empty(min(src.size, _SLICE), np.float32)
            for start in range(0, src.size, _SLICE):
                stop = min(start + _SLICE, src.size)
                y = buf[: stop - start]
                if a.dtype == np.float32:
                    np.multiply(src[start:stop], np.float32(255), out=y)
                else:
                    y[...] = src[start:stop]  # rounds to float32, as astype does
                    np.multiply(y, np.float32(255), out=y)
                np.clip(y, 0, 255, out=y)
                dst[start:stop] = y
            return out
        y = a.astype(np.float32)
        np.multiply(y, np.float32(255), out=y)
        np.clip(y, 0, 255, out=y)
        return y.astype(np.uint8)


def _nan_becomes_zero() -> bool:
    """Whether numpy casts NaN to uint8 as 0 here, as the core's float scaling does."""
    with np.errstate(invalid="ignore"):
        return not np.full(64, np.nan, np.float32).astype(np.uint8).any()


# dtypes the core takes as they are: uint8, and floats it scales itself (NaN must give 0 as in
# numpy, true on x86-64 and arm64; elsewhere floats are scaled here).
_NATIVE_DTYPES = (np.dtype(np.uint8),) + (
    (np.dtype(np.float32), np.dtype(np.float64)) if _nan_becomes_zero() else ())


def native_layout(a: np.ndarray, dataformats: Any) -> Optional[bool]:
    """Whether ``add_image`` can hand ``a`` to the core with no numpy work: ``True`` for
    planes (``CHW`` with 1 to 4 channels, or ``HW``, one plane), ``False`` for ``(H, W, C)``
    pixels (``HWC``, 2 to 4 channels), ``None`` when it must go through
    :func:`image_to_hwc_uint8`. The core converts such arrays exactly as that function does;
    give it ``HW`` planes reshaped to ``(1, H, W)``."""
    if a.dtype not in _NATIVE_DTYPES or not a.flags.c_contiguous or a.size == 0:
        return None
    if a.ndim == 3 and dataformats in ("CHW", "chw"):
        return True if a.shape[0] <= 4 else None
    if a.ndim == 3 and dataformats in ("HWC", "hwc"):
        return False if 2 <= a.shape[2] <= 4 else None
    if a.ndim == 2 and dataformats in ("HW", "hw"):
        return True
    return None


def _check_size(height: int, width: int, channels: int) -> None:
    if height == 0 or width == 0:
        raise ImageFormatError(f"img_tensor: the image is empty ({height}x{width} pixels)")
    if channels not in (2, 3, 4):
        raise ImageChannelsError(
            f"img_tensor: {channels} channels cannot be stored as an image; use 1 (grey, stored "
            "as RGB), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)")
    # The core's own bound (csrc/runtime/producer.cc), here before the pixels are made
    # contiguous: a broadcast view of a few bytes was copied to 2 GB first, for seconds.
    if height * width * channels + height >= (1 << 31) - 1:
        raise ValueError(f"img_tensor: {height}x{width} pixels of {channels} channels take "
                         f"{height * width * channels:,} bytes, which do not fit in one record (no reader "
                         "accepts records of 2 GiB or more)")


def _hwc_from_3d(u8: np.ndarray, index: List[int]) -> np.ndarray:
    hwc = u8.transpose(index)
    height, width, channels = hwc.shape
    if channels == 1:
        channels, source = 3, [hwc[:, :, 0]] * 3
    elif hwc.flags.c_contiguous:
        return hwc
    else:
        source = [hwc[:, :, c] for c in range(channels)]
    out = np.empty((height, width, channels), np.uint8)
    for c, plane in enumerate(source):
        out[:, :, c] = plane
    return out


def _hwc_from_2d(u8: np.ndarray, index: List[int]) -> np.ndarray:
    plane = u8.transpose(index)
    out = np.empty(plane.shape + (3,), np.uint8)
    for c in range(3):
        out[:, :, c] = plane
    return out


def _grid(u8: np.ndarray, index: List[int]) -> np.ndarray:
    """Tile an N x C x H x W batch (given as ``u8.transpose(index)``) into one HWC image: 8
    images per row, no padding between them, empty cells black (stock ``make_grid``)."""
    nchw = u8.transpose(index)
    n, _, height, width = nchw.shape
    columns = min(n, _GRID_COLUMNS)
    rows = -(-n // columns)
    full = n // columns  # rows with no empty cell
    rest = n - full * columns
    out = (np.zeros if rest else np.empty)((rows * height, columns * width, 3), np.uint8)
    cells = out.reshape(rows, height, columns, width, 3)
    for c in range(3):
        plane = nchw[:, c if nchw.shape[1] == 3 else 0]  # N x H x W
        if full:
            cells[:full, :, :, :, c] = plane[: full * columns].reshape(
                full, columns, height, width).transpose(0, 2, 1, 3)
        if rest:
            cells[full, :, :rest, :, c] = plane[full * columns:].transpose(1, 0, 2)
    return out


def checked_layout(shape: Tuple[int, ...], dataformats: Any) -> Tuple[str, List[int]]:
    """:func:`_layout`, and then every check that the shape alone decides (channels, empty
    images), so that a CUDA tensor's image is checked before its copy lands."""
    target, index = _layout(shape, dataformats)
    dims = [shape[i] for i in index]
    if target == "NCHW":
        n, channels, height, width = dims
        if channels not in (1, 3):
            raise ImageFormatError(
                f"img_tensor: a batch of images needs 1 or 3 channels, got {channels} "
                f"(shape {tuple(shape)}, dataformats {dataformats!r})")
        if n == 0:
            raise EmptyBatchError("img_tensor: the batch holds no images (N = 0)")
        columns = min(n, _GRID_COLUMNS)
        _check_size(height * -(-n // columns), width * columns, 3)
    elif target == "HWC":
        height, width, channels = dims
        _check_size(height, width, 3 if channels == 1 else channels)
    else:
        _check_size(dims[0], dims[1], 3)
    return target, index


def _convert(img_tensor: Any, dataformats: Any) -> np.ndarray:
    a = make_np(img_tensor, "img_tensor")
    target, index = checked_layout(a.shape, dataformats)
    if target == "NCHW":
        return _grid(_to_uint8(a), index)
    if target == "HWC":
        return _hwc_from_3d(_to_uint8(a), index)
    return _hwc_from_2d(_to_uint8(a), index)


def image_to_hwc_uint8(img_tensor: Any, dataformats: str = "CHW") -> np.ndarray:
    """Pixels for ``add_image``: ``img_tensor`` (numpy array or torch tensor) laid out as
    ``dataformats`` becomes a C-contiguous ``(height, width, channels)`` uint8 array with 2
    (grey + alpha), 3 (RGB) or 4 (RGBA) channels, exactly as the stock writer converts it.

    * 2 letters (``HW``, ``WH``): grey, stored as RGB.
    * 3 letters (``CHW``, ``HWC``, ...): 1 channel is repeated to RGB.
    * 4 letters (``NCHW``, ``NHWC``, ...): the batch is tiled into one RGB image (see
      :func:`images_to_hwc_uint8`).

    uint8 values are kept; every other dtype (float, int, bool) is multiplied by 255 in float32
    (float64 is rounded to float32 first), clipped to [0, 255] and truncated; NaN becomes 0.
    Letters are case-insensitive. The result may share memory with ``img_tensor`` (a
    contiguous HWC uint8 input comes back as is), so it must be copied before the caller
    regains control. Raises :class:`ImageFormatError` for a bad ``dataformats`` or shape.
    """
    return _convert(img_tensor, dataformats)


def images_to_hwc_uint8(img_tensor: Any, dataformats: str = "NCHW") -> np.ndarray:
    """Pixels for ``add_images``: a batch laid out as ``dataformats`` (``NCHW``, ``NHWC``, ...)
    with 1 or 3 channels, tiled 8 images per row with no padding and empty cells black, as one
    RGB image (C-contiguous ``(rows * H, columns * W, 3)`` uint8). Same scaling as
    :func:`image_to_hwc_uint8`; a 2- or 3-letter ``dataformats`` gives exactly what
    ``add_image`` gives, as in the stock writer. Raises :class:`ImageFormatError` for an empty
    batch, a channel count other than 1 or 3, or a bad ``dataformats``.
    """
    return _convert(img_tensor, dataformats)


def figure_to_chw_uint8(figure: Any, close: bool = True) -> np.ndarray:
    """Render a matplotlib figure with the Agg canvas into a ``(3, height, width)`` uint8
    array (alpha dropped), or a list of figures (all the same size) into ``(N, 3, height,
    width)``, as the stock ``add_figure`` does; each figure is closed with ``pyplot.close`` when
    ``close`` is true. Log the result with :func:`image_to_hwc_uint8` (``"CHW"``) or
    :func:`images_to_hwc_uint8` (``"NCHW"``). Only a ``list`` counts as several figures.
    """
    require("matplotlib", "add_figure", "matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def render(fig: Any) -> np.ndarray:
        if not isinstance(fig, Figure):
            raise ArgumentAttributeError(
                f"figure: expected a matplotlib Figure or a list of them, got {type(fig).__name__}")
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgba = np.frombuffer(canvas.buffer_rgba(), dtype=np.uint8)
        width, height = fig.canvas.get_width_height()
        chw = np.moveaxis(rgba.reshape(height, width, 4)[:, :, :3], 2, 0)
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return chw

    if isinstance(figure, list):
        if not figure:
            raise ValueError("figure: the list holds no figures")
        images = [render(f) for f in figure]
        if len({image.shape for image in images}) > 1:
            raise ImageFormatError("figure: the figures of a list must all have the same size")
        return np.stack(images)
    return render(figure)


def image_with_boxes_to_hwc_uint8(
    img_tensor: Any,
    box_tensor: Any,
    rescale: float = 1,
    dataformats: str = "CHW",
    labels: Optional[Union[str, Sequence[str]]] = None,
) -> Tuple[np.ndarray, int, int]:
    """Pixels for ``add_image_with_boxes``, exactly as the stock writer draws them; returns
    ``(pixels, height, width)``.

    ``pixels`` is the C-contiguous HWC uint8 image after the boxes are drawn and the image is
    resized by ``rescale`` (Lanczos); ``height`` and ``width`` are the size *before* the resize,
    which is what the stock writer records in ``Summary.Image`` (its colorspace is
    ``pixels.shape[2]``). ``box_tensor`` is ``[K, 4]`` rows of ``(xmin, ymin, xmax, ymax)`` in
    pixels; ``labels`` (a str or one per box) are dropped silently when their count differs
    from K, as in the stock writer. Boxes are drawn by fasttb (see _boxes.py); text labels need
    Pillow, for its font.
    """
    boxes = make_np(box_tensor, "box_tensor")
    count = boxes.shape[0] if boxes.ndim else 1
    if count and (boxes.ndim != 2 or boxes.shape[1] < 4):
        raise BoxesShapeError(
            f"box_tensor: expected K rows of (xmin, ymin, xmax, ymax), got shape {boxes.shape}")
    if labels is not None:
        if isinstance(labels, str):
            labels = [labels]
        if len(labels) != count:
            labels = None
    # A copy, always: the drawing goes straight into it, and the input may be the caller's array.
    pixels = np.array(image_to_hwc_uint8(img_tensor, dataformats), copy=True)
    height, width = pixels.shape[:2]
    try:
        new_size = (int(width * rescale), int(height * rescale))
    except (TypeError, ValueError, OverflowError):
        raise ArgumentValueTypeError(f"rescale: expected a number, got {rescale!r}") from None
    if new_size[0] <= 0 or new_size[1] <= 0:
        raise ValueError(f"rescale: {rescale!r} leaves no pixels of a {height}x{width} image")
    if new_size[0] * new_size[1] * pixels.shape[2] >= 1 << 31:  # checked before Pillow allocates it
        raise ValueError(f"rescale: {rescale!r} makes a {new_size[1]}x{new_size[0]} image of 2 GiB or more")
    if count and labels is not None and any(labels):
        pixels = _draw_labelled_boxes(pixels, boxes, labels)
    elif count and not _drawn_exactly(boxes):
        pixels = _draw_labelled_boxes(pixels, boxes, [""] * count, "boxes with coordinates that are "
                                      "not finite or lie beyond 2**31")
    elif count:
        try:
            draw_boxes(pixels, boxes)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"box_tensor: coordinates must be numbers ({exc})") from None
    if new_size != (width, height):
        pixels = resize(pixels, *new_size)
    return pixels, height, width


def _drawn_exactly(boxes: np.ndarray) -> bool:
    """Whether draw_boxes gives Pillow's pixels for these boxes: it does for finite coordinates
    within 32-bit integers. Pillow draws the others (NaN from a diverged model, say) its own way,
    and the stock writer logs what it draws."""
    try:
        corners = np.asarray(boxes[:, :4], dtype=np.float64)
    except (TypeError, ValueError):
        return True  # not numbers: draw_boxes says so
    return bool(np.all(np.abs(corners) < 2.0**31))


def _draw_labelled_boxes(pixels: np.ndarray, boxes: np.ndarray, labels: Sequence[str],
                         what: str = "box labels") -> np.ndarray:
    """Boxes with text labels, drawn with Pillow as the stock writer draws them (the text needs
    Pillow's font). `what` names the reason in the error when Pillow is missing."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ImportError(f"box_tensor: drawing {what} needs Pillow (pip install Pillow); "
                          "other boxes do not") from None
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for i in range(boxes.shape[0]):
        # The stock writer's calls, with the same values (numpy scalars straight from the array),
        # so that Pillow rasterises the same pixels.
        left, top, right, bottom = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        draw.line([(left, top), (left, bottom), (right, bottom), (right, top), (left, top)],
                  width=2, fill="Red")
        text = labels[i]
        if text:
            if hasattr(font, "getbbox"):
                x0, y0, x1, y1 = font.getbbox(text)
                text_width, text_height = x1 - x0, y1 - y0
            else:  # Pillow before 9.2: its default font has no getbbox, but tells its size
                text_width, text_height = font.getsize(text)  # type: ignore[union-attr]  # (Pillow < 10)
            margin = np.ceil(0.05 * text_height)
            draw.rectangle([(left, bottom - text_height - 2 * margin), (left + text_width, bottom)],
                           fill="Red")
            draw.text((left + margin, bottom - text_height - margin), text, fill="black", font=font)
    return np.array(image)
