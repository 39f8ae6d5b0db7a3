"""fasttb's protobuf schema against the real ones: every field fasttb defines has the number, name,
type, repetition, oneof and packing of tensorboard's (or ONNX's) field, both sets load in one
process, and bytes written by either parse equal in the other."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pool

from fasttb import proto

# fasttb message -> the real message it mirrors (full names).
MIRRORS = {
    "fasttb.Event": "tensorboard.Event",
    "fasttb.SourceMetadata": "tensorboard.SourceMetadata",
    "fasttb.SessionLog": "tensorboard.SessionLog",
    "fasttb.TaggedRunMetadata": "tensorboard.TaggedRunMetadata",
    "fasttb.LogMessage": "tensorboard.LogMessage",
    "fasttb.Summary": "tensorboard.Summary",
    "fasttb.Summary.Value": "tensorboard.Summary.Value",
    "fasttb.Summary.Image": "tensorboard.Summary.Image",
    "fasttb.Summary.Audio": "tensorboard.Summary.Audio",
    "fasttb.SummaryMetadata": "tensorboard.SummaryMetadata",
    "fasttb.SummaryMetadata.PluginData": "tensorboard.SummaryMetadata.PluginData",
    "fasttb.SummaryDescription": "tensorboard.SummaryDescription",
    "fasttb.HistogramProto": "tensorboard.HistogramProto",
    "fasttb.TensorProto": "tensorboard.TensorProto",
    "fasttb.TensorShapeProto": "tensorboard.TensorShapeProto",
    "fasttb.TensorShapeProto.Dim": "tensorboard.TensorShapeProto.Dim",
    "fasttb.GraphDef": "tensorboard.GraphDef",
    "fasttb.NodeDef": "tensorboard.NodeDef",
    "fasttb.AttrValue": "tensorboard.AttrValue",
    "fasttb.AttrValue.ListValue": "tensorboard.AttrValue.ListValue",
    "fasttb.NameAttrList": "tensorboard.NameAttrList",
    "fasttb.VersionDef": "tensorboard.VersionDef",
    "fasttb.RunMetadata": "tensorboard.RunMetadata",
    "fasttb.StepStats": "tensorboard.StepStats",
    "fasttb.DeviceStepStats": "tensorboard.DeviceStepStats",
    "fasttb.TextPluginData": "tensorboard.TextPluginData",
    "fasttb.PrCurvePluginData": "tensorboard.PrCurvePluginData",
    "fasttb.Layout": "tensorboard.Layout",
    "fasttb.Category": "tensorboard.Category",
    "fasttb.Chart": "tensorboard.Chart",
    "fasttb.MultilineChartContent": "tensorboard.MultilineChartContent",
    "fasttb.MarginChartContent": "tensorboard.MarginChartContent",
    "fasttb.MarginChartContent.Series": "tensorboard.MarginChartContent.Series",
    "fasttb.hparams.HParamsPluginData": "tensorboard.hparams.HParamsPluginData",
    "fasttb.hparams.Experiment": "tensorboard.hparams.Experiment",
    "fasttb.hparams.HParamInfo": "tensorboard.hparams.HParamInfo",
    "fasttb.hparams.Interval": "tensorboard.hparams.Interval",
    "fasttb.hparams.MetricName": "tensorboard.hparams.MetricName",
    "fasttb.hparams.MetricInfo": "tensorboard.hparams.MetricInfo",
    "fasttb.hparams.SessionStartInfo": "tensorboard.hparams.SessionStartInfo",
    "fasttb.hparams.SessionEndInfo": "tensorboard.hparams.SessionEndInfo",
    "fasttb.mesh.MeshPluginData": "tensorboard.mesh.MeshPluginData",
    "fasttb.projector.ProjectorConfig": "tensorboard.projector.ProjectorConfig",
    "fasttb.projector.EmbeddingInfo": "tensorboard.projector.EmbeddingInfo",
    "fasttb.projector.SpriteMetadata": "tensorboard.projector.SpriteMetadata",
}
ONNX_MESSAGES = ["ModelProto", "OperatorSetIdProto", "StringStringEntryProto", "GraphProto",
                 "NodeProto", "IntIntListEntryProto", "NodeDeviceConfigurationProto",
                 "ShardingSpecProto", "ShardedDimProto", "SimpleShardedDimProto", "AttributeProto",
                 "ValueInfoProto", "TensorAnnotation", "TensorProto", "TensorProto.Segment",
                 "SparseTensorProto", "TensorShapeProto", "TensorShapeProto.Dimension", "TypeProto",
                 "TypeProto.Tensor", "TypeProto.Sequence", "TypeProto.Map", "TypeProto.Optional",
                 "TypeProto.SparseTensor", "TypeProto.Opaque"]


def load_tensorboard_protos() -> None:
    from tensorboard.compat.proto import config_pb2, event_pb2, graph_pb2  # noqa: F401
    from tensorboard.plugins.custom_scalar import layout_pb2  # noqa: F401
    from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: F401
    from tensorboard.plugins.mesh import plugin_data_pb2 as _mesh  # noqa: F401
    from tensorboard.plugins.pr_curve import plugin_data_pb2 as _pr  # noqa: F401
    from tensorboard.plugins.projector import projector_config_pb2  # noqa: F401
    from tensorboard.plugins.text import plugin_data_pb2 as _text  # noqa: F401


def field_facts(field) -> tuple:
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == 3
    kind = field.message_type or field.enum_type
    return (field.name, field.type, repeated, field.containing_oneof.name if field.containing_oneof else None,
            bool(getattr(field, "is_packed", False)), kind.name if kind else None)


def assert_mirrors(ours, theirs) -> None:
    real = {f.number: f for f in theirs.fields}
    for field in ours.fields:
        assert field.number in real, f"{ours.full_name}.{field.name}: no field {field.number} in {theirs.full_name}"
        assert field_facts(field) == field_facts(real[field.number]), f"{ours.full_name}.{field.name}"
    for enum in ours.enum_types:
        assert [(v.name, v.number) for v in enum.values] == \
            [(v.name, v.number) for v in theirs.enum_types_by_name[enum.name].values]


@pytest.mark.parametrize("ours", sorted(MIRRORS))
def test_tensorboard_messages_are_mirrored_field_for_field(ours):
    load_tensorboard_protos()
    assert_mirrors(proto.POOL.FindMessageTypeByName(ours),
                   descriptor_pool.Default().FindMessageTypeByName(MIRRORS[ours]))


def test_top_level_enums_are_tensorboards():
    load_tensorboard_protos()
    pool = descriptor_pool.Default()
    for ours, theirs in [("fasttb.DataClass", "tensorboard.DataClass"),
                         ("fasttb.hparams.DataType", "tensorboard.hparams.DataType"),
                         ("fasttb.hparams.Status", "tensorboard.hparams.Status"),
                         ("fasttb.hparams.DatasetType", "tensorboard.hparams.DatasetType")]:
        assert [(v.name, v.number) for v in proto.POOL.FindEnumTypeByName(ours).values] == \
            [(v.name, v.number) for v in pool.FindEnumTypeByName(theirs).values]
    real = {v.name: v.number for v in pool.FindEnumTypeByName("tensorboard.DataType").values}
    assert all(real[name] == number for name, number in proto.DT.items())


@pytest.mark.parametrize("name", ONNX_MESSAGES)
def test_onnx_messages_are_mirrored_field_for_field(name):
    import onnx  # a test dependency; add_onnx_graph itself needs no onnx
    assert_mirrors(proto.POOL.FindMessageTypeByName("fasttb.onnx." + name),
                   onnx.ModelProto.DESCRIPTOR.file.pool.FindMessageTypeByName("onnx." + name))


def test_both_schemas_load_in_one_process_and_agree_on_bytes():
    # In a fresh process, in both import orders.
    for first, second in (("fasttb.proto", "tensorboard.compat.proto.event_pb2"),
                          ("tensorboard.compat.proto.event_pb2", "fasttb.proto")):
        subprocess.run([sys.executable, "-c", f"import {first}, {second}"], check=True)
    from tensorboard.compat.proto import event_pb2

    ours = proto.Event(wall_time=1.5, step=-3)
    value = ours.summary.value.add(tag="t")
    value.tensor.dtype = proto.DT["DT_STRING"]
    value.tensor.tensor_shape.dim.add(size=1)
    value.tensor.string_val.append("é".encode())
    value.metadata.plugin_data.plugin_name = "text"
    data = ours.SerializeToString()
    theirs = event_pb2.Event.FromString(data)
    assert theirs.SerializeToString() == data
    assert theirs.summary.value[0].tensor.string_val == ["é".encode()]
    assert proto.Event.FromString(theirs.SerializeToString()) == ours


def test_descriptors_are_what_the_proto_files_say():
    # The generated module is regenerated from the .proto files (tools/gen_protos.py); this checks
    # it was, by comparing the message names each .proto file declares with the built pool.
    import os
    import re

    folder = os.path.dirname(proto.__file__)
    for name in os.listdir(folder):
        if not name.endswith(".proto"):
            continue
        with open(os.path.join(folder, name)) as f:
            text = f.read()
        package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
        declared = re.findall(r"^message (\w+) \{", text, re.M)
        for message in declared:
            proto.POOL.FindMessageTypeByName(f"{package}.{message}")  # raises KeyError if stale


BACKEND_WORKLOAD = """
import sys
import numpy as np
from google.protobuf.internal import api_implementation
from fasttb.reader import SummaryReader
from fasttb.tensorboardX import SummaryWriter

