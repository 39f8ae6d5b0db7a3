"""Arbitrary values thrown at the add_* methods (hypothesis, bounded examples): each call writes
a correct record or raises a clear TypeError or ValueError (which may also be the stock writer's
exception type), and the files stay readable record by record."""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, List

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from conftest import decoded_frames, pil_decode, read_tree
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


def mostly(valid, wild=anything):
    """``valid`` about four times in five, ``wild`` otherwise: with several arguments per call,
    a good share of calls is valid throughout and the rest is wrong in one place or more."""
    return st.sampled_from((True, True, True, True, False)).flatmap(lambda ok: valid if ok else wild)


plain_numbers = st.one_of(st.floats(), st.integers(-(2**53), 2**53), st.booleans(),
                          st.sampled_from([np.float32(0.5), np.int64(-3), np.float64(2.5), np.bool_(True)]))
tags = mostly(st.one_of(st.text(max_size=8), st.text(max_size=4).map(str.encode)))
steps = mostly(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)))
walltimes = mostly(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)))
texts = st.text(max_size=3)


def number_arrays(shape, kinds=(np.uint8, np.float32, np.float64, np.int16, np.bool_)):
    return hnp.arrays(st.sampled_from(list(kinds)), shape)


def image_arrays(dims: int, channels=(1, 3, 4)):
    """Arrays shaped like images (the channel axis first, sides of 1 to 5) mostly, otherwise
    of any ``dims``-dimensional shape with sides of 0 to 5."""
    side = st.integers(1, 5)
    shape = st.tuples(*[side] * (dims - 3), st.sampled_from(channels), side, side) if dims >= 3 else st.tuples(side, side)
    return mostly(number_arrays(shape), st.one_of(number_arrays(st.tuples(*[st.integers(0, 5)] * dims)), anything))


def same_length(k: int):
    """``k`` strategies of 1-d number arrays, mostly all of one length."""
    lengths = st.shared(st.integers(0, 8), key=f"same_length_{k}")
    array = lengths.flatmap(lambda n: number_arrays((n,), (np.float32, np.float64, np.float16, np.int64, np.bool_)))
    return [mostly(array) for _ in range(k)]


layouts = st.dictionaries(texts, st.dictionaries(
    texts, st.tuples(st.sampled_from(["Multiline", "Margin", "Other"]),
                     st.lists(texts, max_size=4)).map(list), max_size=2), max_size=2)


def positional(*strategies):
    return st.tuples(*strategies).map(lambda a: (a, {}))


@st.composite
def onnx_models(draw) -> bytes:
    """A serialized ONNX model: a few nodes with attributes of the common kinds."""
    from onnx import TensorProto, helper

    names = st.text(alphabet="abcxyz_", min_size=1, max_size=3)
    nodes = []
    for i in range(draw(st.integers(0, 3))):
        attributes = draw(st.dictionaries(names, st.one_of(st.integers(-5, 5), st.floats(-2, 2, width=32),
                                                           texts, st.lists(st.integers(-3, 3), min_size=1, max_size=3)),
                                          max_size=3))
        nodes.append(helper.make_node(draw(names), draw(st.lists(names, max_size=2)), [f"out{i}"], **attributes))
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, draw(st.lists(st.integers(1, 4), max_size=2)))
              for name in draw(st.lists(names, max_size=2, unique=True))]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, [])).SerializeToString()


