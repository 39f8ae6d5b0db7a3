"""The rarely called summary kinds: text, PR curves, custom scalars, hparams, embeddings, audio,
video, meshes, graphs and raw tensors.

They are built by the same functions torch's writer calls (``torch.utils.tensorboard.summary``
and friends, imported only when one of these methods is used), so their records are the stock
writer's by construction; they then go through fasttb's queue like every other record, keeping
the order of calls in the file. These calls are not on any training loop's hot path.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from ._convert import make_np


def _torch_tensorboard(method: str) -> Any:
    try:
        import torch.utils.tensorboard as tb
    except ImportError as exc:
        raise ImportError(
            f"{method} builds its summary with torch.utils.tensorboard: install torch and "
            f"tensorboard to use it"
        ) from exc
    return tb


def _summary_module(method: str) -> Any:
    _torch_tensorboard(method)
    from torch.utils.tensorboard import summary

    return summary


def _encode_tag(tag: str) -> str:
    """A tag as a directory name, the stock way: % first, then / and \\."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


class StockKindsMixin:
    """The methods of torch's SummaryWriter that fasttb does not encode natively."""

    _projector_config: Any
    _get_file_writer: Any  # SummaryWriter's

    def add_text(self, tag: str, text_string: str, global_step: Optional[int] = None,
                 walltime: Optional[float] = None) -> None:
        """Log a string (rendered as Markdown by TensorBoard) under ``<tag>/text_summary``."""
        summary = _summary_module("add_text").text(tag, text_string)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_pr_curve(self, tag: str, labels: Any, predictions: Any, global_step: Optional[int] = None,
                     num_thresholds: int = 127, weights: Any = None,
                     walltime: Optional[float] = None) -> None:
        """Log a precision-recall curve from ground-truth ``labels`` (0/1) and ``predictions``
        (probabilities in [0, 1]), with up to 127 thresholds."""
        labels, predictions = make_np(labels, "labels"), make_np(predictions, "predictions")
        summary = _summary_module("add_pr_curve").pr_curve(tag, labels, predictions, num_thresholds, weights)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_pr_curve_raw(self, tag: str, true_positive_counts: Any, false_positive_counts: Any,
                         true_negative_counts: Any, false_negative_counts: Any, precision: Any,
                         recall: Any, global_step: Optional[int] = None, num_thresholds: int = 127,
                         weights: Any = None, walltime: Optional[float] = None) -> None:
        """Log a precision-recall curve from counts and rates computed elsewhere."""
        summary = _summary_module("add_pr_curve_raw").pr_curve_raw(
            tag, true_positive_counts, false_positive_counts, true_negative_counts,
            false_negative_counts, precision, recall, num_thresholds, weights)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_custom_scalars(self, layout: Dict[str, Dict[str, List[Any]]]) -> None:
        """Lay out charts of the Custom Scalars dashboard:
        ``{category: {chart title: ["Multiline" or "Margin", tags]}}``. Call it once per run."""
        summary = _summary_module("add_custom_scalars").custom_scalars(layout)
        self._get_file_writer().add_summary(summary)

    def add_custom_scalars_multilinechart(self, tags: List[str], category: str = "default",
                                          title: str = "untitled") -> None:
        """One Custom Scalars chart overlaying the series ``tags``."""
        self.add_custom_scalars({category: {title: ["Multiline", tags]}})

    def add_custom_scalars_marginchart(self, tags: List[str], category: str = "default",
                                       title: str = "untitled") -> None:
        """One Custom Scalars chart of a value and its lower and upper bounds (three tags)."""
        if len(tags) != 3:
            from ._convert import ArgumentShapeError

            raise ArgumentShapeError(f"tags: expected 3 tags (value, lower, upper), got {len(tags)}.")
        self.add_custom_scalars({category: {title: ["Margin", tags]}})

    def add_audio(self, tag: str, snd_tensor: Any, global_step: Optional[int] = None,
                  sample_rate: int = 44100, walltime: Optional[float] = None) -> None:
        """Log a mono clip: values in [-1, 1] (clipped otherwise), stored as 16-bit WAV."""
        summary = _summary_module("add_audio").audio(tag, snd_tensor, sample_rate=sample_rate)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_video(self, tag: str, vid_tensor: Any, global_step: Optional[int] = None, fps: int = 4,
                  walltime: Optional[float] = None) -> None:
        """Log a batch of videos ``[N, T, C, H, W]`` as one animated GIF (needs moviepy 1.x)."""
        summary_module = _summary_module("add_video")
        try:
            import moviepy.editor  # noqa: F401  (what the stock encoder imports)
        except ImportError as exc:
            # The stock writer prints a message and writes an empty value; fail loudly instead.
            raise ImportError("add_video needs the moviepy package, version 1.x (moviepy.editor)") from exc
        summary = summary_module.video(tag, vid_tensor, fps)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_mesh(self, tag: str, vertices: Any, colors: Any = None, faces: Any = None,
                 config_dict: Optional[Dict[str, Any]] = None, global_step: Optional[int] = None,
                 walltime: Optional[float] = None) -> None:
        """Log a 3-D mesh or point cloud: ``vertices`` ``[B, N, 3]`` and optional ``colors``
        and ``faces`` of the same layout, for TensorBoard's mesh plugin."""
        summary = _summary_module("add_mesh").mesh(tag, vertices, colors, faces, config_dict)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_tensor(self, tag: str, tensor: Any, global_step: Optional[int] = None,
                   walltime: Optional[float] = None) -> None:
        """Log a whole torch tensor as a TensorProto (torch's writer only)."""
        summary = _summary_module("add_tensor").tensor_proto(tag, tensor)
        self._get_file_writer().add_summary(summary, global_step, walltime)

    def add_graph(self, model: Any, input_to_model: Any = None, verbose: bool = False,
                  use_strict_trace: bool = True) -> None:
        """Trace ``model`` with ``input_to_model`` and log its graph for the Graphs dashboard."""
        _torch_tensorboard("add_graph")
        from torch.utils.tensorboard._pytorch_graph import graph

        self._get_file_writer().add_graph(graph(model, input_to_model, verbose, use_strict_trace))

    def add_onnx_graph(self, prototxt: str) -> None:
        """Log the graph of an ONNX model file (needs the onnx package)."""
        _torch_tensorboard("add_onnx_graph")
        from torch.utils.tensorboard._onnx_graph import load_onnx_graph

        self._get_file_writer().add_onnx_graph(load_onnx_graph(prototxt))

    def add_hparams(self, hparam_dict: Dict[str, Any], metric_dict: Dict[str, Any],
                    hparam_domain_discrete: Optional[Dict[str, List[Any]]] = None,
                    run_name: Optional[str] = None, global_step: Optional[int] = None) -> None:
        """Log a set of hyperparameters and the metrics they reached, as a run of its own
        (``<log_dir>/<run_name or the current time>``) for the HParams dashboard."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        exp, ssi, sei = _summary_module("add_hparams").hparams(hparam_dict, metric_dict, hparam_domain_discrete)
        if not run_name:
            run_name = str(time.time())
        logdir = os.path.join(self._get_file_writer().get_logdir(), run_name)
        from .writer import SummaryWriter

        with SummaryWriter(log_dir=logdir) as run:
            for summary in (exp, ssi, sei):
                run._get_file_writer().add_summary(summary, global_step)
            for key, value in metric_dict.items():
                run.add_scalar(key, value, global_step)

    def add_embedding(self, mat: Any, metadata: Optional[List[Any]] = None, label_img: Any = None,
                      global_step: Optional[int] = None, tag: str = "default",
                      metadata_header: Optional[List[str]] = None) -> None:
        """Save ``mat`` (one row per data point) with optional ``metadata`` labels and
        ``label_img`` thumbnails for the Projector dashboard. Writes files, not events."""
        _torch_tensorboard("add_embedding")
        from google.protobuf import text_format
        from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
        from torch.utils.tensorboard._embedding import (get_embedding_info, make_mat, make_sprite,
                                                        make_tsv, write_pbtxt)

        mat = make_np(mat, "mat")
        if global_step is None:
            global_step = 0
        subdir = f"{str(global_step).zfill(5)}/{_encode_tag(tag)}"
        log_dir = self._get_file_writer().get_logdir()
        save_path = os.path.join(log_dir, subdir)
        if os.path.isdir(save_path):
            print("warning: Embedding dir exists, did you set global_step for add_embedding()?")
        elif os.path.exists(save_path):
            raise NotADirectoryError(f"Path: `{save_path}` exists, but is a file. Cannot proceed.")
        else:
            os.makedirs(save_path)
        if metadata is not None:
            if mat.shape[0] != len(metadata):
                raise AssertionError("#labels should equal with #data points")
            make_tsv(metadata, save_path, metadata_header=metadata_header)
        if label_img is not None:
            if mat.shape[0] != label_img.shape[0]:
                raise AssertionError("#images should equal with #data points")
            make_sprite(label_img, save_path)
        if mat.ndim != 2:
            raise AssertionError("mat should be 2D, where mat.size(0) is the number of data points")
        make_mat(mat, save_path)
        if not hasattr(self, "_projector_config"):
            self._projector_config = ProjectorConfig()
        self._projector_config.embeddings.extend(
            [get_embedding_info(metadata, label_img, subdir, global_step, tag)])
        write_pbtxt(log_dir, text_format.MessageToString(self._projector_config))