w = SummaryWriter(sys.argv[1])
w.add_scalar("s", 1.0, 0, walltime=1.0, display_name="shown", summary_description="what")
w.add_audio("a", np.sin(np.arange(400) / 5.0), 1, walltime=1.0)
w.add_custom_scalars_multilinechart(["x", "y"])
w.add_custom_scalars_marginchart(["v", "lo", "hi"])
w.add_hparams({"lr": 0.1, "opt": "adam"}, {"acc": 0.5}, name="trial")
w.add_image("i", np.zeros((3, 4, 4)), 2, walltime=1.0)
w.close()
columns = SummaryReader(sys.argv[1]).columns
print(api_implementation.Type(), len(columns("images")["step"]), len(columns("audio")["step"]))
"""


def test_the_pure_python_protobuf_runtime_writes_and_reads_what_upb_does(tmp_path):
    # The pure-Python runtime (protobuf 3.20 on Python 3.11, or chosen by the environment
    # variable) does not give classes built from a pool their nested classes (Summary.Audio):
    # the tensorboardX dialect's audio, layouts, hparams and display names failed there, and so
    # did the reader's images and audio.
    from conftest import normalized, read_tree

    trees = []
    for backend in ("python", None):
        env = dict(os.environ)
        env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
        if backend:
            env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = backend
        logdir = str(tmp_path / (backend or "default"))
        result = subprocess.run([sys.executable, "-c", BACKEND_WORKLOAD, logdir], capture_output=True,
                                text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        kind, images, audio = result.stdout.split()
        assert (kind == "python") == bool(backend) and (images, audio) == ("1", "1")
        trees.append({os.path.relpath(path, logdir).split("events.out")[0]: [normalized(e) for e in events]
                      for path, events in read_tree(logdir).items()})
    assert trees[0] == trees[1] and len(trees[0]) == 2
