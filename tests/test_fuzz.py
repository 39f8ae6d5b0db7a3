"""Arbitrary values thrown at the add_* methods (hypothesis, bounded examples): each call writes
a correct record or raises a clear TypeError or ValueError (which may also be the stock writer's
exception type), and the files stay readable record by record."""

from __future__ import annotations

import math
import os
import warnings
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, List

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from conftest import pil_decode, read_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fasttb import SummaryWriter

EXAMPLES = int(os.environ.get("FASTTB_FUZZ_EXAMPLES", "200"))

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, Decimal("1.5"), Fraction(1, 3),
                     complex(1, 2), "1.5", "abc", b"7", np.float32(0.5), np.int64(-3),
                     np.uint64(2**64 - 1), np.bool_(True), np.float16(np.inf), np.complex64(1j)]),
)
dtypes = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                   hnp.floating_dtypes(), hnp.complex_number_dtypes(), hnp.byte_string_dtypes(max_len=3),
                   hnp.unicode_string_dtypes(max_len=3), hnp.datetime64_dtypes())
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
anything = st.one_of(
    st.none(), numbers, st.text(max_size=5), st.binary(max_size=5), arrays,
    st.lists(numbers, max_size=4), st.tuples(numbers), st.dictionaries(st.text(max_size=3), numbers, max_size=3),
    st.builds(object),
)
tags = st.one_of(st.text(max_size=8), st.binary(max_size=4), anything)
steps = st.one_of(st.none(), st.integers(min_value=-(2**64), max_value=2**64), anything)
walltimes = st.one_of(st.none(), st.floats(), anything)


def image_arrays(dims: int):
    """Arrays shaped like images often enough to get past the shape checks."""
    shape = st.tuples(*[st.integers(0, 5)] * dims)
    return st.one_of(hnp.arrays(st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.bool_]),
                                shape, elements=None), anything)


# Each method: the strategy of its arguments (positional) and keyword arguments.
CALLS: Dict[str, Any] = {
    "add_scalar": st.tuples(tags, anything, steps, walltimes).map(lambda a: (a, {})),
    "add_scalar/new_style": st.tuples(tags, anything, steps, walltimes).map(
        lambda a: (a, {"new_style": True, "double_precision": bool(hash(str(a)) & 1)})),
    "add_scalars": st.tuples(tags, st.one_of(st.dictionaries(st.text(max_size=3), anything, max_size=3), anything),
                             steps, walltimes).map(lambda a: (a, {})),
    "add_histogram": st.tuples(tags, st.one_of(arrays, anything), steps,
                               st.one_of(st.just("tensorflow"), st.integers(-2, 30), st.sampled_from(["auto", "fd", "x"]), anything),
                               walltimes, st.one_of(st.none(), st.integers(-2, 3000), anything)).map(lambda a: (a, {})),
    "add_histogram_raw": st.tuples(tags, numbers, numbers, numbers, numbers, numbers,
                                   st.one_of(st.lists(numbers, max_size=5), anything),
                                   st.one_of(st.lists(numbers, max_size=5), anything), steps, walltimes).map(lambda a: (a, {})),
    "add_image": st.tuples(tags, st.one_of(image_arrays(3), image_arrays(2)), steps, walltimes,
                           st.one_of(st.sampled_from(["CHW", "HWC", "HW", "WH", "CWH", "chw", "NCHW", "XYZ"]), anything)).map(lambda a: (a, {})),
    "add_images": st.tuples(tags, st.one_of(image_arrays(4), image_arrays(3)), steps, walltimes,
                            st.one_of(st.sampled_from(["NCHW", "NHWC", "CHW", "nchw"]), anything)).map(lambda a: (a, {})),
    "add_image_with_boxes": st.tuples(tags, image_arrays(3), st.one_of(image_arrays(2), anything), steps, walltimes,
                                      st.one_of(st.sampled_from([1, 0.5, 2, 0, -1]), anything),
                                      st.one_of(st.sampled_from(["CHW", "HWC"]), anything),
                                      st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=3), anything)).map(lambda a: (a, {})),
    "add_figure": st.tuples(tags, anything, steps).map(lambda a: (a, {})),
}


# Records each successful call adds, and where (None: the main run).
def expected_records(method: str, args: tuple) -> Dict[Any, int]:
    if method == "add_scalars":
        return {key: 1 for key in args[1]}
    return {None: 1}


@pytest.mark.parametrize("method", CALLS)
def test_every_call_writes_a_record_or_raises_a_clear_error(tmp_path_factory, method):
    logdir = str(tmp_path_factory.mktemp("fuzz"))
    writer = SummaryWriter(logdir)
    written: List[int] = [0]
    name = method.split("/")[0]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(CALLS[method])
    def call(case):
        args, kwargs = case
        try:
            getattr(writer, name)(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            assert str(exc), f"{type(exc).__name__} without a message"
            return
        written[0] += sum(expected_records(method, args).values())

    # numpy warns about casts of odd values (nan to int, complex to real), as on the stock path.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    writer.close()
    records = 0
    for path, events in read_tree(logdir).items():
        assert events[0].file_version == "brain.Event:2", path
        for event in events[1:]:
            for value in event.summary.value:
                if value.HasField("image"):
                    pixels = pil_decode(value.image.encoded_image_string)  # a whole, valid PNG
                    assert pixels.shape[2] == value.image.colorspace
                if value.HasField("simple_value"):
                    assert isinstance(value.simple_value, float)
        records += len(events) - 1
    assert records == written[0]


def test_nan_and_infinity_are_written_as_they_are(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        for i, v in enumerate([math.nan, math.inf, -math.inf]):
            w.add_scalar("x", v, i)
    values = [e.summary.value[0].simple_value for e in next(iter(read_tree(str(tmp_path)).values()))[1:]]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]
