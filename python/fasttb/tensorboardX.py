"""tensorboardX's dialect: a ``SummaryWriter`` that writes what ``tensorboardX.SummaryWriter``
(2.6.x) writes, call for call, on fasttb's background writer.

Change one import line::

    from fasttb.tensorboardX import SummaryWriter   # was: from tensorboardX import SummaryWriter

``fasttb.SummaryWriter`` follows torch's writer; tensorboardX differs from it in places, and this
class follows tensorboardX there:

* the constructor: ``logdir`` first (``log_dir`` is an alias), ``write_to_disk``,
  ``comet_config`` (accepted while comet is disabled, the default);
* tags of scalars, histograms, images and videos are rewritten as tensorboardX rewrites them
  (characters other than letters, digits, ``_ - . /`` become ``_``, leading ``/`` go);
* float images and videos are multiplied by 255 and cast to uint8 *without* clipping;
* ``add_scalar`` takes ``display_name`` and ``summary_description``; ``add_scalars`` puts each
  series in ``<logdir>/<main_tag>/<key>`` and keeps them for ``export_scalars_to_json``;
* ``add_hparams(hparam_dict, metric_dict, name=None, global_step=None)``, with booleans and
  callables as tensorboardX records them;
* ``add_images`` takes a list of images, ``add_audio`` stereo clips (``(L, 2)``),
  ``add_video`` a ``dataformats``; ``add_embedding`` appends to ``projector_config.pbtxt``;
  ``add_mesh``, ``add_graph`` and ``add_openvino_graph`` write tensorboardX's records;
* ``use_metadata(global_step=..., walltime=...)`` sets the step and time of the records logged
  inside it.

Only numpy and protobuf are needed: tensorboardX is never imported, torch only for torch tensors
and ``add_graph``, Pillow only for box labels, matplotlib only for ``add_figure``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import operator
import os
import posixpath
import re
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import _core, _device
from . import writer as _writer
from ._convert import (ArgumentAttributeError, ArgumentIndexError, ArgumentOverflowError, ArgumentShapeError,
                       ArgumentTypeError, ArgumentValueTypeError, ArgumentZeroDivisionError, make_np, to_joined_str,
                       to_step, to_tag, to_walltime, worker_path)
from ._image import EmptyBatchError, ImageFormatError, _layout, image_with_boxes_to_hwc_uint8

__all__ = ["SummaryWriter"]

PathLike = Union[str, "os.PathLike[str]"]

_log = logging.getLogger(__name__)

_Base = _writer.SummaryWriter
_native_add_scalar = _core.add_scalar
_native_add_text = _core.add_text

_COMET_DISABLED: Dict[str, Any] = {"disabled": True}
_MAX_SPRITE_SIDE = 8192  # pixels: what TensorBoard's projector loads (tensorboardX checks it)
_PCM_SCALE = 2.0 ** 31


# -- errors: each is also the type tensorboardX raises for the same input -------------------------


class ArgumentAssertionError(ValueError, AssertionError):
    """A call tensorboardX refuses with an ``AssertionError``."""


class ArgumentRuntimeError(ValueError, RuntimeError):
    """A value tensorboardX's audio encoder (libsndfile) refuses with a ``RuntimeError``."""


# -- conversions -----------------------------------------------------------------------------------


_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w\.]")
_clean_tags: Dict[str, str] = {}  # add_scalar's tags, cleaned once
_CLEAN_TAGS_MAX = 100_000


def clean_tag(tag: Any, argument: str = "tag") -> str:
    """A tag as tensorboardX rewrites it for scalars, histograms, images and videos: every
    character other than a letter, digit, ``_``, ``-``, ``.`` or ``/`` becomes ``_``, then
    leading slashes are dropped. ``None`` is the empty tag."""
    if tag is None:
        return ""
    if not isinstance(tag, str):
        raise TypeError(f"{argument}: expected a str, got {type(tag).__name__}")
    new = _INVALID_TAG_CHARACTERS.sub("_", tag).lstrip("/")
    if new != tag:
        _log.info("tag %r rewritten as %r (tensorboardX keeps letters, digits and _-./)", tag, new)
    return new


def _scalar_tag(tag: Any) -> str:
    """clean_tag, remembered for plain str tags (add_scalar's fast path looks them up)."""
    new = clean_tag(tag)
    if type(tag) is str and len(_clean_tags) < _CLEAN_TAGS_MAX:
        _clean_tags[tag] = new
    return new


def to_array(value: Any, argument: str = "value") -> np.ndarray:
    """A value as a numpy array by tensorboardX's rules: lists through ``np.array``, numpy arrays
    as they are, Python and numpy scalars as 0-d arrays, torch tensors copied to host memory, and
    chainer, mxnet, jax and paddle arrays converted. Anything else (tuples included) raises.
    tensorboardX looks for NaN in every array, in the sum of its elements, so text and dates
    raise, and so do object arrays unless that sum is a plain number: object arrays of floats and
    ints (pandas' ``.values`` of mixed columns) are taken, as float64; Decimal, Fraction, None
    and ints past 64 bits are not."""
    a = _to_array(value, argument)
    if a.dtype.kind == "O":
        try:
            np.isnan(np.sum(a))
            return a.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"{argument}: expected numbers, got objects that are not plain numbers") from None
    if a.dtype.kind in "USVMm":
        raise TypeError(f"{argument}: expected numbers, got {a.dtype} values")
    return a


def _to_array(value: Any, argument: str) -> np.ndarray:
    if isinstance(value, list):
        try:
            return np.array(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{argument}: the list is not an array ({exc})") from None
    if isinstance(value, np.ndarray):
        return make_np(value, argument)  # (np.matrix made a plain array)
    if np.isscalar(value):
        return np.array(value)
    kind = str(type(value))
    if "torch" in kind:
        return make_np(value, argument)
    if "chainer" in kind:
        import chainer  # type: ignore[import-not-found]

        return np.asarray(chainer.cuda.to_cpu(value.data))
    if "mxnet" in kind:
        return np.asarray(value.asnumpy())
    if "jax" in kind or "paddle" in kind:
        return np.array(value)
    raise ArgumentTypeError(
        f"{argument}: expected a number, list, numpy array or tensor, got {type(value).__name__}")


def to_float(value: Any, argument: str = "scalar_value") -> float:
    """One number, as tensorboardX reads a scalar: anything :func:`to_array` takes that holds
    exactly one element."""
    if type(value) is float:
        return value
    a = to_array(value, argument).squeeze()
    if a.ndim != 0:
        raise ArgumentShapeError(f"{argument}: expected a single number, got shape {tuple(a.shape)} "
                                 f"({a.size} elements)")
    try:
        return float(a)
    except TypeError as exc:
        raise TypeError(f"{argument}: cannot be logged as a number ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{argument}: cannot be logged as a number ({exc})") from None
    except OverflowError:
        raise ArgumentOverflowError(f"{argument}: {value!r} is too large for a float") from None


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """tensorboardX's pixel rule: uint8 as it is, anything else times 255 and cast to uint8,
    with no clipping (out-of-range values wrap as numpy's cast makes them)."""
    if a.dtype == np.uint8:
        return a
    try:
        with np.errstate(all="ignore"):
            return (a * 255.0).astype(np.uint8)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"img_tensor: expected numbers, got dtype {a.dtype} ({exc})") from None


def _proto() -> Any:
    from . import proto

    return proto


def _summary_bytes(value: Any) -> bytes:
    """A serialized Summary holding the one ``Summary.Value`` ``value``."""
    summary = _proto().Summary()
    summary.value.append(value)
    return summary.SerializeToString()


# -- file writers ----------------------------------------------------------------------------------


