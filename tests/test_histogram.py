"""Histogram tests: the native kernel (``_core.tf_histogram``) and the caller-thread side
(``fasttb._histogram``) against the stock writer's own computation, record field by record field.

The stock reference is ``torch.utils.tensorboard.summary.histogram``, fed the edges the stock
``SummaryWriter`` builds for ``bins="tensorflow"``. Everything must match bit for bit except
``sum_squares``, which comes from BLAS on the stock side (SPEC §4.4): it is compared with a
relative tolerance here, and bit for bit in a subprocess pinned to one OpenBLAS thread.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.tensorboard.summary import histogram as stock_histogram

from fasttb import _core
from fasttb._histogram import histogram_request

ComplexWarning = getattr(np, "exceptions", np).ComplexWarning  # np.exceptions: numpy >= 1.25
EMPTY_HISTOGRAM = "The histogram is empty, please file a bug report."
EMPTY_INPUT = "The input has no element."


def _stock_default_bins() -> list:
    # The list SummaryWriter.__init__ builds (an int 0 in the middle, as there).
    v = 1e-12
    pos = []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    return [-x for x in reversed(pos)] + [0] + pos


STOCK_BINS = _stock_default_bins()
EDGES = np.array(STOCK_BINS, dtype=np.float64)

NATIVE_DTYPES = [
    np.float16, np.float32, np.float64,
    np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64,
    np.bool_,
]
FLOAT_DTYPES = [np.float16, np.float32, np.float64]
MAX_BINS = [None, 1, 2, 3, 7, 10, 64, 100, 773, 774, 775, 1000, 1547, 1548, 1549, 10**9]

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def stock(values, bins="tensorflow", max_bins=None) -> tuple:
    b = STOCK_BINS if isinstance(bins, str) and bins == "tensorflow" else bins
    h = stock_histogram("h", values, b, max_bins=max_bins).value[0].histo
    return (h.min, h.max, h.num, h.sum, h.sum_squares, list(h.bucket_limit), list(h.bucket))


def ours(values, bins="tensorflow", max_bins=None) -> tuple:
    kind, *rest = histogram_request(values, bins, max_bins)
    if kind == "native":
        arr, mb = rest
        return _core.tf_histogram(arr, mb)
    assert kind == "computed"
    return rest[0]


def _same_float(a: float, b: float) -> bool:
    if math.isnan(b):
        return math.isnan(a)
    return a == b  # +0.0 == -0.0: numpy's zero sign of min/max depends on its SIMD order


def assert_same(got: tuple, ref: tuple) -> None:
    gmin, gmax, gnum, gsum, gsq, glim, gcnt = got
    rmin, rmax, rnum, rsum, rsq, rlim, rcnt = ref
    assert glim == rlim
    assert gcnt == rcnt
    assert _same_float(gmin, rmin), (gmin, rmin)
    assert _same_float(gmax, rmax), (gmax, rmax)
    assert gnum == rnum
    assert _same_float(gsum, rsum), (gsum, rsum)
    if rsum == 0:
        assert math.copysign(1, gsum) == math.copysign(1, rsum)
    if math.isnan(rsq) or math.isinf(rsq):
        assert _same_float(gsq, rsq), (gsq, rsq)
    else:
        assert abs(gsq - rsq) <= 1e-12 * max(1.0, abs(rsq)), (gsq, rsq)


def check(values, bins="tensorflow", max_bins=None) -> None:
    # numpy's RuntimeWarnings from the stock statistics (inf - inf, overflow) are not compared:
    # fasttb computes them later, on the background thread.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            ref = stock(values, bins, max_bins)
        except Exception as exc:  # the same exception type, raised by ours too
            with pytest.raises(type(exc)):
                ours(values, bins, max_bins)
            return
        got = ours(values, bins, max_bins)
    assert_same(got, ref)


def cast(values: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            values = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
            values = np.clip(values, info.min, info.max)
        return values.astype(dtype)


# ---- the edges ----


def test_default_edges_are_the_stock_edges():
    edges = _core.default_edges()
    assert len(edges) == 1549
    assert edges == [float(x) for x in STOCK_BINS]
    assert edges[775] == 1e-12 and edges[775].hex() == "0x1.19799812dea11p-40"
    assert edges[-1] == 9.920775621859783e19 and edges[0] == -edges[-1]
    assert edges[774] == 0.0
    assert edges[1064] <= 1.0 < edges[1065]


# ---- SPEC §4.3's verified examples ----

P = EDGES[775:]


@pytest.mark.parametrize(
    "values, limits, counts",
    [
        ([1.0], [P[289], P[290]], [0, 1]),
        ([0.0], [0.0, 1e-12], [0, 1]),
        ([-0.0], [0.0, 1e-12], [0, 1]),
        ([1e-300], [0.0, 1e-12], [0, 1]),
        ([1e-12], [1e-12, P[1]], [0, 1]),
        ([-1e-12], [-1e-12, 0.0], [0, 1]),
        ([-1e-300], [-1e-12, 0.0], [0, 1]),
        ([9.920775621859783e19], [P[772], P[773]], [0, 1]),
        ([-9.920775621859783e19], [-P[773], -P[772]], [0, 1]),
        ([1e20, 1.0], [P[289], P[290]], [0, 1]),
        ([np.nan, 1.0], [P[289], P[290]], [0, 1]),
        ([np.inf, 1.0], [P[289], P[290]], [0, 1]),
        ([1.0, 2.0, 3.0], list(P[289:303]), [0, 1] + [0] * 7 + [1, 0, 0, 0, 1]),
    ],
)
def test_spec_examples(values, limits, counts):
    arr = np.array(values, dtype=np.float64)
    got = ours(arr)
    assert got[5] == [float(x) for x in limits]
    assert got[6] == [float(c) for c in counts]
    assert_same(got, stock(arr))


def test_spec_statistics_examples():
    mn, mx, num, s, sq, _, _ = ours(np.array([1e20, 1.0]))
    assert (mx, num) == (1e20, 2.0)
    mn, mx, num, s, sq, _, _ = ours(np.array([np.nan, 1.0]))
    assert all(math.isnan(x) for x in (mn, mx, s, sq)) and num == 2.0
    mn, mx, num, s, sq, _, _ = ours(np.array([np.inf, 1.0]))
    assert mx == s == sq == math.inf and mn == 1.0
    mn, mx, num, s, sq, _, _ = ours(np.array([-0.0]))
    assert math.copysign(1, mn) == -1 and math.copysign(1, s) == 1


# ---- random data of every dtype ----


@st.composite
def random_arrays(draw):
    dtype = draw(st.sampled_from(NATIVE_DTYPES))
    n = draw(
        st.one_of(
            st.integers(1, 40),
            st.integers(1, 20000),
            st.sampled_from([127, 128, 129, 2047, 2048, 2049, 4096, 4104, 4111, 10000, 10001]),
        )
    )
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-30, 1e-13, 1e-3, 1.0, 1e3, 1e9, 1e19, 1e25]))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "uniform", "loguniform", "ints"]))
    if kind == "normal":
        v = rng.standard_normal(n) * scale
    elif kind == "uniform":
        v = rng.uniform(-scale, scale, n)
    elif kind == "loguniform":
        v = np.exp(rng.uniform(-80, 50, n)) * rng.choice([-1.0, 1.0], n)
    else:
        v = rng.integers(-1000, 1000, n).astype(np.float64)
    if draw(st.booleans()):
        specials = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1e20, -1e20])
        where = rng.integers(0, n, max(1, n // 50))
        v[where] = rng.choice(specials, where.size)
    return cast(v, dtype)


@PROPERTY
@given(random_arrays(), st.sampled_from(MAX_BINS))
def test_random_arrays_match_stock(values, max_bins):
    check(values, max_bins=max_bins)


# ---- adversarial values built from the edges ----


@st.composite
def edge_arrays(draw):
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = cast(EDGES[rng.integers(0, len(EDGES), n)], dtype)
    # Walk a few ulps away from the edge in the array's own precision.
    steps = rng.integers(-3, 4, n)
    with np.errstate(all="ignore"):
        for _ in range(3):
            up = steps > 0
            down = steps < 0
            base = np.where(up, np.nextafter(base, np.array(np.inf, dtype)), base)
            base = np.where(down, np.nextafter(base, np.array(-np.inf, dtype)), base)
            steps = steps - up + down
    if draw(st.booleans()):
        base = -base
    return base.astype(dtype)


@PROPERTY
@given(edge_arrays(), st.sampled_from(MAX_BINS))
def test_values_on_and_next_to_edges_match_stock(values, max_bins):
    check(values, max_bins=max_bins)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_every_edge_and_its_neighbours(dtype):
    e = cast(EDGES, dtype)
    inf = np.array(np.inf, dtype)
    with np.errstate(all="ignore"):
        parts = [e, np.nextafter(e, inf), np.nextafter(e, -inf), -e]
    values = np.concatenate(parts).astype(dtype)
    check(values)
    for v in values[:: max(1, len(values) // 400)]:
        check(np.array([v]))  # one value: its bucket is the whole output


def test_each_exact_edge_alone_lands_in_the_stock_bin():
    for i in range(len(EDGES)):
        check(EDGES[i : i + 1])


# ---- special values ----


SPECIALS = [
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308,
    1e-300, -1e-300, 1e-13, -1e-13, 9.920775621859783e19, -9.920775621859783e19,
    np.nextafter(9.920775621859783e19, np.inf), np.nextafter(-9.920775621859783e19, -np.inf),
    np.nextafter(9.920775621859783e19, 0), 1e20, -1e20, 1e300, -1e300, np.inf, -np.inf, np.nan,
    1.0, -1.0, 0.5, 65504.0, 3.4028234663852886e38,
]


@PROPERTY
@given(
    st.lists(st.sampled_from(SPECIALS), min_size=1, max_size=70),
    st.sampled_from(FLOAT_DTYPES),
    st.sampled_from(MAX_BINS),
)
def test_special_value_mixes_match_stock(values, dtype, max_bins):
    check(cast(np.array(values), dtype), max_bins=max_bins)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_subnormals(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    values = np.array([tiny, -tiny, tiny * 3, -tiny * 7, 0.0, -0.0], dtype=dtype)
    check(values)
    check(-np.abs(values[[1, 3]]))


def test_zeros_of_both_signs():
    for values in ([0.0], [-0.0], [-0.0, 0.0], [0.0, -0.0], [-0.0] * 20, [-0.0] * 300):
        arr = np.array(values)
        assert_same(ours(arr), stock(arr))
        assert math.copysign(1, ours(arr)[3]) == 1.0  # the sum starts from +0.0


def test_integer_extremes():
    for dtype in (np.int64, np.uint64, np.int32, np.uint32, np.int8, np.uint8):
        info = np.iinfo(dtype)
        values = np.array([info.min, info.max, info.max - 1, 0, 1, 2**53 + 1 if info.bits == 64 else 1],
                          dtype=dtype)
        check(values)


def test_bool_bytes_other_than_one_count_as_one():
    values = np.frombuffer(bytes([0, 1, 2, 255, 0, 7]), dtype=np.bool_)
    check(values)
    assert ours(values)[3] == 4.0


# ---- sizes around the pairwise-sum blocks, FMA lanes and chunks ----


@pytest.mark.parametrize(
    "n", [1, 7, 8, 9, 15, 16, 17, 31, 33, 127, 128, 129, 136, 255, 256, 257, 2047, 2048, 2049,
          2056, 4095, 4096, 4097, 8200, 10000, 10001, 65537, 300001]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sizes(n, dtype):
    rng = np.random.default_rng(n)
    check((rng.standard_normal(n) * 10).astype(dtype))


def test_nan_far_from_the_start_and_inf_minus_inf():
    v = np.ones(5000)
    v[4321] = np.nan
    check(v)
    w = np.ones(5000)
    w[10], w[4000] = np.inf, -np.inf  # NaN sum without any NaN value: min/max stay finite
    got = ours(w)
    assert math.isnan(got[3]) and got[0] == -math.inf and got[1] == math.inf
    check(w)


def test_concurrent_calls_do_not_share_counters():
    # The kernel keeps per-thread scratch counters and runs without the GIL.
    rng = np.random.default_rng(3)
    arrays = [(rng.standard_normal(int(rng.integers(1, 50000))) * 10 ** rng.uniform(-5, 5))
              .astype(rng.choice([np.float32, np.float64])) for _ in range(24)]
    expected = [stock(a) for a in arrays]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda a: ours(a), arrays * 3))
    for got, ref in zip(results, expected * 3):
        assert_same(got, ref)


# ---- the caller-thread side ----


def test_native_request_shape():
    kind, arr, mb = histogram_request(np.arange(12, dtype=np.float32).reshape(3, 4).T, "tensorflow", None)
    assert kind == "native" and mb == 0
    assert arr.ndim == 1 and arr.flags.c_contiguous and arr.flags.aligned and arr.dtype == np.float32
    assert arr.tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).T.reshape(-1).tolist()
    assert histogram_request(np.ones(3), "tensorflow", 10)[2] == 10
    assert histogram_request(np.ones(3), "tensorflow", 1548)[2] == 0
    assert histogram_request(np.ones(3), "tensorflow", True)[2] == 1
    assert histogram_request(np.ones(3), "tensorflow", np.int64(5))[2] == 5


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.reshape(6, 5).T,
        lambda a: a[::-1],
        lambda a: a[::3],
        lambda a: np.asfortranarray(a.reshape(5, 6)),
        lambda a: a.astype(a.dtype.newbyteorder(">")),
        lambda a: np.frombuffer(b"\0" + a.tobytes(), dtype=a.dtype, offset=1),  # unaligned
        lambda a: a.reshape(2, 3, 5),
        lambda a: np.array(a[7]),  # 0-d
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.float16])
def test_layouts_are_flattened_in_c_order(make, dtype):
    values = make((np.random.default_rng(0).standard_normal(30) * 100).astype(dtype))
    check(values)


def test_other_float_like_dtypes():
    check(np.array([1.5, -2.25, 1e30], dtype=np.longdouble))
    check(np.array([3, -7, 0], dtype="timedelta64[s]"))
    check(np.array([1.0, 2.0, 3.5], dtype=object))
    check(np.array(["1.5", "2", "-3e5"]))


@pytest.mark.parametrize("bins", ["tensorflow", 5, "auto"])
def test_unconvertible_values_raise_type_error(bins):
    with pytest.raises(TypeError, match="values"):
        histogram_request(np.array(["a", "b"]), bins, None)
    with pytest.raises(TypeError, match="values"):
        histogram_request(np.array([object(), 1.0], dtype=object), bins, None)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("bins", ["tensorflow", 7])
def test_complex_keeps_the_real_part_with_a_warning(dtype, bins):
    values = (np.arange(20) * (1.5 - 2j)).astype(dtype)
    with pytest.warns(ComplexWarning):
        got = ours(values, bins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ComplexWarning)
        ref = stock(values, bins)
    assert_same(got, ref)


def test_torch_tensors():
    t = torch.randn(64, 33)
    check(t)
    check(t.T)  # non-contiguous
    check(t.to(torch.float16))
    check(t.to(torch.bfloat16) * 1e6)  # bf16 goes through float16: large values become inf
    check(torch.arange(-50, 50))
    check(torch.arange(-50, 50) > 0)
    check(torch.tensor(3.5))
    check(t.to(torch.float64).requires_grad_())


def test_python_scalars():
    for x in (1, 2.5, True, -0.0, 10**30, np.float32(3.25)):
        check(x)


# ---- errors ----


@pytest.mark.parametrize("bins", ["tensorflow", 10, "auto", [0.0, 1.0, 2.0]])
def test_errors_like_stock(bins):
    with pytest.raises(ValueError, match=EMPTY_INPUT):
        ours(np.array([], dtype=np.float32), bins)
    with pytest.raises(ValueError, match=EMPTY_INPUT):
        ours(torch.empty(0, 3), bins)
    with pytest.raises(NotImplementedError, match="values"):
        histogram_request([1.0, 2.0], bins, None)
    with pytest.raises(NotImplementedError):
        histogram_request(None, bins, None)


@pytest.mark.parametrize(
    "values",
    [
        np.array([np.nan]),
        np.array([np.nan] * 5000, dtype=np.float32),
        np.array([1e20, -1e21, np.inf, -np.inf, np.nan]),
        np.array([np.inf, np.nan, -np.inf], dtype=np.float16),
        np.array([np.nextafter(9.920775621859783e19, np.inf)]),
    ],
)
def test_nothing_countable_raises_empty_histogram(values):
    with pytest.raises(ValueError, match=EMPTY_HISTOGRAM):
        stock(values)
    with pytest.raises(ValueError, match=EMPTY_HISTOGRAM):
        ours(values)


def test_one_countable_value_after_many_uncountable_ones():
    v = np.full(10001, np.nan, dtype=np.float32)
    v[-1] = 2.0
    check(v)
    check(np.array([np.inf] * 100 + [65504.0], dtype=np.float16))


@pytest.mark.parametrize("values", [np.array([np.nan]), np.array([1e20, -np.inf]),
                                    np.array([np.inf], dtype=np.float16)])
def test_max_bins_one_keeps_an_empty_histogram_like_stock(values):
    # Merging everything into one bin makes the stock trimming keep that bin instead of raising
    # "histogram is empty".
    got = ours(values, max_bins=1)
    assert got[5] == [9.920775621859783e19] and got[6] == [0.0]
    check(values, max_bins=1)
    with pytest.raises(ValueError, match=EMPTY_HISTOGRAM):
        ours(values, max_bins=2)


def test_max_bins_errors():
    v = np.ones(10)
    for bins in ("tensorflow", 20):
        with pytest.raises(ZeroDivisionError):
            stock(v, bins, 0)
        with pytest.raises(ZeroDivisionError):
            histogram_request(v, bins, 0)
        with pytest.raises(ValueError, match="max_bins"):
            histogram_request(v, bins, -3)
        with pytest.raises(TypeError, match="max_bins"):
            histogram_request(v, bins, 2.5)
        with pytest.raises(TypeError, match="max_bins"):
            histogram_request(v, bins, "3")
    # Like the stock writer, a max_bins that does not merge anything is not looked at further.
    check(v, "tensorflow", 5000.0)
    check(v, 20, 20.0)


# ---- bins other than "tensorflow" (computed on the caller's thread) ----

OTHER_BINS = [1, 2, 5, 10, 64, "auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt"]


@PROPERTY
@given(
    st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_]),
    st.integers(1, 3000),
    st.integers(0, 2**32 - 1),
    st.sampled_from(OTHER_BINS),
    st.sampled_from([None, 1, 2, 3, 4, 7, 100]),
)
def test_other_bins_match_stock(dtype, n, seed, bins, max_bins):
    rng = np.random.default_rng(seed)
    values = cast(rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e4]), dtype)
    check(values, bins, max_bins)


def test_other_bins_examples():
    v = np.arange(10, dtype=np.float32)
    got = ours(v, 5)
    assert got[5] == [0.0, 1.8, 3.6, 5.4, 7.2, 9.0] and got[6] == [0.0, 2, 2, 2, 2, 2]
    got = ours(v, 10, 3)
    assert got[5] == [0.0, 2.7, 5.4, 8.1, 9.0] and got[6] == [0.0, 3, 3, 3, 1]
    for bins, max_bins in [(5, None), ("fd", None), ([0, 2, 4, 20], None), (10, 3), ([0, 2, 4, 20], 2)]:
        check(v, bins, max_bins)


def test_other_bins_edge_sequences_and_errors():
    v = np.array([1.0, 2.0, 3.0, 50.0])
    check(v, [0, 2, 4, 20])
    check(v, np.array([0.5, 1.5, 100.0]))
    check(v, [5.0, 6.0])  # nothing counted in two bins: empty
    check(v, [10.0, 11.0])  # nothing counted in a single bin: the stock trimming keeps it
    check(v, [2.0, 1.0])  # not increasing: numpy's error
    check(np.array([1.0, np.nan]), 5)  # numpy's "range is not finite"
    check(np.array([1.0, np.inf]), "auto")
    check(np.array([1.0, np.nan, 3.0]), [0.0, 2.0, 4.0])
    check(np.array([1.0]), 3)


# ---- sum_squares bit for bit, where the stock order is known ----


def test_sum_squares_bit_exact_with_one_openblas_thread():
    script = textwrap.dedent(
        """
        import ctypes, glob, os, sys
        import numpy as np
        libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs",
                                      "*openblas*"))
        core = None
        for path in libs:
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                         "openblas_get_corename64_", "openblas_get_corename"):
                f = getattr(lib, name, None)
                if f is not None:
                    f.restype = ctypes.c_char_p
                    core = f().decode()
        if core not in ("Haswell", "Zen"):
            print("SKIP", core)
            sys.exit(0)
        from fasttb import _core
        from fasttb._histogram import histogram_request
        rng = np.random.default_rng(7)
        sizes = list(range(1, 70)) + [127, 128, 129, 255, 2047, 2048, 2049, 4097, 9999, 10000]
        sizes += rng.integers(1, 10001, 60).tolist()
        for n in sizes:
            for dtype in (np.float64, np.float32, np.int16):
                v = (rng.standard_normal(n) * 1000).astype(dtype)
                _, arr, mb = histogram_request(v, "tensorflow", None)
                got = _core.tf_histogram(arr, mb)[4]
                f = v.astype(np.float64)
                ref = float(f.dot(f))
                if got != ref:
                    print("MISMATCH", n, dtype, got.hex(), ref.hex())
                    sys.exit(1)
        print("OK")
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    if out.stdout.startswith("SKIP"):
        pytest.skip(f"OpenBLAS uses the {out.stdout.split()[1]} kernel, whose order is not pinned")
    assert out.stdout.strip() == "OK"
