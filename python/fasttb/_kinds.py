"""The summary kinds beyond scalars, histograms and images: text, PR curves, custom scalars,
hyperparameters, embeddings, audio, video, meshes, raw tensors and graphs.

Everything here needs numpy and protobuf only: the records are built with fasttb's own protobuf
messages (``fasttb.proto``, imported on first use), with the stock writer's rules for every value,
and the heavy parts run on the background thread: text and PR curve encoding, WAV and GIF
encoding, and add_embedding's tensors.tsv and sprite.png. torch is imported only for torch
tensors (and add_graph's tracing).
"""

from __future__ import annotations

import functools
import json
import math
import operator
import os
import posixpath
import time
import wave
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ._convert import (ArgumentAttributeError, ArgumentIndexError, ArgumentOverflowError, ArgumentShapeError,
                       ArgumentValueTypeError, ArgumentZeroDivisionError, _is_torch_tensor, make_np, to_joined_str,
                       to_step, to_str, to_tag, to_walltime, worker_path)

if TYPE_CHECKING:
    from .writer import FileWriter

_MAX_THRESHOLDS = 127  # PrCurvePluginData.num_thresholds: the stock writer caps it here

# numpy dtypes the core reads directly (fasttb::DType): native byte order only.
_CORE_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.int16,
                                               np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                               np.uint64, np.bool_))


def _proto() -> Any:
    from . import proto

    return proto


