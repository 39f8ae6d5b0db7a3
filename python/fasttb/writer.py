"""The drop-in ``SummaryWriter`` and the ``FileWriter`` it writes through.

The caller's thread only validates, converts, copies and queues; encoding, histogram bucketing,
PNG encoding, framing, checksums and file I/O happen in ``fasttb._core`` on one background
thread shared by every writer of the process.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core, _lifecycle
from ._convert import ArgumentOverflowError, make_np, to_scalar, to_step, to_tag, to_walltime
from ._histogram import histogram_request
from ._image import (figure_to_chw_uint8, image_to_hwc_uint8, image_with_boxes_to_hwc_uint8,
                     images_to_hwc_uint8, native_layout)
from ._kinds import KindsMixin

PathLike = Union[str, "os.PathLike[str]"]

# Event file names end in a process-wide counter, as in tensorboard's writer. A forked child
# inherits the value, and its pid keeps its names apart from the parent's.
_file_counter = itertools.count()


def _event_file_name(suffix: str) -> str:
    return (
        f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
        f"{os.getpid()}.{next(_file_counter)}{suffix}"
    )


class FileWriter:
    """Writes events to one event file in ``log_dir``, through the background worker.

    The same shape as ``torch.utils.tensorboard.FileWriter``: ``add_event``, ``add_summary``,
    ``get_logdir``, ``flush``, ``close`` and ``reopen``. ``max_queue`` is accepted for
    compatibility; fasttb bounds its one process-wide queue in bytes instead (see
    ``fasttb.set_queue_limit``). With ``on_full="drop"``, records that find the queue full are
    counted and dropped instead of waiting for room.
    """

    def __init__(
        self,
        log_dir: PathLike,
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str = "",
        *,
        on_full: str = "block",
        later: bool = False,
        source_metadata: bool = True,
    ) -> None:
        if on_full not in ("block", "drop"):
            raise ValueError(f"on_full: expected 'block' or 'drop', got {on_full!r}")
        if not isinstance(filename_suffix, str):
            raise TypeError(f"filename_suffix: expected a str, got {type(filename_suffix).__name__}")
        if "\0" in filename_suffix:
            raise ValueError("filename_suffix: embedded null byte")
        try:
            # Any number, as in the stock writer: 0 or less writes on every look at the clock.
            flush_secs = float(flush_secs)
        except (TypeError, ValueError):
            raise TypeError(f"flush_secs: expected a number of seconds, got {flush_secs!r}") from None
        self._log_dir = str(log_dir)
        self._max_queue = max_queue
        self._flush_secs = flush_secs
        self._suffix = filename_suffix
        self._drop = on_full == "drop"
        self._later = later  # fasttb's own runs: the worker creates the directory and the file
        self._source_metadata = source_metadata  # False: tensorboardX's first record
        self._open()

    def _open(self) -> None:
        if not self._later:
            os.makedirs(self._log_dir, exist_ok=True)
        while True:
            path = os.path.join(self._log_dir, _event_file_name(self._suffix))
            try:
                core = _core.EventWriter(os.fsencode(path), self._flush_secs, self._drop, time.time(),
                                         self._later, self._source_metadata)
            except FileExistsError:
                continue  # another writer (maybe tensorboard's, in this process) took the name
            break
        self._core = core
        self._closed = False
        self._close_pending = False  # closed by close_later(), not yet waited for
        _lifecycle.track(self)

    def _ready(self) -> "_core.EventWriter":
        """The core writer to queue to, after the checks every record needs."""
        if self._closed:
            raise OSError("Writer is closed")
        if self._core.stale:
            # Inherited through fork: the parent's file is left alone and this process gets
            # its own file in the same directory.
            self._open()
        return self._core

    def get_logdir(self) -> str:
        """The directory this writer's event file is in."""
        return self._log_dir

    @property
    def path(self) -> str:
        """The path of the current event file."""
        return os.fsdecode(self._core.path)

    def add_event(self, event: Any, step: Optional[int] = None, walltime: Optional[float] = None) -> None:
        """Write a protobuf ``Event``, setting its ``wall_time`` (now unless ``walltime`` is
        given) and, when ``step`` is given, its ``step``."""
        event.wall_time = time.time() if walltime is None else walltime
        if step is not None:
            event.step = int(step)
        self._ready().push_event(event.SerializeToString())

    def add_summary(self, summary: Any, global_step: Optional[int] = None, walltime: Optional[float] = None) -> None:
        """Write a protobuf ``Summary`` as an event at ``global_step``."""
        wall_time = to_walltime(walltime)
        step = to_step(global_step)
        self._ready().push_summary(summary.SerializeToString(), step, wall_time)

    def add_graph(self, graph_profile: Any, walltime: Optional[float] = None) -> None:
        """Write a ``(GraphDef, RunMetadata)`` pair as the stock writer does: a ``graph_def``
        event, then a ``tagged_run_metadata`` event tagged ``step1``."""
        graph, run_metadata = graph_profile
        from . import proto

        self.add_event(proto.Event(graph_def=graph.SerializeToString(deterministic=True)), None, walltime)
        tagged = proto.TaggedRunMetadata(tag="step1", run_metadata=run_metadata.SerializeToString(deterministic=True))
        self.add_event(proto.Event(tagged_run_metadata=tagged), None, walltime)

    def add_onnx_graph(self, graph: Any, walltime: Optional[float] = None) -> None:
        """Write a ``GraphDef`` as a ``graph_def`` event."""
        from . import proto

        self.add_event(proto.Event(graph_def=graph.SerializeToString(deterministic=True)), None, walltime)

    def flush(self) -> None:
        """Return once every event added before the call is written to the OS."""
        if not self._closed and not self._core.stale:
            self._core.flush()

    def close(self) -> None:
        """Write everything still queued and close the file. Calling it again does nothing."""
        if self._closed:
            if self._close_pending:  # wait for what close_later() queued
                self._close_pending = False
                if not self._core.stale:
                    self._core.close()
            return
        self._closed = True
        if not self._core.stale:
            self._core.close()

    def close_later(self) -> None:
        """Close the file once the worker has written what is queued for it, without waiting;
        ``close()`` then waits for that and raises what failed. fasttb only."""
        if not self._closed:
            self._closed = self._close_pending = True
            if not self._core.stale:
                self._core.close(wait=False)

    def reopen(self) -> None:
        """Open a new event file in the same directory after ``close()``."""
        if self._closed:
            self._open()

    def stats(self) -> Dict[str, int]:
        """Counters of this file: records and bytes written, dropped, stalls, lost."""
        return self._core.stats()


