"""The caller-thread side of ``add_histogram``: what must happen before the call returns.

With the default ``bins="tensorflow"`` this only validates and flattens the input; the bucketing
itself runs in C++ on the background thread (``_core``). Any other ``bins`` (an int, a numpy
estimator name, a sequence of edges) is rare and computed here with numpy, the way the stock writer
does it (SPEC §4.5, §4.6).
"""

from __future__ import annotations

import operator
from typing import Any, List, Tuple

import numpy as np

from ._convert import ArgumentIndexError, ArgumentOverflowError, ArgumentValueTypeError, ArgumentZeroDivisionError, make_np

# Number of bins of the default "tensorflow" edges (SPEC §4.1).
_DEFAULT_NUM_BINS = 1548

# Element types the C++ kernel reads directly (fasttb::DType); anything else is converted to
# float64 here, as the stock writer's astype(float) would.
_NATIVE_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        np.float16, np.float32, np.float64,
        np.int8, np.int16, np.int32, np.int64,
        np.uint8, np.uint16, np.uint32, np.uint64,
        np.bool_,
    )
)

_EMPTY_INPUT = "The input has no element."
_EMPTY_HISTOGRAM = "The histogram is empty, please file a bug report."

Computed = Tuple[float, float, float, float, float, List[float], List[float]]


def histogram_request(values: Any, bins: Any, max_bins: Any) -> tuple:
    """Validate ``add_histogram``'s arguments and say how the histogram is to be made.

    Returns ``("native", array, max_bins)`` when ``bins`` is the string ``"tensorflow"``:
    ``array`` is a 1-D, C-contiguous, aligned, native-byte-order numpy array in one of the dtypes
    the core reads (float16/32/64, int8..64, uint8..64, bool) holding the values flattened in C
    order; it may share memory with ``values``, so the caller copies its bytes before returning
    to the user. ``max_bins`` is the int to hand to the core, 0 when no merging applies (None, or
    at least as many as the 1548 default bins). Whether the stock "histogram is empty" error
    applies is left to the core (``tensorflow_histogram_is_empty``: no value inside the edges,
    and ``max_bins != 1``, since one merged bin is kept even when empty).

    Otherwise (or for a numpy masked array) returns ``("computed", (min, max, num, sum,
    sum_squares, bucket_limit, bucket))`` computed here exactly as the stock writer does, ready
    for ``add_histogram_raw``-style encoding.

    Raises what the stock writer raises: ``NotImplementedError`` for lists and other non-arrays,
    ``ValueError("The input has no element.")`` for empty input, ``ZeroDivisionError`` (also a
    ``ValueError``) for ``max_bins=0``, numpy's errors for bad ``bins``; plus ``TypeError`` naming ``values`` for
    arrays that cannot become float64 and ``TypeError``/``ValueError`` naming ``max_bins`` where
    the stock writer would fail inside numpy.
    """
    arr = make_np(values, "values")
    if isinstance(bins, str) and bins == "tensorflow":
        if isinstance(arr, np.ma.MaskedArray):
            # The stock writer's numpy calls mix the two views of a masked array: the buckets
            # (np.histogram) count every value, masked ones too, while min, max, sum and the sum
            # of squares leave the masked ones out. Only numpy reproduces that.
            return ("computed", _computed_histogram(arr, default_edges(), max_bins))
        flat = _native_array(arr)
        group = _group_size(_DEFAULT_NUM_BINS, max_bins)
        return ("native", flat, 0 if group == 0 else operator.index(max_bins))
    return ("computed", _computed_histogram(arr, bins, max_bins))


_edges: List[float] = []


def default_edges() -> List[float]:
    """The 1549 edges of bins="tensorflow", made once. Shared: read it, never change it."""
    if not _edges:
        from . import _core

        _edges.extend(_core.default_edges())
    return _edges