class _NullCore:
    """Takes every push of a core writer and drops it (``write_to_disk=False``)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


_NULL_CORE = _NullCore()


class _DummyFileWriter:
    """The file writer of ``write_to_disk=False``: accepts everything and writes nothing."""

    def __init__(self, logdir: Any) -> None:
        self._logdir = logdir
        self._default_metadata: Dict[str, Any] = {}

    def get_logdir(self) -> Any:
        """The run directory, as given."""
        return self._logdir

    def add_event(self, event: Any, step: Optional[int] = None, walltime: Optional[float] = None) -> None:
        """Does nothing."""

    def add_summary(self, summary: Any, global_step: Optional[int] = None,
                    walltime: Optional[float] = None) -> None:
        """Does nothing."""

    def add_graph(self, graph_profile: Any, walltime: Optional[float] = None) -> None:
        """Does nothing."""

    def add_onnx_graph(self, graph: Any, walltime: Optional[float] = None) -> None:
        """Does nothing."""

    def add_openvino_graph(self, graph: Any, walltime: Optional[float] = None) -> None:
        """Does nothing."""

    def flush(self) -> None:
        """Does nothing."""

    def close(self) -> None:
        """Does nothing."""

    def reopen(self) -> None:
        """Does nothing."""

    def stats(self) -> Dict[str, int]:
        return {}

    def _ready(self) -> Any:
        return _NULL_CORE

    @contextlib.contextmanager
    def use_metadata(self, *, global_step: Optional[int] = None,
                     walltime: Optional[float] = None) -> Iterator["_DummyFileWriter"]:
        """Does nothing, as tensorboardX's dummy writer."""
        yield self


class _FileWriter(_writer.FileWriter):
    """fasttb's FileWriter with tensorboardX's differences: ``use_metadata``, the ``profiler``
    tag of add_graph's run metadata, and ``add_openvino_graph``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._default_metadata: Dict[str, Any] = {}
        self._on_metadata: Optional[Callable[[], Any]] = None  # a WeakMethod of the owner
        self._dropping = False  # closed by its own close(): drops until reopen()
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        """Write what is queued and close the file; until ``reopen()``, records given to it
        are dropped, as tensorboardX's closed writer drops them. (The SummaryWriter's close()
        closes it otherwise: a call racing with that raises "Writer is closed".)"""
        self._dropping = True
        super().close()

    def reopen(self) -> None:
        """Open a new event file in the same directory after ``close()``."""
        self._dropping = False
        super().reopen()

    def _ready(self) -> Any:
        if self._closed and self._dropping:
            return _NULL_CORE
        return super()._ready()

    def _resolve(self, step: Any, walltime: Any) -> Tuple[Any, float]:
        defaults = self._default_metadata
        if defaults:
            if step is None:
                step = defaults.get("global_step")
            if walltime is None:
                walltime = defaults.get("walltime")
        return step, (time.time() if walltime is None else walltime)

    def add_event(self, event: Any, step: Optional[int] = None, walltime: Optional[float] = None) -> None:
        """Write a protobuf ``Event``; the step and time default to those of ``use_metadata``,
        then to none and now."""
        step, event.wall_time = self._resolve(step, walltime)
        if step is not None:
            event.step = int(step)
        self._ready().push_event(event.SerializeToString())

    def add_summary(self, summary: Any, global_step: Optional[int] = None,
                    walltime: Optional[float] = None) -> None:
        """Write a protobuf ``Summary`` as an event, with ``use_metadata``'s defaults."""
        step, wall_time = self._resolve(global_step, walltime)
        super().add_summary(summary, step, wall_time)

    def add_graph(self, graph_profile: Any, walltime: Optional[float] = None) -> None:
        """Write a ``(GraphDef, RunMetadata)`` pair: a ``graph_def`` event, then the run metadata
        tagged ``profiler``, as tensorboardX does."""
        graph, run_metadata = graph_profile
        proto = _proto()
        self.add_event(proto.Event(graph_def=graph.SerializeToString()), None, walltime)
        tagged = proto.TaggedRunMetadata(tag="profiler", run_metadata=run_metadata.SerializeToString())
        self.add_event(proto.Event(tagged_run_metadata=tagged), None, walltime)

    def add_onnx_graph(self, graph: Any, walltime: Optional[float] = None) -> None:
        """Write a ``GraphDef`` as a ``graph_def`` event."""
        self.add_event(_proto().Event(graph_def=graph.SerializeToString()), None, walltime)

    def add_openvino_graph(self, graph: Any, walltime: Optional[float] = None) -> None:
        """Write a ``GraphDef`` as a ``graph_def`` event."""
        self.add_onnx_graph(graph, walltime)

    @contextlib.contextmanager
    def use_metadata(self, *, global_step: Optional[int] = None,
                     walltime: Optional[float] = None) -> Iterator["_FileWriter"]:
        """Within the block, events added without a step or time get these."""
        if self._default_metadata:
            raise ArgumentAssertionError("use_metadata: default metadata is already set (blocks do not nest)")
        if global_step is None and walltime is None:
            raise ArgumentAssertionError("use_metadata: give global_step or walltime (or both)")
        self._default_metadata = {"global_step": global_step, "walltime": walltime}
        self._tell_owner()
        try:
            yield self
        finally:
            self._default_metadata = {}
            self._tell_owner()

    def _tell_owner(self) -> None:
        callback = self._on_metadata() if self._on_metadata is not None else None
        if callback is not None:
            callback()


# -- the writer ------------------------------------------------------------------------------------