# Each method: the strategy of its arguments (positional) and keyword arguments.
CALLS: Dict[str, Any] = {
    "add_scalar": positional(tags, mostly(plain_numbers, numbers), steps, walltimes),
    "add_scalar/new_style": st.tuples(tags, mostly(plain_numbers, numbers), steps, walltimes, st.booleans()).map(
        lambda a: (a[:4], {"new_style": True, "double_precision": a[4]})),
    "add_scalars": positional(tags, mostly(st.dictionaries(texts, mostly(plain_numbers), max_size=3)), steps, walltimes),
    "add_histogram": positional(tags, mostly(number_arrays(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)), arrays),
                                steps, mostly(st.one_of(st.just("tensorflow"), st.integers(-2, 30),
                                                        st.sampled_from(["auto", "fd", "x"]))),
                                walltimes, mostly(st.one_of(st.none(), st.integers(-2, 3000)))),
    "add_histogram_raw": positional(tags, *[mostly(plain_numbers, numbers)] * 5, *same_length(2), steps, walltimes),
    "add_image": positional(tags, image_arrays(3), steps, walltimes,
                            mostly(st.sampled_from(["CHW", "HWC", "HW", "WH", "CWH", "chw", "NCHW", "XYZ"]))),
    "add_images": positional(tags, image_arrays(4), steps, walltimes,
                             mostly(st.sampled_from(["NCHW", "NHWC", "CHW", "nchw"]))),
    "add_image_with_boxes": positional(tags, image_arrays(3, (3,)),
                                       mostly(hnp.arrays(np.float64, st.tuples(st.integers(0, 3), st.just(4)),
                                                         elements=st.floats(-2, 8))),
                                       steps, walltimes, mostly(st.sampled_from([1, 0.5, 2, 0, -1])),
                                       mostly(st.just("CHW")), mostly(st.one_of(st.none(), st.lists(texts, max_size=3)))),
    "add_figure": positional(tags, mostly(st.lists(st.sampled_from(["line", "image"]), min_size=1, max_size=3).map(
        lambda kinds: ("figures", kinds)) | st.sampled_from([("figures", "line")])), steps),
    "add_text": positional(tags, mostly(st.text(max_size=20)), steps, walltimes),
    "add_pr_curve": st.tuples(tags, *same_length(2), steps, mostly(st.integers(-1, 300)),
                              mostly(st.one_of(st.none(), plain_numbers, number_arrays((8,)))), walltimes).map(
        lambda a: ((a[0], a[1], a[2], a[3]), {"num_thresholds": a[4], "weights": a[5], "walltime": a[6]})),
    "add_pr_curve_raw": positional(tags, *same_length(6), steps, mostly(st.integers(-1, 300)), anything, walltimes),
    "add_custom_scalars": mostly(layouts).map(lambda a: ((a,), {})),
    "add_custom_scalars_multilinechart": positional(mostly(st.lists(texts, max_size=4)), mostly(texts), mostly(texts)),
    "add_custom_scalars_marginchart": positional(mostly(st.lists(texts, min_size=3, max_size=3)), mostly(texts),
                                                 mostly(texts)),
    "add_hparams": positional(mostly(st.dictionaries(texts, mostly(st.one_of(plain_numbers, texts)), max_size=3)),
                              mostly(st.dictionaries(texts, mostly(plain_numbers), max_size=3)),
                              mostly(st.one_of(st.none(), st.dictionaries(texts, st.lists(plain_numbers, max_size=2), max_size=2))),
                              st.one_of(st.none(), st.text(alphabet="abc_", max_size=4)), steps),
    "add_embedding": positional(mostly(number_arrays(st.tuples(st.integers(0, 5), st.integers(0, 4)))),
                                mostly(st.one_of(st.none(), st.lists(st.one_of(texts, plain_numbers), max_size=5))),
                                mostly(st.one_of(st.none(), image_arrays(4))), steps,
                                mostly(st.text(max_size=4)), mostly(st.one_of(st.none(), st.lists(texts, max_size=3)))),
    "add_audio": positional(tags, mostly(number_arrays(st.tuples(st.integers(0, 50)),
                                                       (np.float32, np.float64, np.int16, np.uint8)), arrays),
                            steps, mostly(st.integers(-1, 50000), numbers), walltimes),
    "add_video": positional(tags, image_arrays(5, (1, 3)), steps, mostly(st.integers(-1, 60), numbers), walltimes),
    "add_mesh": positional(tags, mostly(number_arrays(st.tuples(st.just(1), st.integers(0, 6), st.just(3)))),
                           mostly(st.one_of(st.none(), number_arrays(st.tuples(st.just(1), st.integers(0, 6), st.just(3))))),
                           mostly(st.one_of(st.none(), number_arrays(st.tuples(st.just(1), st.integers(0, 4), st.just(3))))),
                           mostly(st.one_of(st.none(), st.dictionaries(texts, plain_numbers, max_size=2))),
                           steps, walltimes),
    "add_tensor": positional(tags, mostly(number_arrays(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
                                          arrays), steps, walltimes),
    "add_onnx_graph": mostly(onnx_models(), st.binary(max_size=64)).map(lambda b: ((b,), {})),
    "add_graph": positional(mostly(st.sampled_from(["linear", "relu"])),
                            mostly(hnp.arrays(np.float32, st.tuples(st.integers(0, 3), st.sampled_from([3, 3, 2]))))),
}