def _encode_tag(tag: str) -> str:
    """A tag as a directory name, the stock way: % first, then / and \\."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def _for_core(a: np.ndarray) -> np.ndarray:
    """``a`` flattened in C order, C-contiguous, in a dtype the core reads (float64 otherwise)."""
    if a.dtype not in _CORE_DTYPES:
        a = a.astype(np.float64)
    return np.ascontiguousarray(a).reshape(-1)


def _numeric(a: np.ndarray, argument: str) -> np.ndarray:
    """_for_core, naming ``argument`` when the values are not numbers."""
    try:
        return _for_core(a)
    except (TypeError, ValueError) as exc:
        # (numpy's cast, in the stock writer, raises TypeError for some dtypes, ValueError for others)
        raise ArgumentValueTypeError(f"{argument}: expected numbers, got dtype {a.dtype} ({exc})") from None


class _CountsShapeError(ArgumentShapeError, IndexError):
    """PR-curve counts that are not sequences of one length (the stock writer indexes them)."""


class _SampleRateError(ValueError, wave.Error):
    """A sample rate of no samples per second (the stock writer's wave module refuses it)."""


class _SampleRateTypeError(ArgumentValueTypeError, wave.Error):
    """A sample rate that is no number: the stock writer's wave module fails on it when it
    closes the header it could not complete ("sampling rate not specified")."""


def _number(a: Any, argument: str) -> float:
    try:
        return float(a)
    except (TypeError, ValueError) as exc:
        raise ArgumentValueTypeError(f"{argument}: expected a number, got {a!r} ({exc})") from None
    except OverflowError:
        raise ArgumentOverflowError(f"{argument}: {a!r} is too large for a float") from None


def _array(value: Any, argument: str) -> np.ndarray:
    """Arrays as the stock writer's callers of ``np.stack`` and protobuf see them: numpy arrays and
    tensors through make_np, anything else through ``np.asarray``."""
    if isinstance(value, np.ndarray) or _is_torch_tensor(value):
        return make_np(value, argument)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{argument}: expected numbers, got {type(value).__name__} ({exc})") from None


def _summary_value(tag: str, plugin: str, content: bytes = b"") -> Any:
    """A Summary with one Value: ``tag`` and the metadata of ``plugin``; the caller adds the rest."""
    proto = _proto()
    summary = proto.Summary()
    value = summary.value.add(tag=tag)
    value.metadata.plugin_data.plugin_name = plugin
    if content:
        value.metadata.plugin_data.content = content
    return summary, value


def _set_floats(tensor: Any, values: np.ndarray, shape: tuple) -> None:
    tensor.dtype = _proto().DT["DT_FLOAT"]
    for size in shape:
        tensor.tensor_shape.dim.add(size=int(size))
    tensor.float_val.extend(values.reshape(-1).tolist())


class KindsMixin:
    """SummaryWriter's methods for the summary kinds of this module."""

    _projector_config: Any
    _hparams_writers: List["FileWriter"]
    _get_file_writer: Any  # SummaryWriter's
    _main: Any
    _new_file_writer: Any

    # -- text, PR curves, custom scalars ---------------------------------------------------------

    def _add_text(self, tag: str, text_string: str, global_step: Optional[int] = None,
                  walltime: Optional[float] = None) -> None:
        """add_text's general path (SummaryWriter.add_text is native, csrc/bindings/fastcall.h): log a
        string, rendered as Markdown by TensorBoard, under ``<tag>/text_summary``."""
        text_string = to_str(text_string, "text_string")
        tag = to_joined_str(tag, "tag")  # the stock writer appends "/text_summary"
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        self._main().push_text(tag, text_string, step, wall_time)

    def add_pr_curve(self, tag: str, labels: Any, predictions: Any, global_step: Optional[int] = None,
                     num_thresholds: int = 127, weights: Any = None,
                     walltime: Optional[float] = None) -> None:
        """Log a precision-recall curve from ground-truth ``labels`` (0/1) and ``predictions``
        (probabilities in [0, 1]), at up to 127 thresholds; ``weights`` (optional) weighs each
        element. The curve is computed on the background thread, exactly as the stock writer
        computes it."""
        tag = to_tag(tag)
        labels = make_np(labels, "labels")
        predictions = make_np(predictions, "predictions")
        n = _thresholds(num_thresholds)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        if predictions.dtype in (np.float32, np.float64):
            scored = np.ascontiguousarray(predictions).reshape(-1)
        else:
            # Other dtypes keep the stock arithmetic (float16 multiplies in float16): the bucket
            # indices are computed here, and the core takes int32 as indices.
            with np.errstate(all="ignore"):
                scored = np.ascontiguousarray(np.int32(np.floor(predictions * (n - 1)))).reshape(-1)
        weight = 1.0
        weight_array = None
        if weights is not None:
            weight_array = _array(weights, "weights")
            if weight_array.ndim == 0:
                weight, weight_array = _number(weight_array, "weights"), None
        try:
            shape = labels.shape if weight_array is None else np.broadcast_shapes(labels.shape, weight_array.shape)
        except ValueError:
            shape = None
        if shape is None or tuple(shape) != tuple(predictions.shape):
            raise ArgumentShapeError(
                f"labels: the labels (times the weights) must have the shape of the predictions, "
                f"{tuple(predictions.shape)}")
        labels = _numeric(np.broadcast_to(labels, shape), "labels")
        if weight_array is not None:
            weight_array = _numeric(np.broadcast_to(weight_array, shape), "weights")
        self._main().push_pr_curve(tag, scored, labels, weight_array, weight, n, step, wall_time)

    def add_pr_curve_raw(self, tag: str, true_positive_counts: Any, false_positive_counts: Any,
                         true_negative_counts: Any, false_negative_counts: Any, precision: Any,
                         recall: Any, global_step: Optional[int] = None, num_thresholds: int = 127,
                         weights: Any = None, walltime: Optional[float] = None) -> None:
        """Log a precision-recall curve from counts and rates computed elsewhere (six sequences
        of the same length; ``weights`` is accepted and ignored, as in the stock writer)."""
        tag = to_tag(tag)
        rows = [_array(v, name) for v, name in ((true_positive_counts, "true_positive_counts"),
                                               (false_positive_counts, "false_positive_counts"),
                                               (true_negative_counts, "true_negative_counts"),
                                               (false_negative_counts, "false_negative_counts"),
                                               (precision, "precision"), (recall, "recall"))]
        if any(r.ndim != 1 for r in rows) or len({r.shape for r in rows}) != 1:
            raise _CountsShapeError("true_positive_counts ... recall: must be six 1-D sequences of one length")
        try:
            data = np.stack(rows).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"true_positive_counts ... recall: must hold numbers ({exc})") from None
        n = min(operator.index(num_thresholds), _MAX_THRESHOLDS)
        if n < 0:
            raise ValueError(f"num_thresholds: must not be negative, got {num_thresholds}")
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        content = _proto().PrCurvePluginData(version=0, num_thresholds=n).SerializeToString()
        summary, value = _summary_value(tag, "pr_curves", content)
        _set_floats(value.tensor, data, data.shape)
        self._main().push_summary(summary.SerializeToString(), step, wall_time)

    def add_custom_scalars(self, layout: Dict[str, Dict[str, List[Any]]]) -> None:
        """Lay out charts of the Custom Scalars dashboard:
        ``{category: {chart title: ["Multiline" or "Margin", tags]}}``. Call it once per run."""
        proto = _proto()
        if not hasattr(layout, "items"):  # any mapping, as the stock writer asks only that
            raise ArgumentAttributeError(f"layout: expected a dict of categories, got {type(layout).__name__}")
        message = proto.Layout()
        for category_title, charts in layout.items():
            if not hasattr(charts, "items"):
                raise ArgumentAttributeError(
                    f"layout[{category_title!r}]: expected a dict of charts, got {type(charts).__name__}")
            category = message.category.add(title=to_tag(category_title, "layout key"))
            for chart_title, chart in charts.items():
                if not isinstance(chart, (list, tuple)) or len(chart) < 2:  # raised as torch raises it
                    error = ArgumentIndexError if isinstance(chart, (list, tuple)) else ArgumentValueTypeError
                    raise error(f"layout[{category_title!r}][{chart_title!r}]: expected [chart type, tags]")
                kind, tags = chart[0], chart[1]
                if isinstance(tags, (str, bytes)) or not hasattr(tags, "__iter__"):
                    raise TypeError(f"layout[{category_title!r}][{chart_title!r}]: tags must be a list of str")
                # A Margin chart's tags are fields of their own (None leaves one unset); a
                # Multiline chart's are one repeated field, which refuses None.
                tags = [to_joined_str(t, "layout tag") if t is None and kind != "Margin" else to_tag(t, "layout tag")
                        for t in tags]
                entry = category.chart.add(title=to_tag(chart_title, "layout key"))
                if kind == "Margin":
                    if len(tags) != 3:
                        raise ArgumentShapeError("len(tags) != 3")
                    entry.margin.series.add(value=tags[0], lower=tags[1], upper=tags[2])
                else:
                    entry.multiline.tag.extend(tags)
        summary, value = _summary_value("custom_scalars__config__", "custom_scalars")
        value.tensor.dtype = proto.DT["DT_STRING"]
        value.tensor.tensor_shape.SetInParent()  # present and empty, as the stock writer writes it
        value.tensor.string_val.append(message.SerializeToString())
        self._main().push_summary(summary.SerializeToString(), 0, time.time())

    def add_custom_scalars_multilinechart(self, tags: List[str], category: str = "default",
                                          title: str = "untitled") -> None:
        """One Custom Scalars chart overlaying the series ``tags``."""
        self.add_custom_scalars({category: {title: ["Multiline", tags]}})

    def add_custom_scalars_marginchart(self, tags: List[str], category: str = "default",
                                       title: str = "untitled") -> None:
        """One Custom Scalars chart of a value and its lower and upper bounds (three tags)."""
        if len(tags) != 3:
            raise ArgumentShapeError(f"Expected 3 tags, got {len(tags)}.")
        self.add_custom_scalars({category: {title: ["Margin", tags]}})

    # -- hyperparameters -------------------------------------------------------------------------

    def add_hparams(self, hparam_dict: Dict[str, Any], metric_dict: Dict[str, Any],
                    hparam_domain_discrete: Optional[Dict[str, List[Any]]] = None,
                    run_name: Optional[str] = None, global_step: Optional[int] = None) -> None:
        """Log a set of hyperparameters and the metrics they reached, as a run of its own
        (``<log_dir>/<run_name or the current time>``) for the HParams dashboard."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        summaries = _hparams_summaries(hparam_dict, metric_dict, hparam_domain_discrete)
        step = to_step(global_step)
        metrics = [(to_tag(k, "metric_dict key"), v) for k, v in metric_dict.items()]
        from ._convert import to_scalar

        values = [(k, to_scalar(v, f"metric_dict[{k!r}]")) for k, v in metrics]
        if not run_name:
            run_name = str(time.time())
        logdir = os.path.join(self._get_file_writer().get_logdir(), run_name)
        # A run of its own, as in the stock writer, with the writer's defaults; the worker
        # creates its directory and file.
        run = self._new_file_writer(logdir, defaults=True)
        self._hparams_writers.append(run)
        core = run._ready()
        for summary in summaries:
            core.push_summary(summary, step, time.time())
        for key, value in values:
            core.push_scalar(key, value, step, time.time(), 0)
        # Closed once written, as the stock writer closes it, but without waiting: flush() and
        # close() wait for it (and raise what failed).
        run.close_later()

    # -- embeddings ------------------------------------------------------------------------------

    def add_embedding(self, mat: Any, metadata: Optional[List[Any]] = None, label_img: Any = None,
                      global_step: Optional[int] = None, tag: str = "default",
                      metadata_header: Optional[List[str]] = None) -> None:
        """Save ``mat`` (one row per data point) with optional ``metadata`` labels and
        ``label_img`` thumbnails ``(N, C, H, W)`` for the Projector dashboard: tensors.tsv,
        metadata.tsv and sprite.png in ``<log_dir>/<step>/<tag>/``, and projector_config.pbtxt
        in the log dir. The files are written by the background thread (``flush()`` waits for
        them)."""
        from google.protobuf import text_format

        mat = make_np(mat, "mat")
        tag = to_str(tag, "tag")
        if global_step is None:
            global_step = 0
        step_text = str(global_step).zfill(5)
        subdir = f"{step_text}/{_encode_tag(tag)}"
        if metadata is not None and mat.shape[:1] != (len(metadata),):
            raise ArgumentShapeError("#labels should equal with #data points")
        images = None
        if isinstance(label_img, (list, tuple)):  # (the stock writer asks it for its shape)
            raise ArgumentAttributeError(f"label_img: expected an array or tensor, got {type(label_img).__name__}")
        if label_img is not None:
            images = make_np(label_img, "label_img")
            if images.ndim != 4:
                raise ArgumentShapeError(f"label_img: expected (N, C, H, W) images, got shape {images.shape}")
            if mat.shape[:1] != images.shape[:1]:
                raise ArgumentShapeError("#images should equal with #data points")
        if mat.ndim != 2:
            raise ArgumentShapeError("mat should be 2D, where mat.size(0) is the number of data points")
        tsv_text = _metadata_tsv(metadata, metadata_header) if metadata is not None else None
        file_writer = self._get_file_writer()
        log_dir = file_writer._local_dir  # the log dir on this machine (a remote run's spool)
        save_path = os.path.join(log_dir, subdir)
        if os.path.isdir(save_path):
            print("warning: Embedding dir exists, did you set global_step for add_embedding()?")
        elif os.path.exists(save_path):
            raise NotADirectoryError(f"Path: `{save_path}` exists, but is a file. Cannot proceed.")
        else:
            os.makedirs(save_path)
        core = self._main()
        if tsv_text is not None:
            core.write_file(worker_path(os.path.join(save_path, "metadata.tsv")), tsv_text.encode("utf-8"))
        if images is not None:
            if images.shape[1] not in (1, 3):
                raise ArgumentShapeError("label_img: images must have 1 or 3 channels")
            columns = math.ceil(images.shape[0] ** 0.5)
            core.write_sprite(worker_path(os.path.join(save_path, "sprite.png")),
                              _for_core(images).reshape(images.shape), columns)
        tensors_path = worker_path(os.path.join(save_path, "tensors.tsv"))
        if mat.shape[0] == 0:
            pass  # the stock writer's file is made by its first write, so no rows make no file
        elif mat.dtype in _CORE_DTYPES:
            core.write_tsv(tensors_path, np.ascontiguousarray(mat))
        else:  # complex, object and text matrices: str() of each element, as the stock writer
            lines = "".join("\t".join(str(x.item()) for x in row) + "\n" for row in mat)
            core.write_file(tensors_path, lines.encode("utf-8"))
        proto = _proto()
        if not hasattr(self, "_projector_config"):
            self._projector_config = proto.ProjectorConfig()
        info = self._projector_config.embeddings.add(tensor_name=f"{tag}:{step_text}",
                                                     tensor_path=posixpath.join(subdir, "tensors.tsv"))
        if metadata is not None:
            info.metadata_path = posixpath.join(subdir, "metadata.tsv")
        if images is not None:
            info.sprite.image_path = posixpath.join(subdir, "sprite.png")
            info.sprite.single_image_dim.extend([images.shape[3], images.shape[2]])
        config = text_format.MessageToString(self._projector_config)
        core.write_file(worker_path(os.path.join(log_dir, "projector_config.pbtxt")), config.encode("utf-8"))
        # A remote run uploads these once the worker has written them.
        file_writer._side_files([os.path.join(save_path, name) for name, wanted in
                                 (("metadata.tsv", tsv_text is not None), ("sprite.png", images is not None),
                                  ("tensors.tsv", mat.shape[0] > 0)) if wanted] +
                                [os.path.join(log_dir, "projector_config.pbtxt")])

    # -- audio, video, meshes, tensors -----------------------------------------------------------

    def add_audio(self, tag: str, snd_tensor: Any, global_step: Optional[int] = None,
                  sample_rate: int = 44100, walltime: Optional[float] = None) -> None:
        """Log a mono clip: values in [-1, 1] (clipped otherwise), stored as 16-bit WAV, encoded
        on the background thread."""
        tag = to_tag(tag)
        samples = make_np(snd_tensor, "snd_tensor").squeeze()
        if samples.size == 0:
            raise ValueError("snd_tensor: holds no samples")
        try:
            loud = samples.max() > 1 or samples.min() < -1  # no temporary array, unlike abs()
        except TypeError:
            raise TypeError(f"snd_tensor: expected numbers, got dtype {samples.dtype}") from None
        if loud:
            print("warning: audio amplitude out of range, auto clipped.")
        if samples.ndim != 1:
            raise ArgumentShapeError("input tensor should be 1 dimensional.")
        try:
            rate = _number(sample_rate, "sample_rate")
        except ArgumentValueTypeError as exc:
            raise _SampleRateTypeError(str(exc)) from None
        if not rate > 0.5:  # (rounded, 0 samples per second)
            raise _SampleRateError(f"sample_rate: must be a positive number of samples per second, got {sample_rate!r}")
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        if samples.dtype not in (np.float32, np.float64):
            # Other dtypes multiply in their own precision (float16 in float16): the 16-bit samples
            # are made here, and the core takes int16 as they are. Integers are widened first
            # (numpy refuses int8 and uint8 times 32767, which fails the stock writer).
            if samples.dtype.kind == "u":  # (uint64 past 2**63 would wrap around in int64)
                samples = np.minimum(samples, 1)
            if samples.dtype.kind in "biu":
                samples = samples.astype(np.int64)
            with np.errstate(all="ignore"):
                samples = (samples.clip(-1, 1) * np.iinfo(np.int16).max).astype(np.int16)
        self._main().push_audio(tag, np.ascontiguousarray(samples), rate, step, wall_time)

    def add_video(self, tag: str, vid_tensor: Any, global_step: Optional[int] = None, fps: int = 4,
                  walltime: Optional[float] = None) -> None:
        """Log a batch of videos ``(N, T, C, H, W)`` (uint8, or float in [0, 1]) as one animated
        GIF, the batch tiled in a grid; C is 1 (grey), 3 (RGB), or 2 and 4 with alpha, which the
        GIF drops, as the stock writer's does. The GIF is encoded on the background thread (no
        moviepy needed): exact for frames of at most 256 colours."""
        tag = to_tag(tag)
        video = make_np(vid_tensor, "vid_tensor")
        if video.ndim != 5:
            raise ArgumentShapeError(f"vid_tensor: expected (N, T, C, H, W), got shape {video.shape}")
        rate = _number(fps, "fps")
        if rate == 0:
            raise ArgumentZeroDivisionError("fps: must be positive, got 0")
        frames = _video_frames(video)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        self._main().push_video(tag, frames, rate, step, wall_time)

    def add_mesh(self, tag: str, vertices: Any, colors: Any = None, faces: Any = None,
                 config_dict: Optional[Dict[str, Any]] = None, global_step: Optional[int] = None,
                 walltime: Optional[float] = None) -> None:
        """Log a 3-D mesh or point cloud: ``vertices`` ``[B, N, 3]`` and optional ``colors``
        and ``faces`` of the same layout, for TensorBoard's mesh plugin."""
        proto = _proto()
        tag = to_tag(tag)
        # (values, MeshPluginData.ContentType, its name, the argument), in the stock order.
        parts = [p for p in ((vertices, 1, "VERTEX", "vertices"), (faces, 2, "FACE", "faces"),
                             (colors, 3, "COLOR", "colors")) if p[0] is not None]
        arrays = []
        for value, _, _, argument in parts:
            a = _array(value, argument)
            if a.dtype.kind in "USV":
                raise ArgumentValueTypeError(f"{argument}: expected numbers, got {a.dtype} values")
            if a.ndim != 3:
                raise ArgumentShapeError(f"{argument}: expected a (B, N, 3) array, got shape {a.shape}")
            arrays.append(a)
        components = 0
        for _, kind, _, _ in parts:
            components |= 1 << kind
        json_config = "{}" if config_dict is None else json.dumps(config_dict, sort_keys=True)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        summary = proto.Summary()
        for (_, kind, name, argument), a in zip(parts, arrays):
            content = proto.MeshPluginData(version=0, name=tag, content_type=kind, components=components,
                                           shape=list(a.shape), json_config=json_config)
            value = summary.value.add(tag=f"{tag}_{name}")
            value.metadata.plugin_data.plugin_name = "mesh"
            value.metadata.plugin_data.content = content.SerializeToString()
            try:
                _set_floats(value.tensor, a.astype(np.float64), a.shape)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{argument}: expected numbers ({exc})") from None
        self._main().push_summary(summary.SerializeToString(), step, wall_time)

    def add_tensor(self, tag: str, tensor: Any, global_step: Optional[int] = None,
                   walltime: Optional[float] = None) -> None:
        """Log a whole array or tensor as a TensorProto (its dtype, shape and every value)."""
        tag = to_tag(tag)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        summary, value = _summary_value(tag, "tensor")
        _fill_tensor_proto(value.tensor, tensor, tag)
        self._main().push_summary(summary.SerializeToString(), step, wall_time)

    # -- graphs ----------------------------------------------------------------------------------

    def add_graph(self, model: Any, input_to_model: Any = None, verbose: bool = False,
                  use_strict_trace: bool = True) -> None:
        """Trace ``model`` (a torch module) with ``input_to_model`` and log its graph for the
        Graphs dashboard. Needs torch (for the tracing), not tensorboard."""
        from ._graph import traced_graph

        graph, run_metadata = traced_graph(model, input_to_model, verbose, use_strict_trace)
        self._get_file_writer().add_graph((graph, run_metadata))

    def add_onnx_graph(self, prototxt: str) -> None:
        """Log the graph of an ONNX model file (no onnx package needed)."""
        from ._graph import onnx_graph

        self._get_file_writer().add_onnx_graph(onnx_graph(prototxt))


