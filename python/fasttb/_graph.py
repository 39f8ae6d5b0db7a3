"""Graphs for TensorBoard's Graphs dashboard, built with fasttb's own protobuf messages: a torch
model traced with ``torch.jit.trace`` (add_graph) and an ONNX model file (add_onnx_graph).

The nodes are the stock writer's: the same names (scoped by module, ``input/…`` and
``output/output.N`` for the graph's ends), ops, inputs and attributes, in the same order, so the
dashboard draws the same graph. Only torch (for tracing) is needed; neither tensorboard nor onnx.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Dict, Iterator, List, Optional, Tuple

from google.protobuf.message import DecodeError

from . import proto
from ._convert import require

_GET_ATTR = "prim::GetAttr"
_CLASS_TYPE = "ClassType"
_PRODUCER = 22  # GraphDef.versions.producer the stock writers record


class ModelTypeError(TypeError, AttributeError):
    """add_graph's model is not a torch module (the stock writer fails on ``model.training``)."""


class ModelDecodeError(DecodeError, ValueError):
    """add_onnx_graph's file is not an ONNX model (the stock writer raises DecodeError)."""


class _Value:
    """A node of the drawn graph: a graph input or output, or one output of an op."""

    def __init__(self, name: str, op: str, inputs: List[str], scope: Optional[str],
                 shape: Optional[List[int]], attributes: str = "", end: Optional[str] = None) -> None:
        self.name = name
        self.op = op
        self.inputs = inputs
        self.scope = scope  # None for the graph's inputs and outputs
        self.shape = shape
        self.attributes = attributes
        self.end = end  # "input" or "output" for the graph's ends


class _Op:
    """One op of the traced graph, with what the drawing needs."""

    def __init__(self, node: Any) -> None:
        self.kind = node.kind()
        self.scope = node.scopeName()
        self.inputs = [v.debugName() for v in node.inputs()]
        self.outputs = [(v.debugName(), v.type().sizes() if v.isCompleteTensor() else None)
                        for v in node.outputs()]
        # Every attribute's value as Python prints it; quotes become spaces, as in the stock
        # writer (TensorBoard's graph view mishandles them).
        values = {k: getattr(node, node.kindOf(k))(k) for k in node.attributeNames()}
        self.attributes = str(values).replace("'", " ")


def _sizes(value: Any) -> List[int]:
    try:
        return value.type().sizes()
    except RuntimeError:
        return [1]  # not a tensor (a constant model's output, say)


@contextlib.contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    import torch

    if isinstance(model, torch.jit.ScriptFunction):
        yield
        return
    training = model.training
    model.train(False)
    try:
        yield
    finally:
        model.train(training)


def _module_name(module: Any) -> str:
    import torch

    if isinstance(module, torch.jit.TracedModule):
        return module._name
    return getattr(module, "original_name", "Module")


def _collect(graph: Any, trace: Any) -> Tuple[Dict[str, _Value], List[_Op]]:
    """The graph's inputs and outputs, keyed by value name in drawing order, and its ops with
    their module scopes resolved (``Net/Linear[fc]``)."""
    ends: Dict[str, _Value] = {}
    for value in graph.inputs():
        if value.uses() and value.type().kind() != _CLASS_TYPE:
            ends[value.debugName()] = _Value(value.debugName(), "IO Node", [], None, _sizes(value), end="input")
    ops: List[_Op] = []
    attribute_scopes: Dict[str, str] = {}
    for node in graph.nodes():
        if node.kind() != _GET_ATTR:
            ops.append(_Op(node))
            continue
        # Submodules are reached through chains of GetAttr: their scope is the chain's path.
        key = node.output().debugName()
        parent = node.input().node()
        if parent.kind() == _GET_ATTR:
            parent_scope = attribute_scopes[parent.output().debugName()]
            attribute_scopes[key] = f"{parent_scope}/{parent_scope.split('/')[-1]}.{node.s('name')}"
        else:
            attribute_scopes[key] = f"__module.{node.s('name')}"
        if node.output().type().kind() != _CLASS_TYPE:
            op = _Op(node)
            op.scope = attribute_scopes[key]
            ops.append(op)
    for i, value in enumerate(graph.outputs()):
        name = f"output.{i + 1}"
        ends[name] = _Value(name, "IO Node", [value.debugName()], None, _sizes(value), end="output")
    # Scopes name modules by alias (__module.fc); show them by class and attribute (Linear[fc]).
    names = {alias: f"{_module_name(m)}[{alias.split('.')[-1]}]"
             for alias, m in trace.named_modules(prefix="__module")}
    base = _module_name(trace)
    for op in ops:
        parts = [names.get(alias, alias.split(".")[-1]) for alias in op.scope.split("/")]
        op.scope = base + ("/" + "/".join(parts) if any(parts) else "")
    return ends, ops