# Exceptions a call may raise besides TypeError and ValueError, with why.
OTHER_ERRORS: Dict[str, tuple] = {
    # torch's tracer fails inside the model (shapes, dtypes), as in the stock writer.
    "add_graph": (RuntimeError,),
    # The step names a directory: a step too long for a file name fails there, as in the stock
    # writer (OSError ENAMETOOLONG).
    "add_embedding": (OSError,),
}


# Records each successful call adds, and where (None: the main run).
def expected_records(method: str, args: tuple) -> Dict[Any, int]:
    if method == "add_scalars":
        return {key: 1 for key in args[1]}
    if method == "add_hparams":
        return {"run": 3 + len(args[1])}  # experiment, session start and end, then the metrics
    if method == "add_embedding":
        return {}  # side files only
    if method == "add_graph":
        return {None: 2}  # graph_def, then tagged_run_metadata
    return {None: 1}


def prepared(method: str, args: tuple, scratch: str) -> tuple:
    """Arguments that need more than hypothesis gives: a model to trace, a file to read."""
    if method == "add_onnx_graph":
        path = os.path.join(scratch, "model.onnx")
        with open(path, "wb") as f:
            f.write(args[0])
        return (path,)
    if method == "add_graph" and isinstance(args[0], str) and args[0] in ("linear", "relu"):
        import torch

        model = torch.nn.Linear(3, 2) if args[0] == "linear" else torch.nn.ReLU()
        value = args[1]
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            value = torch.from_numpy(value.astype(np.float32))
        return (model, value)
    if method == "add_figure" and isinstance(args[1], tuple) and args[1][:1] == ("figures",):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        kinds = args[1][1]
        figures = []
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            figure = plt.figure(figsize=(1, 1), dpi=20)
            if kind == "line":
                figure.gca().plot([0, 1], [1, 0])
            else:
                figure.gca().imshow(np.eye(3))
            figures.append(figure)
        return (args[0], figures[0] if isinstance(kinds, str) else figures, *args[2:])
    return args


@pytest.mark.parametrize("method", CALLS)
def test_every_call_writes_a_record_or_raises_a_clear_error(tmp_path_factory, method):
    logdir = str(tmp_path_factory.mktemp("fuzz"))
    scratch = str(tmp_path_factory.mktemp("scratch"))
    writer = SummaryWriter(logdir)
    written: List[int] = [0]
    outcomes = {"logged": 0, "refused": 0}
    name = method.split("/")[0]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(CALLS[method])
    def call(case):
        args, kwargs = case
        args = prepared(name, args, scratch)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # torch's tracer prints its failures
                getattr(writer, name)(*args, **kwargs)
        except (TypeError, ValueError, *OTHER_ERRORS.get(name, ())) as exc:
            assert str(exc), f"{type(exc).__name__} without a message"
            outcomes["refused"] += 1
            return
        outcomes["logged"] += 1
        written[0] += sum(expected_records(method, args).values())

    # numpy warns about casts of odd values (nan to int, complex to real), as on the stock path.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    writer.close()
    print(method, outcomes)
    # The strategies reach both the records and the errors.
    # Both outcomes, a few times each: how often depends on hypothesis's draws (add_onnx_graph's
    # refusals ranged from 6 to 12 in 200).
    assert outcomes["logged"] >= EXAMPLES // 50 and outcomes["refused"] >= EXAMPLES // 50, outcomes
    records = 0
    for path, events in read_tree(logdir).items():
        assert events[0].file_version == "brain.Event:2", path
        for event in events[1:]:
            for value in event.summary.value:
                if value.HasField("image"):
                    encoded = value.image.encoded_image_string
                    if encoded.startswith(b"GIF"):  # add_video: a whole, valid GIF
                        frames = decoded_frames(encoded)
                        assert frames.shape[1:3] == (value.image.height, value.image.width)
                        if value.image.colorspace == 1:
                            assert (frames == frames[..., :1]).all()
                    else:
                        pixels = pil_decode(encoded)  # a whole, valid PNG
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