def _thresholds(num_thresholds: Any) -> int:
    try:
        n = operator.index(num_thresholds)
    except TypeError:
        raise TypeError(f"num_thresholds: expected an int, got {num_thresholds!r}") from None
    if n < 1:
        raise ValueError(f"num_thresholds: must be at least 1, got {n}")
    return min(n, _MAX_THRESHOLDS)


def _metadata_tsv(metadata: Any, header: Any) -> str:
    """metadata.tsv as the stock writer writes it: str() of each item, or with a header, of each
    item of each row joined by tabs; no escaping of tabs or newlines."""
    if not header:
        return "\n".join(str(item) for item in metadata) + "\n"
    rows = list(metadata)
    if not rows or len(header) != len(rows[0]):
        raise ArgumentShapeError("len of header must be equal to the number of columns in metadata")
    return "\n".join("\t".join(str(e) for e in row) for row in [header] + rows) + "\n"


def _hparams_summaries(hparam_dict: Dict[str, Any], metric_dict: Dict[str, Any],
                       domains: Any) -> List[bytes]:
    """The three serialized Summaries of add_hparams (experiment, session start, session end)."""
    proto = _proto()
    domains = domains or {}
    if not isinstance(domains, dict):
        raise TypeError("parameter: hparam_domain_discrete should be a dictionary, nothing logged.")
    for k, v in domains.items():
        if k not in hparam_dict or not isinstance(v, list) or not all(isinstance(d, type(hparam_dict[k])) for d in v):
            raise TypeError(f"parameter: hparam_domain_discrete[{k}] should be a list of same type as hparam_dict[{k}].")
    experiment_data = proto.HParamsPluginData(version=0)
    start_data = proto.HParamsPluginData(version=0)
    experiment, start = experiment_data.experiment, start_data.session_start_info
    experiment.SetInParent()  # present even when empty, as the stock writer writes them
    start.SetInParent()
    for k, v in hparam_dict.items():
        if v is None:
            continue
        info = experiment.hparam_infos.add(name=to_tag(k, "hparam_dict key"))
        if isinstance(v, (int, float)) or _is_torch_tensor(v):
            try:
                number = float(make_np(v, f"hparam_dict[{k!r}]").reshape(-1)[0]) if _is_torch_tensor(v) else float(v)
            except OverflowError:
                raise ArgumentOverflowError(f"hparam_dict[{k!r}]: {v} is too large for a float") from None
            start.hparams[k].number_value = number
            info.type = proto.HPARAM_TYPE["DATA_TYPE_FLOAT64"]
            if k in domains and not _is_torch_tensor(v):
                info.domain_discrete.SetInParent()  # set even when empty, as the stock writer sets it
                for d in domains[k]:
                    info.domain_discrete.values.add().number_value = d
        elif isinstance(v, str):
            start.hparams[k].string_value = v
            info.type = proto.HPARAM_TYPE["DATA_TYPE_STRING"]
            if k in domains:
                info.domain_discrete.SetInParent()
                for d in domains[k]:
                    info.domain_discrete.values.add().string_value = d
        else:
            raise ValueError("value should be one of int, float, str, bool, or torch.Tensor")
    for k in metric_dict:
        experiment.metric_infos.add().name.tag = to_tag(k, "metric_dict key")
    return [_hparams_summary("_hparams_/experiment", experiment_data),
            _hparams_summary("_hparams_/session_start_info", start_data),
            _session_end_summary()]


