"""fasttb's own protobuf messages: everything TensorBoard reads, and the part of ONNX that
``add_onnx_graph`` needs.

The messages mirror tensorboard's (and ONNX's) field numbers, names and types, so the bytes and the
text format are the same; the packages are fasttb's own. The classes are built here at import from
the serialized descriptors in ``_descriptors.py`` (made by ``tools/gen_protos.py`` from the
``.proto`` files in this folder), in a descriptor pool of fasttb's own: that works with every
protobuf runtime from 3.20 on, and never meets the classes of tensorboard or ONNX loaded in the same
process. Only the rarely used summary kinds import this module.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, struct_pb2

from ._descriptors import FILES

POOL = descriptor_pool.DescriptorPool()
POOL.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)  # google.protobuf.Value, ListValue
for _file in FILES:
    POOL.AddSerializedFile(_file)

try:
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:  # protobuf before 4.21
    from google.protobuf.message_factory import MessageFactory

    _message_class = MessageFactory(POOL).GetPrototype


def _cls(name: str) -> Any:
    return _with_nested(_message_class(POOL.FindMessageTypeByName(name)))


def _with_nested(cls: Any) -> Any:
    """``cls`` with its nested messages as attributes (``Summary.Audio``). The upb and C++
    runtimes set them; the pure-Python one (protobuf 3.20 on new Pythons, or
    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python) does not for classes built from a pool."""
    for nested in cls.DESCRIPTOR.nested_types:
        if not hasattr(cls, nested.name):
            setattr(cls, nested.name, _with_nested(_message_class(nested)))
    return cls


# tensorboard.*
Event = _cls("fasttb.Event")
SessionLog = _cls("fasttb.SessionLog")
SourceMetadata = _cls("fasttb.SourceMetadata")
TaggedRunMetadata = _cls("fasttb.TaggedRunMetadata")
Summary = _cls("fasttb.Summary")
SummaryMetadata = _cls("fasttb.SummaryMetadata")
HistogramProto = _cls("fasttb.HistogramProto")
TensorProto = _cls("fasttb.TensorProto")
TensorShapeProto = _cls("fasttb.TensorShapeProto")
GraphDef = _cls("fasttb.GraphDef")
NodeDef = _cls("fasttb.NodeDef")
AttrValue = _cls("fasttb.AttrValue")
VersionDef = _cls("fasttb.VersionDef")
RunMetadata = _cls("fasttb.RunMetadata")
StepStats = _cls("fasttb.StepStats")
DeviceStepStats = _cls("fasttb.DeviceStepStats")
TextPluginData = _cls("fasttb.TextPluginData")
PrCurvePluginData = _cls("fasttb.PrCurvePluginData")
Layout = _cls("fasttb.Layout")
Category = _cls("fasttb.Category")
Chart = _cls("fasttb.Chart")
MultilineChartContent = _cls("fasttb.MultilineChartContent")
MarginChartContent = _cls("fasttb.MarginChartContent")
# tensorboard.hparams.*
HParamsPluginData = _cls("fasttb.hparams.HParamsPluginData")
Experiment = _cls("fasttb.hparams.Experiment")
HParamInfo = _cls("fasttb.hparams.HParamInfo")
MetricInfo = _cls("fasttb.hparams.MetricInfo")
MetricName = _cls("fasttb.hparams.MetricName")
SessionStartInfo = _cls("fasttb.hparams.SessionStartInfo")
SessionEndInfo = _cls("fasttb.hparams.SessionEndInfo")
# tensorboard.mesh.*, tensorboard.projector.*
MeshPluginData = _cls("fasttb.mesh.MeshPluginData")
ProjectorConfig = _cls("fasttb.projector.ProjectorConfig")
EmbeddingInfo = _cls("fasttb.projector.EmbeddingInfo")
SpriteMetadata = _cls("fasttb.projector.SpriteMetadata")
# onnx.* (read only)
OnnxModelProto = _cls("fasttb.onnx.ModelProto")

# Enum values the writers use (the enums themselves are in the descriptors).
DT = {v.name: v.number for v in POOL.FindEnumTypeByName("fasttb.DataType").values}
HPARAM_TYPE = {v.name: v.number for v in POOL.FindEnumTypeByName("fasttb.hparams.DataType").values}
