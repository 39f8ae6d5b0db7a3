"""add_image_with_boxes without Pillow: the boxes and the Lanczos resize of ``rescale`` done with
numpy, to the pixel what the stock writer gets from Pillow.

The stock writer draws each box as a closed polyline of width 2 with Pillow's ``ImageDraw.line``
and resizes with ``Image.resize(..., LANCZOS)``. For axis-aligned segments Pillow's wide line is an
inclusive rectangle two pixels thick on one side of the segment (which side depends on its
direction), its end points truncated toward zero; its resize is a separable filter in 22-bit fixed
point, RGBA premultiplied by alpha, its passes in an order that Pillow 13 chose anew. Both are
reproduced here exactly (tests compare them with Pillow 13). Where Pillow is installed, fasttb lets
it resize, so the pixels are those of the user's Pillow; text labels need Pillow, for its font.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

# Pillow's "Red" by number of channels: L and LA get its luminance, (255 * 299) // 1000.
_RED = {1: (76,), 2: (76, 255), 3: (255, 0, 0), 4: (255, 0, 0, 255)}
_PRECISION_BITS = 22  # Pillow's 32 - 8 - 2


def _segment(pixels: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Pillow's width-2 line between two points of an axis-aligned box, in red."""
    height, width = pixels.shape[:2]
    if x0 == x1 and y0 == y1:
        left, right, top, bottom = x0, x0, y0, y0
    elif x0 == x1:  # vertical: the second column to the right going down, to the left going up
        top, bottom = min(y0, y1), max(y0, y1)
        left, right = (x0, x0 + 1) if y1 > y0 else (x0 - 1, x0)
    else:  # horizontal: the second row below going right, above going left
        left, right = min(x0, x1), max(x0, x1)
        top, bottom = (y0, y0 + 1) if x1 > x0 else (y0 - 1, y0)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, width - 1), min(bottom, height - 1)
    if left <= right and top <= bottom:
        pixels[top:bottom + 1, left:right + 1] = _RED[pixels.shape[2]]


def draw_boxes(pixels: np.ndarray, boxes: np.ndarray) -> None:
    """Draws every ``(xmin, ymin, xmax, ymax)`` row of ``boxes`` on HWC uint8 ``pixels``,
    in place, as the stock writer's polyline (xmin,ymin) (xmin,ymax) (xmax,ymax) (xmax,ymin)
    (xmin,ymin)."""
    for row in boxes:
        # Pillow reads the coordinates as doubles and truncates each toward zero.
        left, top, right, bottom = (math.trunc(float(v)) for v in row[:4])
        corners = [(left, top), (left, bottom), (right, bottom), (right, top), (left, top)]
        for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
            _segment(pixels, x0, y0, x1, y1)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


def _coefficients(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pillow's Lanczos filter for ``in_size`` to ``out_size`` samples: for every output sample the
    input samples it reads (``out_size`` x taps indices) and their weights in fixed point (the same
    shape; unused taps weigh 0). Scalar libm arithmetic in Pillow's order of operations, so that
    every weight rounds the same."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 3.0 * filter_scale
    inverse = 1.0 / filter_scale
    taps = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_size, taps), np.intp)
    weight = np.zeros((out_size, taps), np.int64)
    for out in range(out_size):
        center = 0.0 + (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        weights = [_lanczos((x - center + 0.5) * inverse) for x in range(first, last)]
        total = 0.0
        for w in weights:
            total += w
        for i, w in enumerate(weights):
            if total != 0.0:
                w /= total
            scaled = w * (1 << _PRECISION_BITS)
            weight[out, i] = int(-0.5 + scaled) if w < 0 else int(0.5 + scaled)
            index[out, i] = first + i
    return index, weight


def _pass(values: np.ndarray, filter_: Tuple[np.ndarray, np.ndarray], axis: int) -> np.ndarray:
    """One separable pass over ``axis`` of a uint8 image, rounded and clipped as Pillow does."""
    index, weight = filter_
    moved = np.moveaxis(values, axis, -1)
    sums = np.full(moved.shape[:-1] + (index.shape[0],), 1 << (_PRECISION_BITS - 1), np.int64)
    for tap in range(index.shape[1]):
        sums += moved[..., index[:, tap]].astype(np.int64) * weight[:, tap]
    out = np.clip(sums >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def lanczos_resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(pixels).resize((width, height), LANCZOS)`` of Pillow 13 for HWC uint8
    (L, LA, RGB, RGBA): with alpha (LA, RGBA) premultiplied by it, the vertical pass first when
    the height shrinks by more than twice what the width does, the horizontal pass first
    otherwise."""
    in_height, in_width = pixels.shape[:2]
    if (height, width) == (in_height, in_width):
        return np.array(pixels, copy=True)  # Pillow copies: no premultiplied round trip
    alpha_last = pixels.shape[2] in (2, 4)
    data = pixels
    if alpha_last:
        alpha = pixels[:, :, -1:].astype(np.uint32)
        tmp = pixels[:, :, :-1].astype(np.uint32) * alpha + 128
        data = np.concatenate([((tmp >> 8) + tmp) >> 8, alpha], axis=2).astype(np.uint8)
    passes = []
    if width != in_width:
        passes.append((1, _coefficients(in_width, width)))
    if height != in_height:
        passes.append((0, _coefficients(in_height, height)))
    if in_height - height > 0 and in_height - height > (in_width - width) * 2:
        passes.reverse()
    for axis, filter_ in passes:
        data = _pass(data, filter_, axis)
    if alpha_last:
        alpha = data[:, :, -1:].astype(np.int64)
        color = data[:, :, :-1].astype(np.int64)
        straight = np.clip((255 * color) // np.where(alpha == 0, 1, alpha), 0, 255)
        keep = (alpha == 0) | (alpha == 255)
        data = np.concatenate([np.where(keep, color, straight), alpha], axis=2).astype(np.uint8)
    return np.ascontiguousarray(data)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos resize: by the installed Pillow (the stock writer's pixels, whatever its version),
    by lanczos_resize without it."""
    try:
        from PIL import Image
    except ImportError:
        return lanczos_resize(pixels, width, height)
    lanczos = getattr(Image, "Resampling", Image).LANCZOS  # (Image.Resampling: Pillow 9.1 on)
    return np.ascontiguousarray(np.asarray(Image.fromarray(pixels).resize((width, height), lanczos)))