def _hparams_summary(tag: str, data: Any) -> bytes:
    return _summary_value(tag, "hparams", data.SerializeToString(deterministic=True))[0].SerializeToString()


@functools.lru_cache(maxsize=None)
def _session_end_summary() -> bytes:
    """The last of the three, the same every time: the session ended with STATUS_SUCCESS."""
    data = _proto().HParamsPluginData(version=0)
    data.session_end_info.status = 1
    return _hparams_summary("_hparams_/session_end_info", data)


def _video_frames(video: np.ndarray) -> np.ndarray:
    """The stock writer's (N, T, C, H, W) to (T, rows x H, cols x W, C) uint8 frames: uint8 input
    over 255 in float32, the batch padded with black videos to a power of two and tiled (rows =
    2 ** ((bit_length(N) - 1) // 2)), then times 255, clipped and truncated to uint8."""
    b, t, c, h, w = video.shape
    if b == 0:
        raise ArgumentValueTypeError("vid_tensor: the batch holds no videos")  # TypeError there
    if t == 0:
        raise ArgumentIndexError("vid_tensor: the videos hold no frames (T = 0)")
    v = np.float32(video) / 255.0 if video.dtype == np.uint8 else video
    if b & (b - 1):
        v = np.concatenate((v, np.zeros((2 ** b.bit_length() - b, t, c, h, w))), axis=0)
    rows = 2 ** ((b.bit_length() - 1) // 2)
    cols = v.shape[0] // rows
    v = v.reshape(rows, cols, t, c, h, w).transpose(2, 0, 4, 1, 5, 3).reshape(t, rows * h, cols * w, c)
    try:
        with np.errstate(all="ignore"):
            return np.ascontiguousarray((v.astype(np.float32) * 255).clip(0, 255).astype(np.uint8))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"vid_tensor: expected numbers, got dtype {video.dtype} ({exc})") from None


