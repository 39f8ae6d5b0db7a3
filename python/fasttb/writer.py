"""The drop-in ``SummaryWriter`` and the ``FileWriter`` it writes through.

The caller's thread only validates, converts, copies and queues; encoding, histogram bucketing,
PNG encoding, framing, checksums and file I/O happen in ``fasttb._core`` on one background
thread shared by every writer of the process.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, _device, _distributed, _lifecycle
from ._convert import (ArgumentAttributeError, ArgumentOverflowError, _is_torch_tensor, make_np, to_scalar, to_step,
                       to_field_step, to_joined_str, to_str, to_tag, to_walltime, worker_path)
from ._histogram import default_edges, histogram_request
from ._image import (figure_to_chw_uint8, image_to_hwc_uint8, image_with_boxes_to_hwc_uint8,
                     images_to_hwc_uint8, native_layout, checked_layout)
from ._kinds import KindsMixin

if TYPE_CHECKING:
    from ._remote import RemoteRoot

PathLike = Union[str, "os.PathLike[str]"]

# Event file names end in a process-wide counter, as in tensorboard's writer. A forked child
# inherits the value, and its pid keeps its names apart from the parent's.
_file_counter = itertools.count()
# Taken only to make a writer's file again after close(): several threads that log after it
# would each make one, and their records would interleave across files. (Reentrant: a signal
# handler may log while its thread holds it. Made anew in a forked child, where the thread that
# held it is gone.)
_reopen_lock = threading.RLock()


def _new_reopen_lock() -> None:
    global _reopen_lock
    _reopen_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_reopen_lock)


def _event_file_name(suffix: str) -> str:
    # In a distributed run the rank follows the host (_distributed.py).
    return (
        f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}{_distributed.rank_tag()}."
        f"{os.getpid()}.{next(_file_counter)}{suffix}"
    )


def _remote_root(log_dir: PathLike, storage_options: Optional[Dict[str, Any]],
                 upload_timeout: float) -> Optional["RemoteRoot"]:
    """The remote run of a log dir that is an fsspec URL (not ``file://``), else None."""
    text = str(log_dir)
    if "://" not in text or text.startswith("file://"):
        if storage_options is not None:
            raise ValueError(f"storage_options: given for the local log dir {text!r} (they are for URLs)")
        return None
    from . import _remote

    return _remote.RemoteRoot(text, storage_options, upload_timeout)


_side_file_order = itertools.count()


_FROM_LOG_DIR: Any = object()  # FileWriter's root when not given: a URL log dir makes a remote run


class FileWriter:
    """Writes events to one event file in ``log_dir``, through the background worker.

    The same shape as ``torch.utils.tensorboard.FileWriter``: ``add_event``, ``add_summary``,
    ``get_logdir``, ``flush``, ``close`` and ``reopen``. ``max_queue`` is accepted for
    compatibility; fasttb bounds its one process-wide queue in bytes instead (see
    ``fasttb.set_queue_limit``). With ``on_full="drop"``, records that find the queue full are
    counted and dropped instead of waiting for room.

    ``log_dir`` may be an fsspec URL (``s3://bucket/run``, ...): the file is then written in
    segments to a local spool and each segment uploaded once (``storage_options`` go to fsspec;
    ``flush()`` and ``close()`` wait up to ``upload_timeout`` seconds for the uploads). See
    ``fasttb._remote``.
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
        storage_options: Optional[Dict[str, Any]] = None,
        upload_timeout: float = 60.0,
        root: Any = _FROM_LOG_DIR,
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
        # Where the files are written on this machine: the log dir itself, or a remote run's spool.
        self._local_dir = self._log_dir[7:] if self._log_dir.startswith("file://") else self._log_dir
        self._max_queue = max_queue
        self._flush_secs = flush_secs
        self._suffix = filename_suffix
        self._drop = on_full == "drop"
        self._later = later  # fasttb's own runs: the worker creates the directory and the file
        self._source_metadata = source_metadata  # False: tensorboardX's first record
        # A SummaryWriter's runs are where the writer is (its root, or None for a local one),
        # whatever their names hold: a key "://" of add_scalars makes no URL of a local run.
        self._root: Optional["RemoteRoot"] = (
            _remote_root(self._log_dir, storage_options, upload_timeout) if root is _FROM_LOG_DIR else root)
        if self._root is not None:
            self._init_remote()
        self._open()

    def _open(self) -> None:
        if self._root is not None:
            self._open_remote()
            return
        if not self._later:
            os.makedirs(self._local_dir, exist_ok=True)
        while True:
            path = os.path.join(self._local_dir, _event_file_name(self._suffix))
            try:
                core = _core.EventWriter(worker_path(path) if self._later else os.fsencode(path),
                                         self._flush_secs, self._drop, time.time(), self._later,
                                         self._source_metadata)
            except FileExistsError:
                continue  # another writer (maybe tensorboard's, in this process) took the name
            break
        self._core = core
        self._closed = False
        self._close_pending = False  # closed by close_later(), not yet waited for
        self._close_unfinished = False  # a close() was started and has not returned
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
    def event_writer(self) -> "FileWriter":
        """This writer, where torch's FileWriter has its EventFileWriter: code that reads
        ``file_writer.event_writer._file_name`` (or calls its flush and close) keeps working."""
        return self

    @property
    def _file_name(self) -> str:
        """The event file's path, the name torch's EventFileWriter gives it."""
        return self.path

    @property
    def path(self) -> str:
        """The path of the current event file (a remote run's: the URL of its current segment)."""
        if self._root is not None:
            return self._root.remote_name(self._segment_path, url=True)
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
        if not hasattr(summary, "SerializeToString"):  # protobuf refuses it in torch's Event(summary=)
            raise ArgumentAttributeError(f"summary: expected a Summary message, got {type(summary).__name__}")
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
        """Return once every event added before the call is written to the OS (a remote run's:
        uploaded, see ``fasttb._remote`` for an unreachable store)."""
        if self._root is not None:
            self._root.wait(self._flush_remote())
            return
        if not self._closed and not self._core.stale:
            self._core.flush()

    def close(self) -> None:
        """Write everything still queued and close the file. Calling it again does nothing."""
        if self._root is not None:
            self._close_remote()
            return
        self._close_file()

    def _close_file(self) -> None:
        if self._closed:
            if self._close_pending:  # wait for what close_later() queued
                self._close_pending = False
                if not self._core.stale:
                    self._core.close()
            elif self._close_unfinished and not self._core.stale:
                # Another thread's close() is under way, or one was interrupted (Ctrl-C): wait
                # for its end, and its error.
                self._core.close()
                self._close_unfinished = False
            return
        self._closed = self._close_unfinished = True
        if not self._core.stale:
            self._core.close()
        self._close_unfinished = False

    def close_later(self) -> None:
        """Close the file once the worker has written what is queued for it, without waiting;
        ``close()`` then waits for that and raises what failed. fasttb only."""
        if not self._closed:
            self._closed = self._close_pending = True
            if not self._core.stale:
                self._core.close(wait=False)
            if self._root is not None:
                self._root.wake()

    def reopen(self) -> None:
        """Open a new event file in the same directory after ``close()``."""
        if self._closed:
            self._open()

    def stats(self) -> Dict[str, int]:
        """Counters of this file: records and bytes written, dropped, stalls, lost."""
        return self._core.stats()

    # -- remote runs: segments in a local spool, each uploaded once (_remote.py) ------------------

    def _init_remote(self) -> None:
        self._segment_lock = threading.Lock()  # one segment change at a time (caller or uploader)
        self._side_pending: Dict[str, Tuple[float, int]] = {}
        # The current segment and the side files still to upload: what a finalizer hands over
        # if the writer is dropped without close(), so it must not refer to the writer. Made
        # again by each open, as the finalizer is.
        self._dropped_files: Dict[str, Any] = {"segment": "", "sides": self._side_pending}
        self._segment_age = max(0.8 * self._flush_secs, 0.0)
        self._final_queued = True
        self._tick_failed = False

    @property
    def _segment_path(self) -> str:
        return self._dropped_files["segment"]

    @_segment_path.setter
    def _segment_path(self, path: str) -> None:
        self._dropped_files["segment"] = path

    def _segment_name(self) -> str:
        return os.path.join(self._local_dir, f"events.out.tfevents.{self._segment_time:010d}.{self._segment_stem}."
                                             f"{self._segment_index:06d}{self._suffix}")

    def _open_remote(self) -> None:
        root = self._root
        assert root is not None
        from . import _remote

        # Under the uploader's lock until the file exists: a close() on another thread removes
        # the spool once no file is left in it, and must not do so between these steps.
        with self._segment_lock, _remote._uploader.cond:
            self._local_dir = root.local_path(self._log_dir)
            if not self._later:
                os.makedirs(self._local_dir, exist_ok=True)
            while True:
                # The writer's number is zero-padded so that names sort in order within a second.
                self._segment_stem = (f"{socket.gethostname()}{_distributed.rank_tag()}.{os.getpid()}."
                                      f"{next(_file_counter):06d}")
                self._segment_index = 0
                self._segment_time = int(time.time())
                path = self._segment_name()
                try:
                    core = _core.EventWriter(worker_path(path) if self._later else os.fsencode(path),
                                             self._flush_secs, self._drop, time.time(), self._later,
                                             self._source_metadata)
                except FileExistsError:
                    continue
                break
            self._core = core
            self._closed = False
            self._close_pending = False
            self._final_queued = False
            self._tick_failed = False
            self._dropped_files = {"segment": path, "sides": self._side_pending}
            self._segment_records = 1  # the first record
            self._segment_bytes = 0
            self._segment_since: Optional[float] = None
        root.add_writer(self)
        _remote.register(root)
        _lifecycle.track(self)
        # Dropped without close(): the upload thread closes the file, uploads what it left and
        # gives the spool up, as the worker closes a local file nobody closed.
        self._on_drop = weakref.finalize(self, root.writer_dropped, core, self._dropped_files)
        self._on_drop.atexit = False  # at exit, _remote's own hook uploads everything

    def _end_segment(self) -> None:
        """End the current segment (holding _segment_lock) and queue it, with the side files
        written before, for upload. Raises the file's error."""
        core = self._core
        if self._closed or core.stale:
            return
        root = self._root
        assert root is not None
        before = core.stats()
        sides = dict(self._side_pending)
        old = self._segment_path
        self._segment_index += 1
        self._segment_time = max(self._segment_time, int(time.time()))
        new = self._segment_name()
        core.rotate(os.fsencode(new), self._source_metadata)
        self._segment_path = new
        self._segment_records, self._segment_bytes = before["records"], before["bytes"]
        self._segment_since = None
        root.enqueue(old, self)  # only if it exists: a segment is made by its first record
        self._queue_side_files(sides)

    def _queue_side_files(self, sides: Dict[str, Tuple[float, int]]) -> None:
        root = self._root
        assert root is not None
        for path, mark in sides.items():
            if self._side_pending.get(path) is mark:  # not written again since
                del self._side_pending[path]
            root.enqueue(path, self)

    def _queue_final(self) -> int:
        """Queue the last segment of a closed file (holding _segment_lock); the ticket."""
        root = self._root
        assert root is not None
        if not self._final_queued:
            self._final_queued = True
            root.enqueue(self._segment_path, self)
            self._queue_side_files(dict(self._side_pending))
        return root.enqueued

    def _flush_remote(self) -> int:
        assert self._root is not None
        with self._segment_lock:
            self._end_segment()
            return self._root.enqueued

    def _close_remote(self, wait: bool = True) -> None:
        """close() of a remote run's file: close it, queue its last segment and (``wait``) wait
        for the uploads; raises the file's error, or the uploads' (TimeoutError included)."""
        root = self._root
        assert root is not None
        if self._closed and not self._close_pending:
            return
        self._on_drop.detach()
        if self._core.stale:
            # Inherited through fork and not logged to here: its segment is the parent's, to
            # write on and upload (queued here, it was uploaded and removed under the parent).
            self._closed = True
            return
        error: Optional[OSError] = None
        with self._segment_lock:
            try:
                self._close_file()
            except OSError as exc:
                error = exc
            ticket = self._queue_final()
        if wait:
            try:
                root.wait(ticket, closing=True)
            finally:
                root.remove_spool_if_done()
        if error is not None:
            raise error

    def _remote_tick(self, now: float) -> None:
        """The uploader's look at this file: end a segment that is too large or too old, and
        queue the last segment of a file closed by close_later()."""
        if not self._segment_lock.acquire(blocking=False):
            return  # the caller is changing segments right now
        try:
            if self._closed:
                if self._close_pending and not self._final_queued:
                    try:
                        if not self._core.stale:
                            self._core.close()  # waits for the worker only; close() raises its error
                    except OSError:
                        pass
                    self._queue_final()
                return
            core = self._core
            if core.stale or self._tick_failed:
                return
            counts = core.stats()
            if self._segment_since is None and counts["records"] > self._segment_records:
                self._segment_since = now
            root = self._root
            assert root is not None
            age = self._segment_age
            if ((root.segment_bytes and counts["bytes"] - self._segment_bytes >= root.segment_bytes)
                    or (self._segment_since is not None and now - self._segment_since >= age)
                    or (self._side_pending and now - min(t for t, _ in list(self._side_pending.values())) >= age)):
                try:
                    self._end_segment()
                except OSError:
                    self._tick_failed = True  # the file failed: the caller's next call raises it
        finally:
            self._segment_lock.release()

    def _end_segment_at_exit(self) -> None:
        with self._segment_lock:
            if not self._closed:
                try:
                    self._end_segment()
                except OSError:
                    self._queue_final()  # what reached the file before it failed
            elif self._close_pending and not self._final_queued:
                try:
                    if not self._core.stale:
                        self._core.close()
                except OSError:
                    pass
                self._queue_final()

    def _fail_remote(self, code: int, context: str, url: str) -> None:
        """Fail the file with an upload's failure: the caller's next call raises it."""
        if not self._closed and not self._core.stale:
            self._core.fail(code, context, os.fsencode(url))

    def _side_files(self, paths: Sequence[str]) -> None:
        """Side files (add_embedding's) just queued to the worker: a remote run uploads them once
        they are written. Nothing to do for a local run."""
        if self._root is None:
            return
        now = time.monotonic()
        for path in paths:
            self._side_pending[path] = (now, next(_side_file_order))


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
        flush_secs: Longest time a record may wait in memory. It rarely matters: the worker
            writes to the OS as soon as it has drained the queue, and every ~20 ms
            (``FASTTB_MAX_NAP_US``) while the loop keeps it busy. A remote run ends its segments
            by it (see ``fasttb._remote``).
        filename_suffix: Appended to the name of every event file this writer creates.
        on_full: ``"block"`` (default) waits for room when the queue is full, losing nothing;
            ``"drop"`` drops the record and counts it in ``stats()["dropped"]``. fasttb only.
        storage_options: For a ``log_dir`` that is an fsspec URL (``s3://bucket/run``,
            ``gs://``, ``az://``, ``hdfs://``, ``memory://``, ...): passed to fsspec
            (credentials, ``endpoint_url``, ...). Remote runs are written in segments to a local
            spool and each segment is uploaded once: see ``fasttb._remote``. fasttb only.
        rank_zero_only: In a distributed run (torchrun's ``RANK``/``WORLD_SIZE``, or
            torch.distributed initialised), ranks other than 0 get a writer whose methods do
            nothing. ``None`` (default) reads ``FASTTB_RANK_ZERO_ONLY``. fasttb only.
        upload_timeout: A remote run's ``close()`` waits this long (seconds) for its uploads,
            then raises ``TimeoutError``; ``flush()`` waits as long, then warns. fasttb only.

    In a distributed run the default ``log_dir`` is the same on every rank and event file names
    carry the rank (``...<host>.rank<R>.<pid>...``): see ``fasttb._distributed``.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "SummaryWriter":
        rank_zero_only = kwargs.get("rank_zero_only")
        if rank_zero_only is None:
            rank_zero_only = _distributed.rank_zero_only_from_environment()
        if rank_zero_only and _distributed.rank() not in (None, 0):
            return _core.NativeWriter.__new__(_distributed.null_writer_class(cls))
        return _core.NativeWriter.__new__(cls)

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
        storage_options: Optional[Dict[str, Any]] = None,
        rank_zero_only: Optional[bool] = None,
        upload_timeout: float = 60.0,
    ) -> None:
        if not log_dir:
            log_dir = _distributed.default_log_dir(comment)
        self._remote_root = _remote_root(log_dir, storage_options, upload_timeout)
        self.log_dir = log_dir
        self.purge_step = None if purge_step is None else to_field_step(purge_step, "purge_step")
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self._on_full = on_full
        self.file_writer: Optional[FileWriter] = None
        self.all_writers: Optional[Dict[str, FileWriter]] = None
        self._hparams_writers: List[FileWriter] = []  # add_hparams runs, closed with this writer
        self._closing: List[List[FileWriter]] = []  # the runs of close() calls under way
        self._closed_totals: Dict[str, int] = {}  # counters of the files close() let go of
        self._device_error: Optional[BaseException] = None  # a CUDA call's failure, for the next call
        # CUDA calls dropped: the pinned ring was full under on_full="drop", or another thread's
        # close() came before their values did
        self._device_dropped = 0
        self._device_stalls = 0  # CUDA calls that waited for room in the pinned ring
        self._get_file_writer()

    # -- writers -------------------------------------------------------------------------------

    def _new_file_writer(self, log_dir: PathLike, defaults: bool = False) -> FileWriter:
        """A file writer with this writer's settings (``defaults``: the stock defaults, as the
        stock add_hparams gives its runs; the worker then creates its directory and file)."""
        if defaults:
            return FileWriter(log_dir, later=True, root=self._remote_root)
        return FileWriter(log_dir, self.max_queue, self.flush_secs, self.filename_suffix, on_full=self._on_full,
                          root=self._remote_root)

    def _run_cores(self, run_dirs: Sequence[str], new: Callable[[str], Any]) -> List[Any]:
        """The core writers of add_scalars' runs, each made by ``new(run_dir)`` the first time.
        A close() on another thread in the middle (the runs gone, or one of them closed) makes
        it start over, as a call after close() does."""
        while True:
            self._get_file_writer()
            writers = self.all_writers
            if writers is None:
                continue
            cores = []
            for run_dir in run_dirs:
                writer = writers.get(run_dir)
                if writer is None:
                    writer = writers[run_dir] = new(run_dir)
                if getattr(writer, "_closed", False):
                    break
                cores.append(writer._ready())
            else:
                return cores

    def _get_file_writer(self) -> FileWriter:
        """The main file writer, created again if the writer was closed. (Attributes are read
        once: a close() on another thread may clear them between two reads.)"""
        writer = self.file_writer
        if self.all_writers is not None and writer is not None:
            return writer
        with _reopen_lock:  # one new file, however many threads log after close()
            writer = self.file_writer
            if self.all_writers is not None and writer is not None:  # made by another thread meanwhile
                return writer
            return self._open_file_writer()

    def _open_file_writer(self) -> FileWriter:
        """Open the main file (with the purge markers, the first time) and make it current."""
        writer = self._new_file_writer(self.log_dir)
        core = writer._ready()
        if self.purge_step is not None:
            core.push_purge_markers(to_step(self.purge_step, "purge_step"), time.time(), time.time())
            self.purge_step = None
        self.file_writer = writer
        self.all_writers = {writer.get_logdir(): writer}
        _core.set_scalar_target(self, core)
        return writer

    def _main(self) -> "_core.EventWriter":
        """The main file's core writer, ready for a record (re-created after close or fork).
        Raises first the failure of an earlier call with CUDA tensors, if one is pending."""
        if self._device_error is not None:
            self._raise_device_error()
        core = self._get_file_writer()._ready()
        _core.set_scalar_target(self, core)  # a new file after fork, say
        return core

    # -- CUDA tensors (see fasttb._device) -----------------------------------------------------

    def _defer(self, core: "_core.EventWriter", values: Sequence[Any],
               make: Any) -> None:
        """Log a call whose ``values`` are CUDA tensors: ``make(host_arrays)`` makes its records
        once the copies have landed, in the place this call holds in ``core``'s queue."""
        def make_unless_closed(arrays: List[np.ndarray]) -> None:
            # close() on another thread came between this call and its values: before they
            # landed, or while its records were being made. Either way the call is dropped
            # (counted), as a CPU call that meets close() half-way is, not raised later.
            if core.closed:
                self._device_dropped += 1
                return
            try:
                make(arrays)
            except OSError:
                if not core.closed:
                    raise
                self._device_dropped += 1

        outcome = _device.submit(self, core, values, make_unless_closed, self._on_full == "drop")
        if outcome == _device.DROPPED:
            self._device_dropped += 1
        elif outcome == _device.WAITED:
            self._device_stalls += 1

    @staticmethod
    def _host_pixels(a: np.ndarray) -> np.ndarray:
        """An image's pixels once its device copy has landed, before the CPU path takes them:
        as they are here; the tensorboardX dialect applies its own uint8 rule."""
        return a

    def _raise_device_error(self) -> None:
        """Raise (once) the failure of an earlier call with CUDA tensors; not on the waiter thread,
        whose records for later calls still go on."""
        if self._device_error is not None and not _device.on_waiter_thread():
            error, self._device_error = self._device_error, None
            raise error

    def _device_failed(self, error: BaseException) -> None:
        """The waiter thread met ``error`` for one of this writer's calls: the next call raises it
        (add_scalar's native path is turned off until then, so that it comes here)."""
        self._device_error = error
        _core.set_scalar_target(self, None)

    def get_logdir(self) -> PathLike:
        """The run directory, exactly as it was given (or the default chosen)."""
        return self.log_dir

    @property
    def default_bins(self) -> Any:
        """The bucket edges of ``bins="tensorflow"`` histograms: the stock writer's 1549 unless
        assigned. As in the stock writer, a list that may be changed in place, or replaced by
        anything ``bins`` takes (an int, a numpy estimator name, edges)."""
        bins = getattr(self, "_bins", None)
        if bins is None:
            bins = self._bins = _core.default_edges()
        return bins

    @default_bins.setter
    def default_bins(self, value: Any) -> None:
        self._bins = value

    def _tensorflow_bins(self, bins: Any) -> Any:
        """``bins``, unless it is ``"tensorflow"`` and ``default_bins`` was changed: then those."""
        if isinstance(bins, str) and bins == "tensorflow":
            custom = getattr(self, "_bins", None)
            if custom is not None and not (type(custom) is list and custom == default_edges()):
                return custom
        return bins

    # -- scalars -------------------------------------------------------------------------------

    # add_scalar and add_text are native (csrc/bindings/fastcall.h): plain arguments are queued without a
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
        if _device.is_device_scalar(scalar_value):
            tag = to_tag(tag)
            step = to_step(global_step)
            wall_time = to_walltime(walltime)
            core = self._main()
            self._defer(core, [scalar_value],
                        lambda a: core.push_scalar(tag, to_scalar(a[0]), step, wall_time, kind))
            return
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
        main_tag = to_str(main_tag, "main_tag")
        if not hasattr(tag_scalar_dict, "items"):  # any mapping, as the stock writer asks only that
            raise ArgumentAttributeError(f"tag_scalar_dict: expected a dict, got {type(tag_scalar_dict).__name__}")
        wall_time = to_walltime(walltime)
        step = to_step(global_step)
        values: List[Tuple[str, Any]] = []
        on_device: List[Any] = []  # CUDA values, copied without a sync (their place: None)
        for key, v in tag_scalar_dict.items():
            key = to_joined_str(key, "tag_scalar_dict key")
            if _device.is_device_scalar(v):
                values.append((key, None))
                on_device.append(v)
            else:
                values.append((key, to_scalar(v, f"tag_scalar_dict[{key!r}]")))
        base = self._get_file_writer().get_logdir()
        prefix = main_tag.replace("/", "_")
        cores = self._run_cores([base + "/" + prefix + "_" + key for key, _ in values], self._new_file_writer)
        if not on_device:
            for core, (_, value) in zip(cores, values):
                core.push_scalar(main_tag, value, step, wall_time, 0)
            return

        def make(arrays: List[np.ndarray]) -> None:
            host = iter(arrays)
            for core, (key, value) in zip(cores, values):
                if value is None:
                    value = to_scalar(next(host), f"tag_scalar_dict[{key!r}]")
                core.push_scalar(main_tag, value, step, wall_time, 0)

        self._defer(self._main(), on_device, make)

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
        bins = self._tensorflow_bins(bins)
        core = self._main()
        if _device.is_device_array(values):
            self._defer(core, [values],
                        lambda a: self._histogram_to(core, tag, a[0], step, bins, wall_time, max_bins))
            return
        self._histogram_to(core, tag, values, step, bins, wall_time, max_bins)

    def _histogram_to(self, core: "_core.EventWriter", tag: str, values: Any, step: int, bins: Any,
                      wall_time: float, max_bins: Optional[int]) -> None:
        request = histogram_request(values, bins, max_bins)
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
        if _device.is_device_array(img_tensor):
            tag = to_tag(tag)
            step = to_step(global_step)
            wall_time = to_walltime(walltime)
            checked_layout(tuple(img_tensor.shape), dataformats)  # here, not when the copy lands
            core = self._main()
            self._defer(core, [img_tensor], lambda a: self._image_to(
                core, tag, self._host_pixels(a[0]), step, wall_time, dataformats))
            return
        a = img_tensor if type(img_tensor) is np.ndarray else make_np(img_tensor, "img_tensor")
        planar = native_layout(a, dataformats)
        if planar is None:
            self._push_image(tag, image_to_hwc_uint8(a, dataformats), global_step, walltime)
            return
        tag = to_tag(tag)
        step = to_step(global_step)
        wall_time = to_walltime(walltime)
        self._image_to(self._main(), tag, a, step, wall_time, dataformats, planar)

    def _image_to(self, core: "_core.EventWriter", tag: str, a: np.ndarray, step: int,
                  wall_time: float, dataformats: str, planar: Optional[bool] = None) -> None:
        """add_image of the numpy array ``a`` into ``core``, arguments already converted."""
        if planar is None:
            planar = native_layout(a, dataformats)
        if planar is None:
            core.push_image(tag, image_to_hwc_uint8(a, dataformats), step, wall_time, 0, 0)
        elif planar:
            # uint8 and float CHW, HWC or HW arrays need no numpy work: the core scales floats
            # while it copies, and the worker interleaves planes, so the caller reads its array once.
            core.push_image_planes(tag, a.reshape((-1,) + a.shape[-2:]), step, wall_time)
        else:
            core.push_image(tag, a, step, wall_time)

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Optional[int] = None,
        walltime: Optional[float] = None,
        dataformats: str = "NCHW",
    ) -> None:
        """Log a batch of images tiled into one grid image, 8 per row (``NCHW`` or ``NHWC``)."""
        if _device.is_device_array(img_tensor):
            tag = to_tag(tag)
            step = to_step(global_step)
            wall_time = to_walltime(walltime)
            checked_layout(tuple(img_tensor.shape), dataformats)
            core = self._main()
            self._defer(core, [img_tensor], lambda a: core.push_image(
                tag, images_to_hwc_uint8(self._host_pixels(a[0]), dataformats), step, wall_time, 0, 0))
            return
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
        written on them. The image is then resized by ``rescale``. The boxes are drawn by
        fasttb, on the caller's thread, pixel for pixel as the stock writer draws them (Pillow is
        needed only for ``labels``); the PNG is encoded on the worker."""
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
        """Return once everything logged before the call is written to the OS (for a remote
        ``log_dir``: is in the store; if the store cannot be reached, flush() warns and returns
        with the records kept in the local spool, see ``fasttb._remote``). Calls with CUDA
        tensors are waited for first."""
        _device.drain()
        self._raise_device_error()
        self._settle_hparams_runs()
        writers = self.all_writers  # (another thread may close, or add runs, meanwhile)
        if writers is None:
            return
        root = self._remote_root
        if root is not None:
            for writer in list(writers.values()):
                writer._flush_remote()
            root.wait()
            return
        for writer in list(writers.values()):
            writer.flush()

    def _settle_hparams_runs(self) -> None:
        """Wait for the add_hparams runs' files, which close as soon as they are written, and
        raise the first of their failures."""
        writers, self._hparams_writers = self._hparams_writers, []
        if writers:  # (else a remote run's uploads would be waited for twice by flush())
            self._close_all(writers, closing=False)

    def _close_all(self, writers: List[FileWriter], closing: bool = True) -> None:
        """Close each writer, count its records as closed, and raise the first failure (a remote
        run's: wait for the uploads, as close() does, or as flush() does unless ``closing``)."""
        error: Optional[BaseException] = None
        root = self._remote_root
        for writer in writers:
            # Not all are fasttb's: torch's own add_scalars, called unbound on a patched writer,
            # puts torch's FileWriters in all_writers. Those are closed, and not counted.
            ours = isinstance(writer, FileWriter)
            try:
                if root is not None and ours:
                    writer._close_remote(wait=False)  # the uploads are waited for once, below
                elif ours:
                    writer._close_file()  # (not close(): a dialect's FileWriter may add to it)
                else:
                    writer.close()
            except OSError as exc:  # close the others, then report the first failure
                error = error or exc
            for key, value in _file_stats(writer).items():
                self._closed_totals[key] = self._closed_totals.get(key, 0) + value
        if root is not None:
            try:
                root.wait(closing=closing)
            except OSError as exc:
                error = error or exc
            finally:
                root.remove_spool_if_done()
        if error is not None:
            raise error

    def close(self) -> None:
        """Write everything still queued and close every file of this writer.

        Logging after ``close()`` starts a new event file, as the stock writer does. Calling
        ``close()`` again does nothing. Calls with CUDA tensors are waited for first.
        """
        _device.drain()
        writers = self._hparams_writers
        self._hparams_writers = []
        if self.all_writers is not None:
            writers = list(self.all_writers.values()) + writers
        elif not writers:
            self._wait_for_closes_elsewhere()
            return
        self.file_writer = self.all_writers = None
        _core.set_scalar_target(self, None)
        self._closing.append(writers)
        try:
            self._close_all(writers)
        except Exception:
            self._closing.remove(writers)  # every file was closed; the first failure is raised
            raise
        # (Interrupted by Ctrl-C, say: the next close() finishes what this one left.)
        self._closing.remove(writers)
        self._raise_device_error()

    def _wait_for_closes_elsewhere(self) -> None:
        """Wait for the close() of another thread, if one is under way, or finish one that was
        interrupted: close() returns with everything written, even when another thread started
        it (before, this one returned at once, with most of a large queue still to write)."""
        for writers in list(self._closing):
            for writer in writers:
                if not isinstance(writer, FileWriter):
                    continue  # (tensorboardX's write_to_disk=False: nothing to wait for)
                if writer._root is not None:
                    with writer._segment_lock:  # held by the other close() until its last segment
                        pass
                    writer._root.wait(closing=True)
                else:
                    writer._close_file()

    def stats(self) -> Dict[str, int]:
        """Counters for every file this writer has written, closed ones included (records,
        bytes, dropped, stalls, lost), and for the process-wide queue (queue_bytes,
        queue_high_water, queue_limit, items_processed)."""
        totals: Dict[str, int] = {"records": 0, "bytes": 0, "dropped": 0, "stalls": 0, "lost": 0}
        for key, value in self._closed_totals.items():
            totals[key] += value
        for writer in list((self.all_writers or {}).values()):
            for key, value in _file_stats(writer).items():
                totals[key] += value
        totals["dropped"] += self._device_dropped
        totals["stalls"] += self._device_stalls
        totals.update(_core.engine_stats())
        if self._remote_root is not None:
            totals.update(self._remote_root.stats())
        return totals

    def __copy__(self) -> "SummaryWriter":
        """A shallow copy, as ``copy.copy`` makes of the stock writer: it shares this writer's
        files, so both log to the same run, and closing either closes them for both."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


def _file_stats(writer: Any) -> Dict[str, int]:
    """A file's counters; none for a stock FileWriter in all_writers (see _close_all)."""
    return writer.stats() if isinstance(writer, FileWriter) else {}


def _doubles(values: Any, argument: str) -> list:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{argument}: expected a sequence of numbers, got {type(values).__name__}")
    if _is_array_like(values):
        array = make_np(values, argument)
        if array.ndim == 0:  # (the stock writer takes its len())
            raise TypeError(f"{argument}: expected a sequence of numbers, got a 0-d array")
        if array.dtype.kind in "SU":  # float() reads numbers written as text; protobuf does not
            raise TypeError(f"{argument}: expected numbers, got {array.dtype} values")
        return array.astype(np.float64).ravel().tolist()
    numbers = []
    for v in values:
        if isinstance(v, (str, bytes)):
            raise TypeError(f"{argument}: expected numbers, got {v!r}")
        try:
            numbers.append(float(v))
        except TypeError:
            raise TypeError(f"{argument}: expected a sequence of numbers, got {values!r}") from None
        except OverflowError:
            raise ArgumentOverflowError(f"{argument}: holds a number too large for a float") from None
    return numbers


def _is_array_like(values: Any) -> bool:
    return isinstance(values, np.ndarray) or _is_torch_tensor(values)


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

