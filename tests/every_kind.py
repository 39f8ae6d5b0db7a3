"""Every method of the stock SummaryWriter but add_graph and add_figure, called with numpy inputs
only. Run as a script (``python every_kind.py fasttb|torch LOGDIR ONNX_MODEL``) so that the same
calls can be made in a bare environment (fasttb's wheel, numpy and protobuf) and, for reference,
through torch's writer in the full test environment."""

from __future__ import annotations

import sys

import numpy as np

WALL = 1_700_000_000.25


def log_every_kind(writer, onnx_model: str, tensor=lambda a: a) -> None:
    """The calls. ``tensor`` converts the arguments that torch's writer only takes as tensors
    (add_tensor's tensor, add_embedding's label_img)."""
    rng = np.random.default_rng(5)
    w = writer
    w.add_scalar("scalar", 0.25, 1, walltime=WALL)
    w.add_scalars("group", {"a": 1.0, "b": 2.5}, 2, walltime=WALL)
    w.add_histogram("histogram", rng.standard_normal(1000), 3, walltime=WALL)
    w.add_histogram_raw("raw", 0.0, 2.0, 3, 3.0, 5.0, [1.0, 2.0], [1, 2], 4, walltime=WALL)
    w.add_image("image", rng.random((3, 8, 6)), 5, walltime=WALL)
    w.add_images("images", rng.integers(0, 255, (2, 5, 7, 3), dtype=np.uint8), 6, walltime=WALL,
                 dataformats="NHWC")
    w.add_image_with_boxes("boxes", rng.random((3, 40, 30)), np.array([[2, 3, 20, 25], [5, 5, 9, 30]]),
                           7, walltime=WALL, rescale=0.6)
    w.add_text("text", "hello **world** — é", 8, walltime=WALL)
    labels, predictions = rng.integers(0, 2, 5000), rng.random(5000).astype(np.float32)
    w.add_pr_curve("pr", labels, predictions, 9, walltime=WALL)
    w.add_pr_curve("pr_weighted", labels, predictions, 9, num_thresholds=33, weights=rng.random(5000),
                   walltime=WALL)
    w.add_pr_curve_raw("pr_raw", [10, 5, 0], [5, 2, 0], [0, 3, 5], [0, 5, 10], [0.6, 0.7, 1.0],
                       [1.0, 0.5, 0.0], 10, num_thresholds=3, walltime=WALL)
    w.add_custom_scalars_multilinechart(["x", "y"], category="c", title="lines")
    w.add_custom_scalars_marginchart(["v", "lo", "hi"], category="c", title="margin")
    # Each call replaces the run's layout: this one is the layout TensorBoard shows.
    w.add_custom_scalars({"Training": {"loss": ["Multiline", ["loss/train", "loss/test"]],
                                       "band": ["Margin", ["m", "lo", "hi"]]},
                          "c": {"lines": ["Multiline", ["x", "y"]]}})
    w.add_audio("audio", np.sin(np.arange(4410) / 7.0) * 1.2, 11, sample_rate=44100, walltime=WALL)
    w.add_video("video", (rng.integers(0, 4, (2, 3, 3, 8, 10)) * 64).astype(np.uint8), 12, fps=5,
                walltime=WALL)
    w.add_mesh("mesh", rng.random((1, 6, 3)), colors=rng.integers(0, 255, (1, 6, 3)),
               faces=rng.integers(0, 6, (1, 4, 3)), config_dict={"camera": {"fov": 60}}, global_step=13,
               walltime=WALL)
    w.add_tensor("tensor", tensor(rng.random((2, 3)).astype(np.float32)), 14, walltime=WALL)
    w.add_embedding(rng.random((6, 4)), metadata=[f"m{i}" for i in range(6)],
                    label_img=tensor(rng.random((6, 3, 5, 5))), global_step=15, tag="emb")
    w.add_embedding(rng.random((3, 2)), metadata=[[1, "a"], [2, "b"], [3, "c"]],
                    metadata_header=["id", "name"], global_step=16)
    w.add_hparams({"lr": 0.01, "layers": 3, "opt": "adam", "nesterov": True}, {"hp/accuracy": 0.75},
                  hparam_domain_discrete={"opt": ["adam", "sgd"]}, run_name="trial")
    w.add_onnx_graph(onnx_model)


def onnx_model(path: str, tensor_attribute: bool = True) -> None:
    """Writes a small ONNX model (attributes of every kind, a subgraph) to ``path``. A node's
    attributes are logged as protobuf's text format, which prints a TensorProto's float 1 as
    "1.0" in protobuf 3.x and "1" since: ``tensor_attribute=False`` leaves out the one that shows
    it."""
    import onnx  # builds the test model; add_onnx_graph itself needs no onnx
    from onnx import TensorProto, helper

    branch = helper.make_graph([helper.make_node("Identity", ["X"], ["O"])], "branch",
                               [], [helper.make_tensor_value_info("O", TensorProto.FLOAT, [1, 4])])
    nodes = [
        helper.make_node("Gemm", ["X", "W", "B"], ["Y"], alpha=0.5, transB=1, name="gemm"),
        helper.make_node("Relu", ["Y"], ["Z"]),
        *([helper.make_node("Constant", [], ["C"], value=helper.make_tensor("c", TensorProto.FLOAT, [2], [1.0, 2.0]))]
          if tensor_attribute else []),
        helper.make_node("Cast", ["Z"], ["S"], to=TensorProto.DOUBLE, doc_string="d"),
        helper.make_node("Pad", ["Z"], ["P"], pads=[0, 1, 0, 1], mode="constant", values=[0.5, 1.5]),
        helper.make_node("If", ["cond"], ["I"], then_branch=branch, else_branch=branch),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("B", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph), path)


if __name__ == "__main__":
    kind, logdir, onnx_model = sys.argv[1:4]
    if kind == "torch":
        import torch
        from torch.utils.tensorboard import SummaryWriter

        convert = torch.from_numpy
    else:
        from fasttb import SummaryWriter

        def convert(a):
            return a
    writer = SummaryWriter(logdir)
    log_every_kind(writer, onnx_model, convert)
    writer.close()
    print(sorted({name.split(".")[0] for name in sys.modules}))