# numpy dtype -> (DataType name, TensorProto field) for add_tensor, the stock writer's table.
_TENSOR_FIELDS = {
    np.dtype(np.float16): ("DT_HALF", "half_val"),
    np.dtype(np.float32): ("DT_FLOAT", "float_val"),
    np.dtype(np.float64): ("DT_DOUBLE", "double_val"),
    np.dtype(np.int8): ("DT_INT8", "int_val"),
    np.dtype(np.int16): ("DT_INT16", "int_val"),
    np.dtype(np.int32): ("DT_INT32", "int_val"),
    np.dtype(np.int64): ("DT_INT64", "int64_val"),
    np.dtype(np.uint8): ("DT_UINT8", "uint32_val"),
    np.dtype(np.bool_): ("DT_BOOL", "bool_val"),
    np.dtype(np.complex64): ("DT_COMPLEX64", "scomplex_val"),
    np.dtype(np.complex128): ("DT_COMPLEX128", "dcomplex_val"),
}


def _fill_tensor_proto(message: Any, tensor: Any, tag: str) -> None:
    """TensorProto of an array or tensor as the stock add_tensor writes it: half precision as the
    int32 bit patterns of the float32 values (a stock quirk), complex as real, imag pairs."""
    proto = _proto()
    bfloat16 = False
    if _is_torch_tensor(tensor):
        import torch

        if tensor.dtype == torch.bfloat16:
            bfloat16 = True
            tensor = tensor.float()
        elif tensor.dtype in (torch.complex32,):
            raise ValueError('unknown enum label "DT_COMPLEX32"')
    a = make_np(tensor, "tensor")
    if a.size * a.dtype.itemsize >= 1 << 31:
        raise ValueError("tensor is bigger than protocol buffer's hard limit of 2GB in size")
    dtype = a.dtype.newbyteorder("=")
    if bfloat16:
        name, field = "DT_BFLOAT16", "half_val"
    elif dtype in _TENSOR_FIELDS:
        name, field = _TENSOR_FIELDS[dtype]
    else:
        raise ValueError(f"tensor: {tag} has unsupported tensor dtype {a.dtype}")
    message.dtype = proto.DT[name]
    message.tensor_shape.SetInParent()  # present even for a 0-d tensor, as the stock writer has it
    for size in a.shape:
        message.tensor_shape.dim.add(size=int(size))
    flat = a.reshape(-1)
    if field == "half_val":
        values = flat.astype(np.float32).view(np.int32).tolist()
    elif field in ("scomplex_val", "dcomplex_val"):
        values = flat.view(flat.real.dtype).tolist()
    else:
        values = flat.tolist()
    getattr(message, field).extend(values)