class SummaryWriter(_core.NativeWriter, KindsMixin):
    """Writes TensorBoard event files: a drop-in replacement for
    ``torch.utils.tensorboard.SummaryWriter``.

    Args:
        log_dir: The run directory. Defaults to ``runs/<MonDD_HH-MM-SS>_<hostname><comment>``.
        comment: Appended to the default ``log_dir``; ignored when ``log_dir`` is given.
        purge_step: When resuming a run that crashed at step ``T + X``, pass ``T``: TensorBoard
            then discards the run's events at steps ``>= T`` written before this file.
        max_queue: Accepted for compatibility. fasttb queues every writer's records in one
            process-wide queue bounded in bytes (``fasttb.set_queue_limit``).
        flush_secs: Longest time a record may wait in memory while the worker is busy; an idle
            worker writes to the OS as soon as it has drained the queue.
        filename_suffix: Appended to the name of every event file this writer creates.
        on_full: ``"block"`` (default) waits for room when the queue is full, losing nothing;
            ``"drop"`` drops the record and counts it in ``stats()["dropped"]``. fasttb only.
    """

    def __init__(
        self,
        log_dir: Optional[PathLike] = None,
        comment: str = "",
        purge_step: Optional[int] = None,
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str = "",
        *,
        on_full: str = "block",
    ) -> None:
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = log_dir
        self.purge_step = purge_step
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self._on_full = on_full
        self.file_writer: Optional[FileWriter] = None
        self.all_writers: Optional[Dict[str, FileWriter]] = None
        self._hparams_writers: List[FileWriter] = []  # add_hparams runs, closed with this writer
        self._closed_totals: Dict[str, int] = {}  # counters of the files close() let go of
        self._get_file_writer()

    # -- writers -------------------------------------------------------------------------------

    def _new_file_writer(self, log_dir: PathLike, defaults: bool = False) -> FileWriter:
        """A file writer with this writer's settings (``defaults``: the stock defaults, as the
        stock add_hparams gives its runs; the worker then creates its directory and file)."""
        if defaults:
            return FileWriter(log_dir, later=True)
        return FileWriter(log_dir, self.max_queue, self.flush_secs, self.filename_suffix, on_full=self._on_full)

    def _get_file_writer(self) -> FileWriter:
        """The main file writer, created again if the writer was closed."""
        if self.all_writers is None or self.file_writer is None:
            self.file_writer = self._new_file_writer(self.log_dir)
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
            core = self.file_writer._ready()
            if self.purge_step is not None:
                core.push_purge_markers(to_step(self.purge_step, "purge_step"), time.time(), time.time())
                self.purge_step = None
            _core.set_scalar_target(self, core)
        return self.file_writer

    def _main(self) -> "_core.EventWriter":
        """The main file's core writer, ready for a record (re-created after close or fork)."""
        core = self._get_file_writer()._ready()
        _core.set_scalar_target(self, core)  # a new file after fork, say
        return core

    def get_logdir(self) -> PathLike:
        """The run directory, exactly as it was given (or the default chosen)."""
        return self.log_dir

    @property
    def default_bins(self) -> list:
        """The 1549 bucket edges of ``bins="tensorflow"`` histograms."""
        return _core.default_edges()

    # -- scalars -------------------------------------------------------------------------------

    # add_scalar and add_text are native (csrc/fastcall.h): plain arguments are queued without a
    # Python frame; everything else arrives at _add_scalar below (_add_text in _kinds.py), with
    # the same arguments.
    add_scalar = _core.add_scalar
    add_text = _core.add_text

    def _add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """Log one number.

        Args:
            tag: Name of the series.
            scalar_value: A Python or numpy number, a numeric string, or an array or tensor
                with exactly one element.
            global_step: Step of the value (``int()`` is applied).
            walltime: Seconds since the epoch; now by default.
            new_style: Write a tensor-valued summary instead of ``simple_value``.
            double_precision: With ``new_style``, keep the value as a double. (TensorBoard's
                default data server does not show double-precision scalars.)
        """
        kind = (2 if double_precision else 1) if new_style else 0
        value = to_scalar(scalar_value)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        self._main().push_scalar(to_tag(tag), value, step, wall_time, kind)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Dict[str, Any],
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log several numbers under one chart: each key becomes a run of its own, in the
        directory ``<log_dir>/<main_tag with "/" as "_">_<key>``, holding the tag ``main_tag``."""
        main_tag = to_tag(main_tag, "main_tag")
        if not isinstance(tag_scalar_dict, dict):
            raise TypeError(f"tag_scalar_dict: expected a dict, got {type(tag_scalar_dict).__name__}")
        wall_time = to_walltime(walltime)
        step = to_step(global_step)
        values = [(to_tag(key, "tag_scalar_dict key"), to_scalar(v, f"tag_scalar_dict[{key!r}]"))
                  for key, v in tag_scalar_dict.items()]
        base = self._get_file_writer().get_logdir()
        writers = self.all_writers
        assert writers is not None
        prefix = main_tag.replace("/", "_")
        for key, value in values:
            run_dir = base + "/" + prefix + "_" + key
            writer = writers.get(run_dir)
            if writer is None:
                writer = writers[run_dir] = self._new_file_writer(run_dir)
            writer._ready().push_scalar(main_tag, value, step, wall_time, 0)

    # -- histograms ----------------------------------------------------------------------------

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: Optional[int] = None,
        bins: Any = "tensorflow",
        walltime: Optional[float] = None,
        max_bins: Optional[int] = None,
    ) -> None:
        """Log the distribution of ``values`` (an array or tensor of any shape).

        With the default ``bins="tensorflow"`` the values are copied and bucketed on the
        background thread into TensorBoard's 1548 exponential buckets; other ``bins`` (an int, a
        numpy estimator name such as ``"auto"``, or a sequence of edges) are computed with numpy.
        ``max_bins`` merges neighbouring buckets as the stock writer does.
        """
        tag = to_tag(tag)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        request = histogram_request(values, bins, max_bins)
        core = self._main()
        if request[0] == "native":
            core.push_histogram(tag, request[1], request[2], step, wall_time)
        else:
            mn, mx, num, total, squares, limits, counts = request[1]
            core.push_histogram_raw(tag, mn, mx, num, total, squares, limits, counts, step, wall_time)

    def add_histogram_raw(
        self,
        tag: str,
        min: float,
        max: float,
        num: float,
        sum: float,
        sum_squares: float,
        bucket_limits: Sequence[float],
        bucket_counts: Sequence[float],
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log a histogram computed elsewhere: its statistics, the right edge of every bucket
        and every bucket's count (the two sequences must have the same length)."""
        tag = to_tag(tag)
        limits = _doubles(bucket_limits, "bucket_limits")
        counts = _doubles(bucket_counts, "bucket_counts")
        if len(limits) != len(counts):
            raise ValueError("len(bucket_limits) != len(bucket_counts), see the document.")
        lo, hi, count, total, squares = (
            _double_or_zero(v, name) for v, name in
            ((min, "min"), (max, "max"), (num, "num"), (sum, "sum"), (sum_squares, "sum_squares")))
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        self._main().push_histogram_raw(tag, lo, hi, count, total, squares, limits, counts, step, wall_time)

    # -- images --------------------------------------------------------------------------------

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        dataformats: str = "CHW",
    ) -> None:
        """Log one image: an array or tensor laid out as ``dataformats`` (``CHW``, ``HWC``,
        ``HW``, ...), uint8 as is or float in [0, 1] (scaled by 255 and clipped). Grayscale is
        stored as RGB. The PNG is encoded on the background thread."""
        a = img_tensor if type(img_tensor) is np.ndarray else make_np(img_tensor, "img_tensor")
        planar = native_layout(a, dataformats)
        if planar is None:
            self._push_image(tag, image_to_hwc_uint8(a, dataformats), global_step, walltime)
            return
        # uint8 and float CHW, HWC or HW arrays need no numpy work: the core scales floats while it
        # copies, and the worker interleaves planes, so the caller reads its array once.
        tag = to_tag(tag)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        if planar:
            self._main().push_image_planes(tag, a.reshape((-1,) + a.shape[-2:]), step, wall_time)
        else:
            self._main().push_image(tag, a, step, wall_time)

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        dataformats: str = "NCHW",
    ) -> None:
        """Log a batch of images tiled into one grid image, 8 per row (``NCHW`` or ``NHWC``)."""
        self._push_image(tag, images_to_hwc_uint8(img_tensor, dataformats), global_step, walltime)

    def add_figure(
        self,
        tag: str,
        figure: Any,
        global_step: Optional[int] = None,
        close: bool = True,
        walltime: Optional[float] = None,
    ) -> None:
        """Render a matplotlib figure (or a list of figures, tiled) and log it as an image;
        the figure is closed afterwards unless ``close`` is false."""
        chw = figure_to_chw_uint8(figure, close)
        if isinstance(figure, list):
            pixels = images_to_hwc_uint8(chw, "NCHW")
        else:
            pixels = image_to_hwc_uint8(chw, "CHW")
        self._push_image(tag, pixels, global_step, walltime)

    def add_image_with_boxes(
        self,
        tag: str,
        img_tensor: Any,
        box_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        rescale: float = 1,
        dataformats: str = "CHW",
        labels: Optional[Any] = None,
    ) -> None:
        """Log an image with boxes drawn on it: ``box_tensor`` holds one
        ``(xmin, ymin, xmax, ymax)`` row per box, in pixels; ``labels`` (one string per box) are
        written on them. The image is then resized by ``rescale``. Drawing uses Pillow, on the
        caller's thread, exactly as the stock writer draws; the PNG is encoded on the worker."""
        pixels, height, width = image_with_boxes_to_hwc_uint8(
            img_tensor, box_tensor, rescale=rescale, dataformats=dataformats, labels=labels)
        self._push_image(tag, pixels, global_step, walltime, height, width)

    def _push_image(self, tag: Any, pixels: np.ndarray, global_step: Any, walltime: Any,
                    height: int = 0, width: int = 0) -> None:
        tag = to_tag(tag)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        self._main().push_image(tag, pixels, step, wall_time, height, width)

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Return once everything logged before the call is written to the OS."""
        self._settle_hparams_runs()
        if self.all_writers is None:
            return
        for writer in self.all_writers.values():
            writer.flush()

    def _settle_hparams_runs(self) -> None:
        """Wait for the add_hparams runs' files, which close as soon as they are written, and
        raise the first of their failures."""
        writers, self._hparams_writers = self._hparams_writers, []
        self._close_all(writers)

    def _close_all(self, writers: List[FileWriter]) -> None:
        """Close each writer, count its records as closed, and raise the first failure."""
        error: Optional[BaseException] = None
        for writer in writers:
            try:
                writer.close()
            except OSError as exc:  # close the others, then report the first failure
                error = error or exc
            for key, value in writer.stats().items():
                self._closed_totals[key] = self._closed_totals.get(key, 0) + value
        if error is not None:
            raise error

    def close(self) -> None:
        """Write everything still queued and close every file of this writer.

        Logging after ``close()`` starts a new event file, as the stock writer does. Calling
        ``close()`` again does nothing.
        """
        writers = self._hparams_writers
        self._hparams_writers = []
        if self.all_writers is not None:
            writers = list(self.all_writers.values()) + writers
        elif not writers:
            return
        self.file_writer = self.all_writers = None
        _core.set_scalar_target(self, None)
        self._close_all(writers)

    def stats(self) -> Dict[str, int]:
        """Counters for every file this writer has written, closed ones included (records,
        bytes, dropped, stalls, lost), and for the process-wide queue (queue_bytes,
        queue_high_water, queue_limit, items_processed)."""
        totals: Dict[str, int] = {"records": 0, "bytes": 0, "dropped": 0, "stalls": 0, "lost": 0}
        for key, value in self._closed_totals.items():
            totals[key] += value
        for writer in (self.all_writers or {}).values():
            for key, value in writer.stats().items():
                totals[key] += value
        totals.update(_core.engine_stats())
        return totals

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


def _doubles(values: Any, argument: str) -> list:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{argument}: expected a sequence of numbers, got {type(values).__name__}")
    if _is_array_like(values):
        return make_np(values, argument).astype(np.float64).ravel().tolist()
    try:
        return [float(v) for v in values]
    except TypeError:
        raise TypeError(f"{argument}: expected a sequence of numbers, got {values!r}") from None
    except OverflowError:
        raise ArgumentOverflowError(f"{argument}: holds a number too large for a float") from None


def _is_array_like(values: Any) -> bool:
    return isinstance(values, np.ndarray) or type(values).__module__.startswith("torch")


def _double_or_zero(value: Any, argument: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{argument}: expected a number, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{argument}: expected a number, got {value!r}") from None
    except OverflowError:
        raise ArgumentOverflowError(f"{argument}: {value!r} is too large for a float") from None