class _Absent:
    """A method tensorboardX's writer does not have: looking it up raises AttributeError."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        raise AttributeError(f"tensorboardX's SummaryWriter has no {self._name!r} "
                             "(fasttb.SummaryWriter, torch's dialect, has it)")


class SummaryWriter(_Base):
    """Writes TensorBoard event files exactly as ``tensorboardX.SummaryWriter`` does: a drop-in
    replacement for it, on fasttb's background writer.

    Args:
        logdir: The run directory. Defaults to ``runs/<MonDD_HH-MM-SS>_<hostname><comment>``.
        comment: Appended to the default directory name; ignored when a directory is given.
        purge_step: When resuming a run that crashed at step ``T + X``, pass ``T``: TensorBoard
            then hides the run's events at steps ``>= T`` written before this file. As in
            tensorboardX, every event file the writer opens (again after ``close()``) says so.
        max_queue: Accepted for compatibility (fasttb bounds one process-wide queue in bytes).
        flush_secs: Longest time a record waits in memory while the worker is busy.
        filename_suffix: Appended to the name of every event file of the writer.
        write_to_disk: ``False`` makes a writer that writes no event file and creates no
            directory. As in tensorboardX, ``add_hparams`` and ``add_embedding`` still write.
        log_dir: Another name for ``logdir``, used when ``logdir`` is not given.
        comet_config: tensorboardX's comet.ml settings. Only ``{"disabled": True}`` (the
            default) or ``None`` is accepted: fasttb does not log to comet.
        **kwargs: ``on_full="block"`` or ``"drop"`` (fasttb's, see ``fasttb.SummaryWriter``).
            Other keywords raise ``TypeError``, as in tensorboardX (which ignores them with
            ``write_to_disk=False``).
    """

    def __init__(
        self,
        logdir: Optional[PathLike] = None,
        comment: str = "",
        purge_step: Optional[int] = None,
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str = "",
        write_to_disk: bool = True,
        log_dir: Optional[PathLike] = None,
        comet_config: Optional[Dict[str, Any]] = _COMET_DISABLED,
        **kwargs: Any,
    ) -> None:
        if comet_config is not None and not (hasattr(comet_config, "get") and comet_config.get("disabled") is True):
            raise NotImplementedError(
                "comet_config: logging to comet.ml is not supported by fasttb.tensorboardX; leave "
                "comet_config at its default ({'disabled': True}) or use tensorboardX itself")
        on_full = kwargs.pop("on_full", "block")
        kwargs.pop("rank_zero_only", None)  # fasttb's: read by SummaryWriter.__new__
        if kwargs and write_to_disk:
            raise TypeError(f"SummaryWriter() got an unexpected keyword argument {next(iter(kwargs))!r}")
        if log_dir is not None and logdir is None:
            logdir = log_dir
        if logdir and "://" in str(logdir) and not str(logdir).startswith("file://"):
            raise NotImplementedError(f"logdir: {str(logdir)!r}: fasttb.tensorboardX writes to local paths only "
                                      "(tensorboardX's s3:// and gs:// are not supported; "
                                      "fasttb.SummaryWriter writes to any fsspec URL)")
        self._write_to_disk = write_to_disk
        self._comet_config = comet_config
        self._comet_logger = None
        self.kwargs = kwargs
        self.scalar_dict: Dict[str, List[List[Any]]] = {}
        self._max_queue = max_queue
        self._flush_secs = flush_secs
        self._filename_suffix = filename_suffix
        # fasttb.SummaryWriter's own set-up; it opens the event file through _get_file_writer.
        _Base.__init__(self, logdir, comment, purge_step, max_queue, flush_secs, filename_suffix,
                       on_full=on_full)

    def _init_null_state(self, kwargs: Dict[str, Any]) -> None:
        """The dialect's own attributes on a rank-zero-only writer of another rank, whose
        __init__ does nothing else (see fasttb._distributed): user code reads these."""
        self.kwargs = {k: v for k, v in kwargs.items()
                       if k not in ("logdir", "log_dir", "write_to_disk", "comet_config", "on_full", "rank_zero_only")}
        self.scalar_dict = {}

    # -- attributes ------------------------------------------------------------------------------

    @property
    def logdir(self) -> PathLike:
        """The run directory, as given (or the default chosen); ``log_dir`` is the same."""
        return self.log_dir

    @logdir.setter
    def logdir(self, value: PathLike) -> None:
        self.log_dir = value

    add_tensor = _Absent()  # torch's, not tensorboardX's

    # -- file writers ----------------------------------------------------------------------------

    def _get_file_writer(self) -> Any:
        """fasttb.SummaryWriter's, typed as this dialect's file writers (or the dummy)."""
        return super()._get_file_writer()

    def _open_file_writer(self) -> Any:
        """The main file writer (a dummy with ``write_to_disk=False``), opened again after
        ``close()`` with the purge markers, as tensorboardX does."""
        if not self._write_to_disk:
            dummy = _DummyFileWriter(self.log_dir)
            self.file_writer = dummy  # type: ignore[assignment]
            self.all_writers = {dummy.get_logdir(): dummy}  # type: ignore[dict-item]
            _core.set_scalar_target(self, None)
            return dummy
        writer = self._new_file_writer(self.log_dir)
        core = writer._ready()
        if self.purge_step is not None:
            now = time.time()
            core.push_purge_markers(to_step(self.purge_step, "purge_step"), now, now)
        self.file_writer = writer
        self.all_writers = {writer.get_logdir(): writer}
        self._refresh_target()
        return writer

    def _new_file_writer(self, log_dir: PathLike, defaults: bool = False) -> _writer.FileWriter:
        # (root=None: this dialect's runs are local, whatever their names hold.)
        if defaults:  # add_hparams' runs: tensorboardX's defaults; the worker creates the files
            return _writer.FileWriter(log_dir, later=True, source_metadata=False, root=None)
        writer = _FileWriter(log_dir, self.max_queue, self.flush_secs, self.filename_suffix,
                             on_full=self._on_full, source_metadata=False, root=None)
        writer._on_metadata = weakref.WeakMethod(self._refresh_target)
        return writer

    def _main(self) -> Any:
        """The main file's core writer, ready for a record. Raises first the failure of an
        earlier call with CUDA tensors, if one is pending."""
        if self._device_error is not None:
            self._raise_device_error()
        writer = self._get_file_writer()
        core = writer._ready()
        if writer._default_metadata or core is _NULL_CORE:
            _core.set_scalar_target(self, None)
        else:
            _core.set_scalar_target(self, core)
        return core

    def _defer(self, core: Any, values: Any, make: Any) -> None:
        """As the torch dialect's, but with ``write_to_disk=False`` there is nothing to copy
        the CUDA tensors for."""
        if core is not _NULL_CORE:
            _Base._defer(self, core, values, make)

    def _refresh_target(self) -> None:
        """Point the native add_scalar/add_text at the main file, or (inside use_metadata, with
        write_to_disk=False, or when closed) send them to the Python path."""
        writer = self.file_writer
        target = None
        if isinstance(writer, _FileWriter) and not writer._default_metadata and self.all_writers is not None:
            try:
                core = writer._ready()
            except OSError:  # closed by another thread meanwhile: the Python path says so
                core = None
            if core is not _NULL_CORE:
                target = core
        _core.set_scalar_target(self, target)

    def _defaults(self) -> Dict[str, Any]:
        writer = self.file_writer
        return writer._default_metadata if writer is not None else {}  # type: ignore[attr-defined]

    def _step(self, global_step: Any) -> Any:
        """``global_step``, or use_metadata's when it is None."""
        if global_step is None:
            defaults = self._defaults()
            if defaults:
                return defaults.get("global_step")
        return global_step

    def _walltime(self, walltime: Any) -> Any:
        """``walltime``, or use_metadata's when it is None (then now)."""
        if walltime is None:
            defaults = self._defaults()
            if defaults:
                return defaults.get("walltime")
        return walltime

    def _get_comet_logger(self) -> Any:
        return _NULL_CORE  # comet is disabled: every call does nothing

    @contextlib.contextmanager
    def use_metadata(self, *, global_step: Optional[int] = None,
                     walltime: Optional[float] = None) -> Iterator["SummaryWriter"]:
        """Within the block, the records of the main run logged without a step (or a time) get
        ``global_step`` (or ``walltime``). add_scalars' series and add_hparams' runs are other
        files and are not affected, as in tensorboardX. Blocks do not nest."""
        with self._get_file_writer().use_metadata(global_step=global_step, walltime=walltime):
            yield self

    # -- scalars ---------------------------------------------------------------------------------

    def add_scalar(  # type: ignore[override]  # tensorboardX's arguments, not torch's
        self,
        tag: str,
        scalar_value: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        display_name: Optional[str] = "",
        summary_description: Optional[str] = "",
    ) -> None:
        """Log one number.

        Args:
            tag: Name of the series (rewritten as tensorboardX rewrites tags).
            scalar_value: A number, numeric string, or a list, array or tensor of one element.
            global_step: Step of the value.
            walltime: Seconds since the epoch; now by default.
            display_name: Title of the chart; with ``summary_description`` (its help text) the
                record carries a ``SummaryMetadata``, as in tensorboardX.
        """
        if display_name == "" and summary_description == "":
            try:
                clean = _clean_tags[tag]
            except (KeyError, TypeError):
                clean = _scalar_tag(tag)
            # Native when the arguments are plain; anything else comes back to _add_scalar.
            _native_add_scalar(self, clean, scalar_value, global_step, walltime)
        else:
            self._add_scalar(tag, scalar_value, global_step, walltime, display_name, summary_description)

    def _add_scalar(self, tag: Any, scalar_value: Any, global_step: Any = None, walltime: Any = None,
                    display_name: Any = "", summary_description: Any = "") -> None:
        """add_scalar's general path: conversions, use_metadata, the metadata record. A CUDA
        tensor is copied without a device sync and logged in its place once it lands (see
        fasttb._device), as the torch dialect's add_scalar does."""
        tag = clean_tag(tag)
        on_device = _device.is_device_scalar(scalar_value)
        value = 0.0 if on_device else to_float(scalar_value)
        step = to_step(self._step(global_step))
        wall_time = to_walltime(self._walltime(walltime))
        metadata = None
        if display_name != "" or summary_description != "":
            try:
                metadata = _proto().SummaryMetadata(display_name=display_name,
                                                    summary_description=summary_description)
            except TypeError:
                raise TypeError("display_name, summary_description: expected str") from None
        core = self._main()

        def push(value: float) -> None:
            if metadata is None:
                core.push_scalar(tag, value, step, wall_time, 0)
            else:
                entry = _proto().Summary.Value(tag=tag, simple_value=value, metadata=metadata)
                core.push_summary(_summary_bytes(entry), step, wall_time)

        if not on_device:
            push(value)
        else:
            self._defer(core, [scalar_value], lambda arrays: push(to_float(arrays[0])))

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Dict[str, Any],
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log several numbers in one chart: each key is a run of its own, in the directory
        ``os.path.join(logdir, main_tag, key)``, holding the series ``main_tag``. The values are
        also kept in ``scalar_dict`` for :meth:`export_scalars_to_json` (so they take memory
        until exported, as in tensorboardX)."""
        if not hasattr(tag_scalar_dict, "items"):
            raise ArgumentAttributeError(
                f"tag_scalar_dict: expected a dict, got {type(tag_scalar_dict).__name__}")
        walltime = time.time() if walltime is None else walltime
        base = str(self._get_file_writer().get_logdir())
        tag = clean_tag(main_tag, "main_tag")
        # CUDA values are copied without a sync (their value: None until they land), unless
        # nothing is written (write_to_disk=False), where only scalar_dict wants them.
        defer = self._write_to_disk
        entries: List[Tuple[str, str, Optional[float]]] = []
        on_device: List[Any] = []
        for key, scalar_value in tag_scalar_dict.items():
            try:
                run_dir = os.path.join(base, main_tag, key)
            except TypeError:
                raise TypeError(f"main_tag, tag_scalar_dict keys: expected str, got {main_tag!r}, {key!r}") from None
            if defer and _device.is_device_scalar(scalar_value):
                entries.append((run_dir, key, None))
                on_device.append(scalar_value)
            else:
                entries.append((run_dir, key, to_float(scalar_value, f"tag_scalar_dict[{key!r}]")))
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        cores = self._run_cores([run_dir for run_dir, _, _ in entries],
                                self._new_file_writer if self._write_to_disk else _DummyFileWriter)
        if not on_device:  # every value was converted above
            for core, (run_dir, _, value) in zip(cores, entries):
                assert value is not None
                core.push_scalar(tag, value, step, wall_time, 0)
                self.__append_to_scalar_dict(run_dir, value, global_step, walltime)
            return
        kept = [self.__append_to_scalar_dict(run_dir, value, global_step, walltime)
                for run_dir, _, value in entries]

        def make(arrays: List[np.ndarray]) -> None:
            host = iter(arrays)
            for core, (_, key, value), entry in zip(cores, entries, kept):
                if value is None:
                    value = entry[2] = to_float(next(host), f"tag_scalar_dict[{key!r}]")
                core.push_scalar(tag, value, step, wall_time, 0)

        self._defer(self._main(), on_device, make)

    def __append_to_scalar_dict(self, tag: str, value: Optional[float], global_step: Any,
                                timestamp: Any) -> List[Any]:
        """Keep ``[timestamp, step, value]`` under ``tag`` in ``scalar_dict`` (the name mangles
        to tensorboardX's own, which it replaces) and return it; a CUDA value's is filled in
        when its copy lands."""
        entry = [timestamp, global_step, value]
        self.scalar_dict.setdefault(tag, []).append(entry)
        return entry

    def export_scalars_to_json(self, path: PathLike) -> None:
        """Write every value add_scalars logged since the last export to ``path`` as JSON,
        ``{run directory: [[walltime, step, value], ...]}``, and forget them (CUDA values are
        waited for first)."""
        _device.drain()
        with open(path, "w") as f:
            json.dump(self.scalar_dict, f)
        self.scalar_dict = {}

    # -- hyperparameters -------------------------------------------------------------------------

    def add_hparams(  # type: ignore[override]  # tensorboardX's arguments, not torch's
        self,
        hparam_dict: Dict[str, Any],
        metric_dict: Dict[str, Any],
        name: Optional[str] = None,
        global_step: Optional[int] = None,
    ) -> None:
        """Log hyperparameters and the metrics they reached for the HParams dashboard, as a run
        of its own, ``<logdir>/<name>`` (``name`` defaults to the current time).

        Values may be str, bool, int or float; a callable is recorded by its ``__name__``, any
        other value as a parameter of unknown type; ``None`` is left out. The metrics are logged
        as scalars at ``global_step`` in that run.
        """
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        summaries = _hparams_summaries(hparam_dict, metric_dict)
        metrics = [(clean_tag(k, "metric_dict key"), to_float(v, f"metric_dict[{k!r}]"))
                   for k, v in metric_dict.items()]
        step = to_step(global_step)
        if not name:
            name = str(time.time())
        # tensorboardX's file_writer.get_logdir(), without opening the main file again after close()
        try:
            run_dir = os.path.join(str(self.log_dir), name)
        except TypeError:
            raise TypeError(f"name: expected a str, got {type(name).__name__}") from None
        run = self._new_file_writer(run_dir, defaults=True)
        self._hparams_writers.append(run)
        core = run._ready()
        for summary in summaries:
            core.push_summary(summary, 0, time.time())
        for tag, value in metrics:
            core.push_scalar(tag, value, step, time.time(), 0)
        run.close_later()  # flush() and close() wait for it

    # -- histograms ------------------------------------------------------------------------------

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: Optional[int] = None,
        bins: Any = "tensorflow",
        walltime: Optional[float] = None,
        max_bins: Optional[int] = None,
    ) -> None:
        """Log the distribution of ``values`` (a list, array or tensor of any shape).
        ``bins="tensorflow"`` (the default) uses :attr:`default_bins`, bucketed on the
        background thread; other ``bins`` (an int, a numpy estimator name such as ``"auto"``,
        or edges) are computed with numpy; ``max_bins`` merges neighbouring buckets."""
        tag = clean_tag(tag)
        if not _device.is_device_array(values):
            values = to_array(values, "values")  # CUDA tensors: copied without a sync, below
        _Base.add_histogram(self, tag, values, self._step(global_step), bins, self._walltime(walltime), max_bins)

    def add_histogram_raw(
        self,
        tag: str,
        min: float,
        max: float,
        num: float,
        sum: float,
        sum_squares: float,
        bucket_limits: Any,
        bucket_counts: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log a histogram computed elsewhere: its statistics and, bucket by bucket, the right
        edge and the count (two sequences of one length). The tag is kept as given."""
        _Base.add_histogram_raw(self, tag, min, max, num, sum, sum_squares, bucket_limits, bucket_counts,
                                self._step(global_step), self._walltime(walltime))

    # -- images ----------------------------------------------------------------------------------

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        dataformats: str = "CHW",
    ) -> None:
        """Log one image laid out as ``dataformats`` (``CHW``, ``HWC``, ``HW``, ...): uint8 as it
        is, any other dtype multiplied by 255 and cast to uint8 *without clipping*, as
        tensorboardX does (keep floats in [0, 1]). Grey becomes RGB; the PNG is encoded on the
        background thread."""
        tag = clean_tag(tag)
        if not _device.is_device_array(img_tensor):
            img_tensor = _to_uint8(to_array(img_tensor, "img_tensor"))  # CUDA: once copied
        _Base.add_image(self, tag, img_tensor, self._step(global_step), self._walltime(walltime), dataformats)

    # A CUDA tensor's pixels, once copied to the host, take the uint8 rule above.
    _host_pixels = staticmethod(_to_uint8)

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        dataformats: str = "NCHW",
    ) -> None:
        """Log a batch of images tiled into one grid image, 8 per row: an array ``NCHW`` (or
        ``NHWC``, ...) with 1, 3 or 4 channels, or a list of same-sized images with
        ``dataformats`` ``"CHW"`` or ``"HWC"`` (another value prints a notice and logs
        nothing, as tensorboardX does). Pixel values as in :meth:`add_image`."""
        if isinstance(img_tensor, list):
            if not isinstance(dataformats, str):
                raise ArgumentAttributeError(f"dataformats: expected a str, got {type(dataformats).__name__}")
            if dataformats.upper() not in ("CHW", "HWC"):  # tensorboardX's notice, word for word
                print("A list of image is passed, but the dataformat is neither CHW nor HWC.")
                print("Nothing is written.")
                return
            img_tensor = _stack(img_tensor)
            dataformats = "N" + dataformats
        tag = clean_tag(tag)
        step, walltime = self._step(global_step), self._walltime(walltime)
        on_device = _device.is_device_array(img_tensor)
        pixels = img_tensor if on_device else _to_uint8(to_array(img_tensor, "img_tensor"))
        if isinstance(dataformats, str) and len(dataformats) == 4 and pixels.ndim == 4:
            _, index = _layout(tuple(pixels.shape), dataformats)
            n, channels = pixels.shape[index[0]], pixels.shape[index[1]]
            if n == 0:
                raise EmptyBatchError("img_tensor: the batch holds no images (N = 0)")
            if channels == 4:  # RGBA batches, which tensorboardX tiles as well
                if on_device:
                    tag, step, wall_time = to_tag(tag), to_step(step), to_walltime(walltime)
                    core = self._main()
                    self._defer(core, [pixels], lambda a: core.push_image(
                        tag, _grid(_to_uint8(a[0]).transpose(index)), step, wall_time, 0, 0))
                else:
                    self._push_image(tag, _grid(pixels.transpose(index)), step, walltime)
                return
        _Base.add_images(self, tag, pixels, step, walltime, dataformats)

    def add_image_with_boxes(  # type: ignore[override]  # tensorboardX's arguments
        self,
        tag: str,
        img_tensor: Any,
        box_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        dataformats: str = "CHW",
        labels: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> None:
        """Log an image with boxes drawn on it in red: ``box_tensor`` holds one
        ``(xmin, ymin, xmax, ymax)`` row per box, in pixels, and ``labels`` one string per box
        (dropped, with a warning, when the counts differ). ``rescale=`` (keyword) resizes the
        result. Pixel values as in :meth:`add_image`; the tag is kept as given."""
        rescale = kwargs.pop("rescale", 1)
        if kwargs:
            raise TypeError(f"add_image_with_boxes() got an unexpected keyword argument {next(iter(kwargs))!r}")
        boxes = to_array(box_tensor, "box_tensor")
        if labels is not None:
            if isinstance(labels, str):
                labels = [labels]
            if len(labels) != (boxes.shape[0] if boxes.ndim else 1):
                _log.warning("labels: %d labels for %d boxes; drawing the boxes without them", len(labels), boxes.shape[0] if boxes.ndim else 1)
                labels = None
        image = _to_uint8(to_array(img_tensor, "img_tensor"))
        pixels, height, width = image_with_boxes_to_hwc_uint8(image, boxes, rescale=rescale,
                                                              dataformats=dataformats, labels=labels)
        self._push_image(tag, pixels, self._step(global_step), self._walltime(walltime), height, width)

    def add_figure(
        self,
        tag: str,
        figure: Any,
        global_step: Optional[int] = None,
        close: bool = True,
        walltime: Optional[float] = None,
    ) -> None:
        """Render a matplotlib figure (or a list of figures, tiled) and log it as an image; the
        figure is closed afterwards unless ``close`` is false."""
        _Base.add_figure(self, clean_tag(tag), figure, self._step(global_step), close, self._walltime(walltime))

    # -- video and audio -------------------------------------------------------------------------

    def add_video(
        self,
        tag: str,
        vid_tensor: Any,
        global_step: Optional[int] = None,
        fps: Union[int, float] = 4,
        walltime: Optional[float] = None,
        dataformats: str = "NTCHW",
    ) -> None:
        """Log a batch of videos laid out as ``dataformats`` (``NTCHW`` by default; C is 1 or
        3) as one animated GIF, the batch tiled in a grid. uint8 is divided by 255 and both are
        then multiplied by 255 and cast to uint8 without clipping, as in tensorboardX. The GIF
        is encoded on the background thread (no moviepy needed)."""
        tag = clean_tag(tag)
        video = to_array(vid_tensor, "vid_tensor")
        frames = _video_frames(video, dataformats)
        try:
            rate = float(fps)
        except (TypeError, ValueError):
            raise TypeError(f"fps: expected a number, got {fps!r}") from None
        if rate == 0:
            raise ArgumentZeroDivisionError("fps: must not be 0")
        step = to_step(self._step(global_step))
        wall_time = to_walltime(self._walltime(walltime))
        self._main().push_video(tag, frames, rate, step, wall_time)

    def add_audio(
        self,
        tag: str,
        snd_tensor: Any,
        global_step: Optional[int] = None,
        sample_rate: int = 44100,
        walltime: Optional[float] = None,
    ) -> None:
        """Log a sound clip: ``(L,)`` or ``(L, 1)`` mono or ``(L, 2)`` stereo samples in
        [-1, 1] (clipped, with a printed warning, when out of range), float32, float64, int16
        or int32, stored as 16-bit WAV exactly as tensorboardX stores it. The tag is kept as
        given."""
        samples = to_array(snd_tensor, "snd_tensor")
        if samples.size == 0:
            raise ValueError("snd_tensor: holds no samples")
        try:
            loud = abs(samples).max() > 1
        except TypeError:
            raise TypeError(f"snd_tensor: expected numbers, got dtype {samples.dtype}") from None
        if loud:
            print("warning: audio amplitude out of range, auto clipped.")
            samples = samples.clip(-1, 1)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2:
            raise ArgumentShapeError(f"snd_tensor: expected (L,) or (L, channels), got shape {samples.shape}")
        frames, channels = samples.shape
        if channels not in (1, 2):
            raise ArgumentShapeError(f"snd_tensor: expected 1 or 2 channels, got {channels}")
        try:
            rate = operator.index(sample_rate)
        except TypeError:
            raise TypeError(f"sample_rate: expected an integer, got {sample_rate!r}") from None
        if rate <= 0:
            raise ArgumentRuntimeError(f"sample_rate: must be positive, got {rate}")
        wav = _wav(_pcm16(samples), rate, channels)
        step = to_step(self._step(global_step))
        wall_time = to_walltime(self._walltime(walltime))
        audio = _proto().Summary.Audio(sample_rate=rate, num_channels=channels, length_frames=frames,
                                       encoded_audio_string=wav, content_type="audio/wav")
        entry = _proto().Summary.Value(tag=_plain_tag(tag), audio=audio)
        self._main().push_summary(_summary_bytes(entry), step, wall_time)

    # -- text, PR curves, custom scalars ---------------------------------------------------------

    add_text = _native_add_text  # the same record as torch's: native for plain arguments

    def _add_text(self, tag: Any, text_string: Any, global_step: Any = None, walltime: Any = None) -> None:
        """add_text's general path: log a string, rendered as Markdown, under
        ``<tag>/text_summary`` (the tag is kept as given)."""
        tag = to_joined_str(tag, "tag")
        if not isinstance(text_string, str):
            raise ArgumentAttributeError(f"text_string: expected a str, got {type(text_string).__name__}")
        step = to_step(self._step(global_step))
        wall_time = to_walltime(self._walltime(walltime))
        self._main().push_text(tag, text_string, step, wall_time)

    def add_pr_curve(
        self,
        tag: str,
        labels: Any,
        predictions: Any,
        global_step: Optional[int] = None,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log a precision-recall curve from ground-truth ``labels`` (0/1) and ``predictions``
        (in [0, 1]) at up to 127 thresholds; ``weights`` weighs each element. Computed on the
        background thread, as tensorboardX computes it."""
        labels = to_array(labels, "labels")
        predictions = to_array(predictions, "predictions")
        _Base.add_pr_curve(self, tag, labels, predictions, self._step(global_step), num_thresholds,
                           weights, self._walltime(walltime))

    def add_pr_curve_raw(
        self,
        tag: str,
        true_positive_counts: Any,
        false_positive_counts: Any,
        true_negative_counts: Any,
        false_negative_counts: Any,
        precision: Any,
        recall: Any,
        global_step: Optional[int] = None,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log a precision-recall curve from counts and rates computed elsewhere (six
        sequences of one length; ``weights`` is accepted and ignored)."""
        _Base.add_pr_curve_raw(self, tag, true_positive_counts, false_positive_counts, true_negative_counts,
                               false_negative_counts, precision, recall, self._step(global_step),
                               num_thresholds, weights, self._walltime(walltime))

    def add_custom_scalars(self, layout: Dict[str, Dict[str, List[Any]]]) -> None:
        """Lay out the Custom Scalars dashboard: ``{category: {chart title: ["Multiline" or
        "Margin", tags]}}`` (a margin chart takes three tags: value, lower, upper)."""
        proto = _proto()
        if not hasattr(layout, "items"):
            raise ArgumentAttributeError(f"layout: expected a dict of categories, got {type(layout).__name__}")
        message = proto.Layout()
        for category_title, charts in layout.items():
            if not hasattr(charts, "items"):
                raise ArgumentAttributeError(
                    f"layout[{category_title!r}]: expected a dict of charts, got {type(charts).__name__}")
            category = message.category.add(title=category_title)
            for chart_title, chart in charts.items():
                try:
                    kind, tags = chart[0], chart[1]
                except (TypeError, IndexError, KeyError) as exc:  # raised as tensorboardX raises it
                    error = ArgumentIndexError if isinstance(exc, IndexError) else ArgumentValueTypeError
                    raise error(f"layout[{category_title!r}][{chart_title!r}]: expected [chart type, tags]") from None
                entry = category.chart.add(title=chart_title)
                try:
                    if kind == "Margin":
                        if len(tags) != 3:
                            raise ArgumentShapeError(
                                f"layout[{category_title!r}][{chart_title!r}]: a margin chart takes 3 tags, "
                                f"got {len(tags)}")
                        entry.margin.series.add(value=tags[0], lower=tags[1], upper=tags[2])
                    else:
                        entry.multiline.tag.extend(tags)
                except TypeError as exc:
                    raise TypeError(f"layout[{category_title!r}][{chart_title!r}]: tags must be str ({exc})") from None
        tensor = proto.TensorProto(dtype=proto.DT["DT_STRING"], string_val=[message.SerializeToString()],
                                   tensor_shape=proto.TensorShapeProto())
        metadata = proto.SummaryMetadata(plugin_data=proto.SummaryMetadata.PluginData(plugin_name="custom_scalars"))
        entry = proto.Summary.Value(tag="custom_scalars__config__", tensor=tensor, metadata=metadata)
        step = to_step(self._step(None))
        wall_time = to_walltime(self._walltime(None))
        self._main().push_summary(_summary_bytes(entry), step, wall_time)

    def add_custom_scalars_marginchart(self, tags: List[str], category: str = "default",
                                       title: str = "untitled") -> None:
        """One Custom Scalars chart of a series and its lower and upper bounds (three tags)."""
        if len(tags) != 3:
            raise ArgumentShapeError(f"tags: a margin chart takes 3 tags, got {len(tags)}")
        self.add_custom_scalars({category: {title: ["Margin", tags]}})

    # -- meshes, embeddings ----------------------------------------------------------------------

    def add_mesh(
        self,
        tag: str,
        vertices: Any,
        colors: Any = None,
        faces: Any = None,
        config_dict: Optional[Dict[str, Any]] = None,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
    ) -> None:
        """Log a 3-D mesh or point cloud for the mesh plugin: ``vertices`` ``(B, N, 3)`` and
        optional ``colors`` and ``faces`` of the same layout; ``config_dict`` holds three.js
        settings. The values are ``<tag>_1`` (vertices), ``<tag>_2`` (faces) and ``<tag>_3``
        (colours), as tensorboardX names them."""
        proto = _proto()
        if tag is not None and not isinstance(tag, str):
            raise TypeError(f"tag: expected a str, got {type(tag).__name__}")
        summary = proto.Summary()
        for value, content_type, argument in ((vertices, 1, "vertices"), (faces, 2, "faces"), (colors, 3, "colors")):
            if value is None:
                continue
            a = to_array(value, argument)
            if a.ndim < 3:
                raise ArgumentIndexError(f"{argument}: expected a (B, N, 3) array, got shape {a.shape}")
            try:
                json_config = json.dumps(config_dict, sort_keys=True)
            except TypeError as exc:
                raise TypeError(f"config_dict: cannot be written as JSON ({exc})") from None
            content = proto.MeshPluginData(version=0, name=tag, content_type=content_type,
                                           json_config=json_config, shape=list(a.shape))
            entry = summary.value.add(tag=f"{tag}_{content_type}")
            entry.metadata.plugin_data.plugin_name = "mesh"
            entry.metadata.plugin_data.content = content.SerializeToString()
            entry.tensor.dtype = proto.DT["DT_FLOAT"]
            for size in a.shape[:3]:
                entry.tensor.tensor_shape.dim.add(size=int(size))
            try:
                entry.tensor.float_val.extend(a.reshape(-1).tolist())
            except TypeError as exc:
                raise TypeError(f"{argument}: expected numbers ({exc})") from None
        step = to_step(self._step(global_step))
        wall_time = to_walltime(self._walltime(walltime))
        self._main().push_summary(summary.SerializeToString(), step, wall_time)

    @staticmethod
    def _encode(rawstr: str) -> str:
        """A tag as a directory name: ``%``, ``/`` and ``\\`` percent-encoded."""
        return rawstr.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")

    def add_embedding(
        self,
        mat: Any,
        metadata: Optional[List[Any]] = None,
        label_img: Any = None,
        global_step: Optional[int] = None,
        tag: str = "default",
        metadata_header: Optional[List[str]] = None,
    ) -> None:
        """Save data for the Projector dashboard: ``mat`` (one row per point), optional
        ``metadata`` labels (one per point, or rows of columns named by ``metadata_header``) and
        square ``label_img`` thumbnails ``(N, C, H, W)``, as tensors.tsv, metadata.tsv and
        sprite.png in ``<logdir>/<step, 5 digits>/<tag>/``; the embedding is appended to
        ``<logdir>/projector_config.pbtxt``. The files are written by the background thread
        (``flush()`` waits for them); as in tensorboardX they are written even with
        ``write_to_disk=False``."""
        mat = to_array(mat, "mat")
        if not isinstance(tag, str):
            raise ArgumentAttributeError(f"tag: expected a str, got {type(tag).__name__}")
        if global_step is None:
            global_step = 0
        step_text = str(global_step).zfill(5)
        subdir = f"{step_text}/{self._encode(tag)}"
        if metadata is not None and mat.shape[:1] != (len(metadata),):
            raise ArgumentShapeError(f"metadata: {len(metadata)} labels for {mat.shape[0] if mat.ndim else 1} data points")
        images = None
        columns = 0
        if label_img is not None:
            images = to_array(label_img, "label_img")
            if images.ndim != 4:
                raise ArgumentShapeError(f"label_img: expected (N, C, H, W) images, got shape {images.shape}")
            n, channels, height, width = images.shape
            if mat.shape[:1] != (n,):
                raise ArgumentShapeError(f"label_img: {n} images for {mat.shape[0] if mat.ndim else 1} data points")
            if height != width:
                raise ArgumentShapeError(f"label_img: images must be square, got {height}x{width}")
            if channels not in (1, 3):
                raise ArgumentShapeError(f"label_img: images must have 1 or 3 channels, got {channels}")
            if n == 0 or width == 0:
                raise ArgumentZeroDivisionError("label_img: holds no pixels")
            columns = min(n, int(math.ceil((n * height * width) ** 0.5 / width)))
            if columns * width > _MAX_SPRITE_SIDE:
                raise ArgumentShapeError(
                    f"label_img: the sprite would be {columns * width} pixels wide, over TensorBoard's "
                    f"{_MAX_SPRITE_SIDE}")
        if mat.ndim != 2:
            raise ArgumentShapeError(f"mat: expected a 2-D array (one row per data point), got shape {mat.shape}")
        tsv_text = None
        if metadata is not None:
            if not metadata_header:
                lines = [str(x) for x in metadata]
            else:
                rows = list(metadata)
                if not rows or len(metadata_header) != len(rows[0]):
                    raise ArgumentShapeError(
                        f"metadata_header: {len(metadata_header)} names for rows of "
                        f"{len(rows[0]) if rows else 0} columns in metadata")
                lines = ["\t".join(str(e) for e in row) for row in [metadata_header] + rows]
            tsv_text = "".join(line + "\n" for line in lines)
        log_dir = self._get_file_writer().get_logdir()
        save_path = os.path.join(log_dir, subdir)
        try:
            os.makedirs(save_path)
        except OSError:
            print("warning: Embedding dir exists, did you set global_step for add_embedding()?")
        core = self._main()
        sync = core is _NULL_CORE  # write_to_disk=False: no worker, write here
        if tsv_text is not None:
            _side_file(core, sync, os.path.join(save_path, "metadata.tsv"), tsv_text.encode("utf-8"))
        if images is not None:
            sprite_path = os.path.join(save_path, "sprite.png")
            if sync:
                _side_file(core, sync, sprite_path, _core.encode_png(_sprite(images, columns)))
            else:
                core.write_sprite(worker_path(sprite_path), _for_core(images), columns)
        tensors_path = os.path.join(save_path, "tensors.tsv")
        if mat.dtype in _CORE_DTYPES and not sync:
            core.write_tsv(worker_path(tensors_path), np.ascontiguousarray(mat))
        else:
            text = "".join("\t".join(str(x.item()) for x in row) + "\n" for row in mat)
            _side_file(core, sync, tensors_path, text.encode("utf-8"))
        entry = ["embeddings {\n", f'tensor_name: "{tag}:{step_text}"\n',
                 f'tensor_path: "{posixpath.join(subdir, "tensors.tsv")}"\n']
        if metadata is not None:
            entry.append(f'metadata_path: "{posixpath.join(subdir, "metadata.tsv")}"\n')
        if images is not None:
            entry += ["sprite {\n", f'image_path: "{posixpath.join(subdir, "sprite.png")}"\n',
                      f"single_image_dim: {images.shape[3]}\n", f"single_image_dim: {images.shape[2]}\n", "}\n"]
        entry.append("}\n")
        with open(os.path.join(log_dir, "projector_config.pbtxt"), "a", encoding="utf-8") as f:
            f.write("".join(entry))

    # -- graphs ----------------------------------------------------------------------------------

    def add_graph(self, model: Any, input_to_model: Any = None, verbose: bool = False,
                  use_strict_trace: bool = True) -> None:
        """Trace ``model`` (a torch module) with ``input_to_model`` and log its graph, as
        tensorboardX does (its run metadata tagged ``profiler``). Needs torch."""
        from ._graph import traced_graph

        self._get_file_writer().add_graph(traced_graph(model, input_to_model, verbose, use_strict_trace))

    def add_onnx_graph(self, onnx_model_file: str) -> None:
        """Log the graph of an ONNX model file (the onnx package is not needed)."""
        from ._graph import onnx_graph

        self._get_file_writer().add_onnx_graph(onnx_graph(onnx_model_file))

    def add_openvino_graph(self, xmlname: str) -> None:
        """Log the graph of an OpenVINO IR model (its ``.xml`` file): one node per edge, named
        after the layer it enters, as tensorboardX reads it."""
        self._get_file_writer().add_openvino_graph(_openvino_graph(xmlname))

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Return once everything logged before the call is written to the OS."""
        _Base.flush(self)

    def close(self) -> None:
        """Write everything still queued and close every file of the writer; logging afterwards
        opens new files. Calling it again does nothing."""
        _Base.close(self)

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()


# -- helpers of the methods above ------------------------------------------------------------------


def _plain_tag(tag: Any) -> str:
    """A tag tensorboardX keeps as given: str, or None as the empty tag."""
    if tag is None:
        return ""
    if isinstance(tag, bytes):
        try:
            return tag.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"tag: bytes that are not valid UTF-8 ({exc})") from None
    if not isinstance(tag, str):
        raise TypeError(f"tag: expected a str, got {type(tag).__name__}")
    return tag


def _stack(images: List[Any]) -> Any:
    """add_images' list: stacked by torch when it holds torch tensors, else by numpy."""
    if not images:
        raise EmptyBatchError("img_tensor: the list holds no images")
    if any("torch" in str(type(image)) for image in images):
        import torch

        try:
            return torch.stack(images, 0)
        except TypeError:
            pass
    try:
        return np.stack([to_array(image, "img_tensor") if not isinstance(image, np.ndarray) else image
                         for image in images], 0)
    except ValueError as exc:
        raise ImageFormatError(f"img_tensor: the images of a list must have one shape ({exc})") from None


def _grid(nchw: np.ndarray, columns: int = 8) -> np.ndarray:
    """tensorboardX's grid of ``(N, C, H, W)`` images, as HWC: ``min(N, columns)`` per row,
    empty cells black."""
    n, channels, height, width = nchw.shape
    columns = min(n, columns)
    rows = -(-n // columns)
    canvas = np.zeros((rows * height, columns * width, channels), dtype=nchw.dtype)
    for i in range(n):
        y, x = divmod(i, columns)
        canvas[y * height:(y + 1) * height, x * width:(x + 1) * width] = nchw[i].transpose(1, 2, 0)
    return canvas


def _video_frames(video: np.ndarray, dataformats: Any) -> np.ndarray:
    """tensorboardX's frames: ``dataformats`` to NTCHW, uint8 divided by 255, the batch padded
    with black videos to a power of two and tiled, then times 255 cast to uint8 (no clipping);
    ``(T, rows x H, columns x W, C)``."""
    if not isinstance(dataformats, str):
        raise ArgumentAttributeError(f"dataformats: expected a str, got {type(dataformats).__name__}")
    if len(dataformats) != 5 or len(set(dataformats)) != 5:
        raise ArgumentAssertionError(f"dataformats: expected 5 distinct letters such as 'NTCHW', got {dataformats!r}")
    if video.ndim != 5:
        raise ArgumentAssertionError(f"vid_tensor: expected 5 dimensions ({dataformats}), got shape {video.shape}")
    index = [dataformats.upper().find(letter) for letter in "NTCHW"]
    if sorted(i % 5 for i in index) != list(range(5)):
        raise ArgumentAssertionError(f"dataformats: {dataformats!r} is not an arrangement of 'NTCHW'")
    v = video.transpose(index)
    b, t, c, h, w = v.shape
    if b == 0:
        raise ArgumentValueTypeError("vid_tensor: the batch holds no videos")  # TypeError there
    if t == 0:
        raise ArgumentIndexError("vid_tensor: the videos hold no frames (T = 0)")
    if v.dtype == np.uint8:
        v = v.astype(np.float32) / np.float32(255.0)
    if b & (b - 1):
        v = np.concatenate((v, np.zeros((2 ** b.bit_length() - b, t, c, h, w))), axis=0)
    rows = 2 ** ((b.bit_length() - 1) // 2)
    cols = v.shape[0] // rows
    v = v.reshape(rows, cols, t, c, h, w).transpose(2, 0, 4, 1, 5, 3).reshape(t, rows * h, cols * w, c)
    if v.dtype != np.uint8:
        try:
            with np.errstate(all="ignore"):
                v = (v * 255.0).astype(np.uint8)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"vid_tensor: expected numbers, got dtype {video.dtype} ({exc})") from None
    return np.ascontiguousarray(v)


def _pcm16(samples: np.ndarray) -> np.ndarray:
    """16-bit samples as tensorboardX's audio encoder (soundfile, libsndfile 1.2) makes them:
    floats scaled by 2**31, rounded and saturated to int32 (NaN as the minimum), then the top
    16 bits; int32 its top 16 bits; int16 as it is. Other dtypes are refused, as there."""
    name = samples.dtype.name
    if name in ("float64", "float32"):
        with np.errstate(all="ignore"):
            scaled = np.rint(samples.astype(np.float64) * _PCM_SCALE)
        scaled[np.isnan(scaled)] = -_PCM_SCALE
        wide = np.clip(scaled, -_PCM_SCALE, _PCM_SCALE - 1).astype(np.int64)
        return (wide >> 16).astype("<i2")
    if name == "int32":
        return (samples >> 16).astype("<i2")
    if name == "int16":
        return samples.astype("<i2")
    raise ValueError(f"snd_tensor: dtype must be one of ['float32', 'float64', 'int16', 'int32'] and not {name!r}")


def _wav(pcm: np.ndarray, rate: int, channels: int) -> bytes:
    """A 16-bit PCM WAV file: the 44-byte RIFF header, then the interleaved samples."""
    import struct

    data = np.ascontiguousarray(pcm).tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, channels,
                         rate & 0xFFFFFFFF, (rate * channels * 2) & 0xFFFFFFFF, channels * 2, 16, b"data", len(data))
    return header + data


_CORE_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.int16,
                                               np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                               np.uint64, np.bool_))


