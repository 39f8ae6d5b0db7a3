"""The C++ Event encoders produce exactly the bytes the protobuf runtime serializes."""

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.proto.tensor_pb2 import TensorProto

from fasttb import _core


def stock_scalar_event(wall_time, step, tag, value, kind):
    if kind == 0:
        v = summary_pb2.Summary.Value(tag=tag, simple_value=value)
    else:
        tensor = TensorProto(dtype=2 if kind == 2 else 1)
        if kind == 2:
            tensor.double_val.append(value)
        else:
            tensor.float_val.append(value)
        meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        v = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta)
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[v])).SerializeToString()


def f32_safe(x):
    # protobuf refuses doubles beyond the float range for float fields; the stock writer passes
    # it a float() of the value, which the runtime rounds (overflow to inf) itself.
    try:
        struct.pack("<f", x)
        return x
    except OverflowError:
        return math.copysign(math.inf, x)


@settings(max_examples=400, deadline=None)
@given(
    wall_time=st.floats(allow_nan=True, allow_infinity=True),
    step=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    tag=st.text(max_size=300),
    value=st.floats(allow_nan=False),
    kind=st.sampled_from([0, 1, 2]),
)
def test_scalar_event_bytes(wall_time, step, tag, value, kind):
    ours = _core.encode_scalar_event(wall_time, step, tag, value, kind)
    if math.isnan(wall_time):
        # NaN payload bits differ between runtimes only in how NaN is produced; compare parsed.
        assert math.isnan(event_pb2.Event.FromString(ours).wall_time)
        return
    expected = stock_scalar_event(wall_time, step, tag, value if kind == 2 else f32_safe(value), kind)
    assert ours == expected


def test_spec_examples():
    assert _core.encode_scalar_event(1.0, 1, "loss", 0.5).hex() == (
        "09000000000000f03f" "1001" "2a0d" "0a0b" "0a046c6f7373" "150000003f")
    value_c = "0a0163" "4208" "0801" "2a04abaaaa3e" "4a0b" "0a09" "0a077363616c617273"
    assert _core.encode_scalar_event(0.0, 0, "c", 1 / 3, 1).hex().endswith(value_c)
    value_d = "0a0164" "420c" "0802" "3208555555555555d53f" "4a0b" "0a09" "0a077363616c617273"
    assert _core.encode_scalar_event(0.0, 0, "d", 1 / 3, 2).hex().endswith(value_d)


def test_first_record_is_tensorboards():
    expected = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")
    expected.source_metadata.writer = "tensorboard.summary.writer.event_file_writer"
    assert _core.encode_file_version_event(1.0) == expected.SerializeToString()
    assert len(_core.frame_record(_core.encode_file_version_event(1.0))) == 88


def test_zero_and_negative_zero_presence():
    # +0.0 wall_time and step 0 vanish; -0.0 does not; a 0.0 simple_value is always written.
    assert _core.encode_scalar_event(0.0, 0, "t", 0.0).hex() == "2a0a0a080a0174" "1500000000"
    assert _core.encode_scalar_event(-0.0, 0, "t", 0.0).startswith(bytes.fromhex("090000000000000080"))