def _to_float64(arr: np.ndarray) -> np.ndarray:
    # numpy's own astype, so complex input gets numpy's ComplexWarning and keeps the real part,
    # and object or string arrays of numbers convert as they do for the stock writer.
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ArgumentValueTypeError(
            f"values: an array of dtype {arr.dtype} cannot be converted to float64 for a "
            f"histogram ({exc})"
        ) from exc
    except OverflowError as exc:  # Python ints of an object array beyond a double's range
        raise ArgumentOverflowError(f"values: holds a number too large for a float ({exc})") from exc


def _native_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype not in _NATIVE_DTYPES:  # also catches byte-swapped native types
        arr = _unusual_dtype(arr)
    if arr.size == 0:
        raise ValueError(_EMPTY_INPUT)
    # C order whatever the layout; a view when the data already is one contiguous run.
    flat = arr.reshape(-1)
    flags = flat.flags
    if not (flags.c_contiguous and flags.aligned):
        flat = flat.copy()
    return flat


def _unusual_dtype(arr: np.ndarray) -> np.ndarray:
    dtype = arr.dtype
    if dtype.kind == "c" and dtype.itemsize == 8:
        # The real part of complex64 is exactly a float32; numpy warns as astype(float) would.
        return arr.astype(np.float32)
    native = dtype.newbyteorder("=")
    if native in _NATIVE_DTYPES:
        return arr.astype(native)
    return _to_float64(arr)


def _group_size(num_bins: int, max_bins: Any) -> int:
    """The stock writer's merge group size ``num_bins // max_bins``, or 0 when it does not merge."""
    if max_bins is None:
        return 0
    try:
        merge = bool(num_bins > max_bins)
    except (TypeError, ValueError):
        raise TypeError(
            f"max_bins: expected an int or None, got {type(max_bins).__name__}"
        ) from None
    if not merge:
        # The stock writer ignores max_bins whenever it is not below the number of bins.
        return 0
    try:
        m = operator.index(max_bins)
    except TypeError:
        raise TypeError(
            f"max_bins: expected an int or None, got {type(max_bins).__name__}"
        ) from None
    if m == 0:
        raise ArgumentZeroDivisionError("max_bins: must be positive, got 0")
    if m < 0:
        raise ValueError(f"max_bins: must be positive, got {m}")
    return num_bins // m


def _computed_histogram(arr: np.ndarray, bins: Any, max_bins: Any) -> Computed:
    values = _to_float64(arr)
    if values.size == 0:
        raise ValueError(_EMPTY_INPUT)
    values = values.reshape(-1)
    counts, limits = np.histogram(values, bins=bins)

    group = _group_size(len(counts), max_bins)
    if group:
        # Pad to a whole number of groups, sum each group, keep every group's left edge and the
        # last edge. The result may have more than max_bins bins (SPEC §4.5).
        pad = -len(counts) % group
        counts = np.concatenate([counts, np.zeros(pad, dtype=counts.dtype)])
        counts = counts.reshape(-1, group).sum(axis=-1)
        limits = np.append(limits[:-1:group], limits[-1])

    nonzero = np.flatnonzero(counts > 0)
    if nonzero.size:
        first, last = int(nonzero[0]), int(nonzero[-1])
        # The leading zero bucket carries the left edge of the first non-empty bin.
        bucket = [0.0] + [float(c) for c in counts[first : last + 1]]
        bucket_limit = [float(x) for x in limits[first : last + 2]]
    elif len(counts) == 1:
        # The stock trimming keeps a single empty bin rather than raising.
        bucket = [0.0]
        bucket_limit = [float(limits[1])]
    elif len(counts) == 0:
        raise ArgumentIndexError(f"bins: {bins!r} makes no bins (a sequence of edges needs two at least)")
    else:
        raise ValueError(_EMPTY_HISTOGRAM)

    return (
        float(values.min()),
        float(values.max()),
        float(values.size),
        float(values.sum()),
        float(values.dot(values)),
        bucket_limit,
        bucket,
    )