def _for_core(a: np.ndarray) -> np.ndarray:
    """``a`` C-contiguous in a dtype the core reads (float64 otherwise)."""
    if a.dtype not in _CORE_DTYPES:
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def _sprite(images: np.ndarray, columns: int) -> np.ndarray:
    """sprite.png's pixels, as the worker makes them: the images tiled ``columns`` per row on a
    black square, times 255, clipped, as uint8 RGB."""
    n, channels, height, width = images.shape
    if channels == 1:
        images = np.concatenate([images, images, images], 1)
    side = columns * width
    canvas = np.zeros((side, side, 3))
    tiled = _grid(images.astype(np.float64), columns)
    canvas[:tiled.shape[0]] = tiled
    with np.errstate(all="ignore"):
        scaled = np.nan_to_num(canvas * 255, nan=0.0)
    return scaled.clip(0, 255).astype(np.uint8)


def _side_file(core: Any, sync: bool, path: str, data: bytes) -> None:
    if sync:
        with open(path, "wb") as f:
            f.write(data)
    else:
        core.write_file(worker_path(path), data)


def _hparams_summaries(hparam_dict: Dict[str, Any], metric_dict: Dict[str, Any]) -> List[bytes]:
    """The three serialized Summaries of add_hparams, as tensorboardX makes them: the
    experiment, the session start (with the values) and the session end."""
    proto = _proto()
    types = proto.HPARAM_TYPE
    start = proto.HParamsPluginData(version=0)
    start.session_start_info.SetInParent()
    ssi = start.session_start_info
    infos = []
    for k, v in hparam_dict.items():
        if v is None:
            continue
        if not isinstance(k, str):
            raise TypeError(f"hparam_dict: keys must be str, got {k!r}")
        if isinstance(v, str):
            ssi.hparams[k].string_value = v
            kind = "DATA_TYPE_STRING"
        elif isinstance(v, bool):
            ssi.hparams[k].bool_value = v
            kind = "DATA_TYPE_BOOL"
        elif isinstance(v, (int, float)):
            try:
                ssi.hparams[k].number_value = float(v)
            except OverflowError:
                raise ArgumentOverflowError(f"hparam_dict[{k!r}]: {v} is too large for a float") from None
            kind = "DATA_TYPE_FLOAT64"
        elif callable(v):
            ssi.hparams[k].string_value = getattr(v, "__name__", str(v))
            kind = "DATA_TYPE_STRING"
        else:
            kind = "DATA_TYPE_UNSET"
        infos.append(proto.HParamInfo(name=k, type=types[kind]))
    metrics = []
    for k in metric_dict:
        if not isinstance(k, str):
            raise TypeError(f"metric_dict: keys must be str, got {k!r}")
        metrics.append(proto.MetricInfo(name=proto.MetricName(tag=k)))
    experiment = proto.HParamsPluginData(version=0, experiment=proto.Experiment(hparam_infos=infos,
                                                                                metric_infos=metrics))
    end = proto.HParamsPluginData(version=0)
    end.session_end_info.status = 1  # STATUS_SUCCESS
    return [_hparams_summary("_hparams_/experiment", experiment),
            _hparams_summary("_hparams_/session_start_info", start),
            _hparams_summary("_hparams_/session_end_info", end)]


def _hparams_summary(tag: str, data: Any) -> bytes:
    proto = _proto()
    plugin = proto.SummaryMetadata.PluginData(plugin_name="hparams", content=data.SerializeToString())
    return _summary_bytes(proto.Summary.Value(tag=tag, metadata=proto.SummaryMetadata(plugin_data=plugin)))


def _openvino_graph(xmlname: str) -> Any:
    """GraphDef of an OpenVINO IR ``.xml``: for every edge, a node named after the layer the
    edge enters, with the layer it leaves as its input."""
    import xml.etree.ElementTree as ET

    proto = _proto()
    root = ET.parse(xmlname).getroot()
    layers, edges = root.find("layers"), root.find("edges")
    if layers is None or edges is None:
        raise ValueError(f"xmlname: {xmlname!r} has no <layers> or no <edges>")
    names = {layer.attrib["id"]: layer.attrib["name"] for layer in layers}
    nodes = []
    for edge in edges:
        node = proto.NodeDef(name=names[edge.attrib["to-layer"]], op="op",
                             input=[str(names[edge.attrib["from-layer"]])])
        node.attr["parameters"].s = b""
        nodes.append(node)
    return proto.GraphDef(node=nodes, versions=proto.VersionDef(producer=22))