def _graph_values(graph: Any, trace: Any) -> List[_Value]:
    """Every node of the drawing with its final scoped name and scoped inputs."""
    values, ops = _collect(graph, trace)
    scopes_seen = []
    for op in ops:
        for name, shape in op.outputs:
            scopes_seen.append(op.scope)
            values[name] = _Value(name, op.kind, op.inputs, op.scope, shape, op.attributes)
    # The stock writer's fallback scope for values without one: the first part of the last
    # non-empty scope it met ("default" when there is none).
    shallowest = next((s.split("/")[0] for s in reversed(scopes_seen) if s), "default")
    scoped: Dict[str, str] = {}
    for op in ops:
        for name in op.inputs:
            scoped[name] = f"{op.scope}/{name}"
    for key, value in values.items():
        if value.end is not None:
            scoped[key] = f"{value.end}/{value.name}"
        if value.scope is not None:
            scoped[key] = f"{value.scope}/{value.name}"
            if value.scope == "" and shallowest:
                scoped[value.name] = f"{shallowest}/{value.name}"
    for value in values.values():
        value.inputs = [scoped[name] for name in value.inputs]
        value.name = scoped.get(value.name, value.name)
    return list(values.values())


def _node_def(value: _Value) -> Any:
    node = proto.NodeDef(name=value.name, op=value.op, input=value.inputs)
    node.attr["attr"].s = value.attributes.encode("utf-8")
    if value.shape is not None:
        shape = node.attr["_output_shapes"].list.shape.add()  # present even without dimensions
        for size in value.shape:
            shape.dim.add(size=size)
    return node


def traced_graph(model: Any, input_to_model: Any, verbose: bool = False,
                 use_strict_trace: bool = True) -> Tuple[Any, Any]:
    """(GraphDef, RunMetadata) of ``model`` traced in eval mode with ``input_to_model``, as the
    stock add_graph makes them. A failed trace prints its error and is raised."""
    torch = require("torch", "add_graph", "torch")

    if not isinstance(model, (torch.nn.Module, torch.jit.ScriptFunction)):
        raise ModelTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    with _evaluating(model):
        try:
            trace = torch.jit.trace(model, input_to_model, strict=use_strict_trace)
            graph = trace.graph
            torch._C._jit_pass_inline(graph)
        except RuntimeError as exc:
            print(exc)
            print("Error occurs, No graph saved")
            raise
    if verbose:
        print(graph)
    graph_def = proto.GraphDef(node=[_node_def(v) for v in _graph_values(graph, trace)],
                               versions=proto.VersionDef(producer=_PRODUCER))
    # The stock writer records every graph as run on the CPU.
    run_metadata = proto.RunMetadata()
    run_metadata.step_stats.dev_stats.add(device="/device:CPU:0")
    return graph_def, run_metadata


def onnx_graph(path: str) -> Any:
    """GraphDef of an ONNX model file, as the stock add_onnx_graph makes it: its inputs and
    outputs as Variable nodes (element type and shape), then one node per op, named after its
    first output, its attributes written out as text."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        model = proto.OnnxModelProto.FromString(data)
    except DecodeError as exc:
        raise ModelDecodeError(f"prototxt: {path!r} is not an ONNX model ({exc})") from None
    nodes = []
    for value in itertools.chain(model.graph.input, model.graph.output):
        node = proto.NodeDef(name=value.name, op="Variable")
        tensor_type = value.type.tensor_type
        node.attr["dtype"].type = tensor_type.elem_type
        shape = node.attr["shape"].shape
        shape.SetInParent()  # present even without dimensions
        for dim in tensor_type.shape.dim:
            shape.dim.add(size=dim.dim_value)
        nodes.append(node)
    for op in model.graph.node:
        text = ", ".join(" = ".join(str(value) for _, value in attribute.ListFields())
                         for attribute in op.attribute)
        node = proto.NodeDef(name=op.output[0], op=op.op_type, input=op.input)
        node.attr["parameters"].s = text.encode("utf-8")
        nodes.append(node)
    return proto.GraphDef(node=nodes, versions=proto.VersionDef(producer=_PRODUCER))
