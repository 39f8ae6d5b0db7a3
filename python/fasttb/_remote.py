"""Remote log dirs: any fsspec URL (``s3://``, ``gs://``, ``az://``, ``hdfs://``, ``memory://``, ...)
as a run directory, with bytes sent growing linearly with what is logged.

Object stores cannot append, so the stock writers upload the whole event file again at every
flush. fasttb cuts the event stream into segments instead and uploads each once:

* **Spool.** A remote writer's files are written by the native worker, exactly as for a local
  run, into a spool folder on this machine (``$FASTTB_SPOOL``, else
  ``<tempdir>/fasttb-spool-<uid>``), one folder per writer, mirroring the remote run tree
  (add_scalars sub-runs, add_hparams runs, add_embedding's files). A manifest in it
  (``.fasttb-spool.json``) names the remote URL and the non-secret storage options; the live
  process holds an ``flock`` on it.
* **Segments.** The worker ends an event file's segment when asked (``EventWriter.rotate``, a
  control item in the file's queue, so no record is ever lost or reordered) and starts the next
  one, with its own first record, when the next record arrives: every segment is a whole event
  file, and no empty one is made. A segment ends at ``flush()``, at ``close()``, once it holds
  ``FASTTB_SEGMENT_BYTES`` (16 MiB) and once its oldest record is ``0.8 * flush_secs`` old,
  leaving the rest of ``flush_secs`` for its upload. Segment names sort in write order:
  ``events.out.tfevents.<T>.<host>[.rank<R>].<pid>.<writer, 6 digits>.<segment, 6 digits><suffix>``
  where T is the segment's start time (never decreasing within a writer), so segments of
  several writers in one directory also interleave in time order for TensorBoard.
* **Uploader.** One daemon Python thread per process (fsspec is Python; the native worker never
  takes the GIL) uploads each completed file once, with ``put_file`` to its final key, in order
  per writer folder, then deletes it locally. The caller never waits for the network except in
  ``flush()`` and ``close()``, which wait for their uploads. The thread also checks each open
  remote file four times a second for the size and age limits (a few microseconds each), also
  while an upload is under way: each ``put_file`` runs on a short-lived thread of its own, so
  that a store that neither answers nor fails (s3fs waits for minutes) holds only that one.
* **Faults.** An upload that fails with anything but a permanent error is retried, with
  exponential backoff from 0.5 s to 30 s, for as long as it takes: the files wait on local disk,
  up to ``FASTTB_SPOOL_LIMIT`` (4 GiB by default) waiting per process; past that the writer fails
  with ENOSPC. While the store is unreachable, ``flush()`` does not wait for it: it warns once
  per outage (RuntimeWarning) and returns with the records safe in the spool. A store that
  neither answers nor fails holds one ``flush()`` for ``upload_timeout``; the later ones return
  at once, until an upload gets through. A permanent error
  (``FileNotFoundError``: no such bucket; ``PermissionError``: bad credentials; a bad URL or
  missing credentials) fails every open file of the run as a local write error does: the
  caller's next call raises it as an ``OSError`` naming the remote URL, and the files stay in
  the spool. ``close()`` waits ``upload_timeout`` seconds for the uploads and raises
  ``TimeoutError`` (an OSError) naming the spool if they could not finish.
* **Exit.** At interpreter exit (before non-daemon threads are joined) every open remote file
  ends its segment and the uploads are waited for, up to ``upload_timeout``; what could not be
  uploaded stays in the spool, with a message on stderr. On SIGTERM (with its default action,
  see csrc/runtime/termination.h), once the worker has written what was logged before the
  signal, the upload thread does the same, and the process ends by the signal when the uploads
  are done or after ``FASTTB_TERM_UPLOAD_SECONDS`` (20 s by default: with the drain's 5 s, within
  the 30 s that Kubernetes and Slurm give before SIGKILL). A process that is killed leaves its
  spool too. The next process to open a remote writer adopts spools whose owner is gone (their
  lock is free) and uploads them in the background, and ``python -m fasttb upload [SPOOL ...]``
  does it in the foreground; event files cut by a kill are truncated to their last whole record
  first. A forked child that logs writes files of its own (its pid in their names) into the same
  spool, and uploads them with its own thread and its own fsspec clients.

Why this shape. fsspec's backends are Python and the worker must never take the GIL, so the
network belongs to a Python thread, and the worker hands it files: a local file also outlives an
outage and a kill, which a buffer in memory would not. Segments end by a control item in the
file's own queue rather than by swapping a new native writer in on the caller's side: every
thread's records, and add_scalar's native fast path, keep going to the one EventWriter, so no
record can reach a segment that was already closed, whatever the threads do; the size and age
checks read the worker's counters from the upload thread. ``flush()`` waits at most
``upload_timeout`` too, then warns.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from . import _core

if TYPE_CHECKING:
    from .writer import FileWriter

MANIFEST = ".fasttb-spool.json"
DEFAULT_SEGMENT_BYTES = 16 << 20
DEFAULT_SPOOL_LIMIT = 4 << 30
TICK_SECS = 0.25  # how often the uploader looks at open remote files' size and age
IDLE_TICK_SECS = 1.0  # how often it looks for a SIGTERM while a run of this process is registered
DEFAULT_TERM_UPLOAD_SECS = 20.0
MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0
EVENT_FILE_MARK = "tfevents"

# The package fsspec needs for each protocol, for the ImportError's advice.
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "adl": "adlfs", "hdfs": "pyarrow", "webhdfs": "fsspec", "memory": "fsspec"}
# storage_options keys that may hold a secret: never written to a manifest.
_SECRET_MARKS = ("key", "secret", "token", "pass", "cred", "auth", "sas", "session")
_spool_counter = itertools.count()


# -- URLs -----------------------------------------------------------------------------------------


# writer.py tells a URL from a local path itself ("://" in it, and not file://), so that local
# runs never import this module.


def open_filesystem(url: str, storage_options: Optional[Dict[str, Any]]) -> Tuple[Any, str]:
    """fsspec's filesystem for ``url`` and the path in it; ImportError naming what to install."""
    protocol = url.split("://", 1)[0].lower()
    package = _PACKAGES.get(protocol)
    try:
        import fsspec
    except ImportError:
        other = package if package and package != "fsspec" else ""
        raise ImportError(f"log_dir {url!r} is a remote URL: writing there needs fsspec"
                          f"{' and ' + other if other else ''} (pip install fsspec{' ' + other if other else ''})") from None
    if storage_options is not None and not isinstance(storage_options, dict):
        raise TypeError(f"storage_options: expected a dict, got {type(storage_options).__name__}")
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        advice = f" (pip install {package})" if package and package != "fsspec" else ""
        raise ImportError(f"log_dir {url!r}: {exc}{advice}") from None
    except ValueError as exc:
        raise ValueError(f"log_dir {url!r}: {exc}") from None
    if getattr(fs, "async_impl", False):
        _quiet_network_errors_of_abandoned_tasks()
    return fs, str(path).rstrip("/")


_quieted = False


def _quiet_network_errors_of_abandoned_tasks() -> None:
    """During an outage, asyncio printed a "Task exception was never retrieved" traceback on
    stderr for each connection that aiohttp (under s3fs, gcsfs...) left behind, dozens a second,
    where fasttb itself warns once. fsspec's event loop now drops exactly those reports: network
    errors of tasks nobody awaits any more. Every other report goes to asyncio's handler."""
    global _quieted
    if _quieted:
        return
    try:
        from fsspec.asyn import get_loop
    except ImportError:
        return
    _quieted = True

    def handler(loop: Any, context: Dict[str, Any]) -> None:
        error = context.get("exception")
        abandoned = str(context.get("message", "")).startswith("Task exception was never retrieved")
        network = isinstance(error, (OSError, TimeoutError)) or type(error).__module__.startswith("aiohttp")
        if not (abandoned and network):
            loop.default_exception_handler(context)

    loop = get_loop()
    loop.call_soon_threadsafe(loop.set_exception_handler, handler)


def public_options(options: Any) -> Any:
    """``storage_options`` without anything that may be a secret (for the manifest)."""
    if isinstance(options, dict):
        return {k: public_options(v) for k, v in options.items()
                if isinstance(k, str) and not any(m in k.lower() for m in _SECRET_MARKS)}
    if isinstance(options, (list, tuple)):
        return [public_options(v) for v in options]
    if options is None or isinstance(options, (str, int, float, bool)):
        return options
    return None


def _env_size(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    if text.strip().lower() in ("0", "none", "off"):
        return 0
    from . import _core

    size = _core.parse_size(text)
    if size is None:
        raise ValueError(f"{name}: expected a size such as 64M or 1GiB, got {text!r}")
    return int(size)


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{name}: expected a number of seconds, got {text!r}")
    return seconds


def _warn(message: str) -> None:
    """A RuntimeWarning that names the program's line: the first caller outside fasttb."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: Any = sys._getframe(0)
    level = 1  # warnings.warn's stacklevel of `frame`
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def spool_root() -> str:
    """Where spool folders are made: ``$FASTTB_SPOOL``, else ``<tempdir>/fasttb-spool-<uid>``."""
    root = os.environ.get("FASTTB_SPOOL")
    if not root:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        root = os.path.join(tempfile.gettempdir(), f"fasttb-spool-{uid}")
    return root


# -- errors ---------------------------------------------------------------------------------------

_PERMANENT_TYPES = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
                    ValueError, TypeError, NotImplementedError, ImportError)
_PERMANENT_NAMES = ("NoCredentialsError", "PartialCredentialsError", "InvalidAccessKeyId",
                    "SignatureDoesNotMatch", "AccessDenied", "NoSuchBucket", "InvalidBucketName")


def is_permanent(exc: BaseException) -> bool:
    """Whether an upload failure will not go away by trying again (no such bucket, bad
    credentials, a bad URL); anything else (connection refused, timeouts, 5xx) is transient."""
    if isinstance(exc, _PERMANENT_TYPES):
        return True
    if any(c.__name__ in _PERMANENT_NAMES for c in type(exc).__mro__):
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError, when a backend passes it on
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in _PERMANENT_NAMES


def _errno_of(exc: BaseException) -> int:
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    if isinstance(exc, FileNotFoundError):
        return errno.ENOENT
    if isinstance(exc, PermissionError) or "Credential" in type(exc).__name__ or "Access" in type(exc).__name__:
        return errno.EACCES
    if isinstance(exc, (ValueError, TypeError)):
        return errno.EINVAL
    return errno.EIO


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


# -- the remote run and its spool ------------------------------------------------------------------


class _SpoolLock:
    """The flock a live process holds on its spool's manifest: let go by close(), when the object
    is collected, or when the process ends, however it ends."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._close = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._close()


class _Upload:
    """A completed file waiting for its upload."""

    __slots__ = ("local", "remote", "size", "signature", "event_file")

    def __init__(self, local: str, remote: str, size: int, signature: Tuple[int, int, int], event_file: bool):
        self.local = local
        self.remote = remote
        self.size = size
        self.signature = signature  # (inode, size, mtime) when queued: deleted only if unchanged
        self.event_file = event_file


class RemoteRoot:
    """One remote run tree (``url``) and its spool folder; shared by a SummaryWriter's files.

    Args:
        url: The remote run directory, as fsspec takes it.
        storage_options: Passed to fsspec (credentials, ``endpoint_url``, ...); environment
            variables such as ``AWS_ENDPOINT_URL`` work as fsspec's backends read them.
        upload_timeout: How long ``close()`` (and ``flush()``) wait for uploads, in seconds.
        spool: An existing spool folder to upload (``python -m fasttb upload``); None makes one.
    """

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]] = None,
                 upload_timeout: float = 60.0, spool: Optional[str] = None) -> None:
        try:
            upload_timeout = float(upload_timeout)
        except (TypeError, ValueError):
            raise TypeError(f"upload_timeout: expected a number of seconds, got {upload_timeout!r}") from None
        if not upload_timeout >= 0:
            raise ValueError(f"upload_timeout: must not be negative, got {upload_timeout}")
        self.url = str(url).rstrip("/")
        self.fs: Any
        self.fs, self.path = open_filesystem(self.url, storage_options)
        self.storage_options = storage_options
        self.upload_timeout = upload_timeout
        self.segment_bytes = _env_size("FASTTB_SEGMENT_BYTES", DEFAULT_SEGMENT_BYTES)
        self.spool: Optional[str] = spool
        self.adopted = spool is not None
        self._lock_file: Optional[_SpoolLock] = None
        self.owner_pid = os.getpid()
        self._writers: Dict[int, "weakref.ref[FileWriter]"] = {}  # guarded by _uploader.cond
        self.queue: Deque[_Upload] = deque()
        self.queued: set = set()  # local paths in the queue
        self.enqueued = 0  # files queued so far; a waiter's ticket
        self.finished = 0  # files done with (uploaded, or given up after a permanent error)
        self.pending_bytes = 0
        self.next_try = 0.0
        self.backoff = 0.0
        self.failing: Optional[BaseException] = None  # the last transient failure, during an outage
        self.warned = False
        # `finished` when a flush() last waited upload_timeout in vain: until an upload finishes,
        # the store is taken as silent, and flush() no longer waits for it.
        self.stalled_at: Optional[int] = None
        self.error: Optional[OSError] = None  # a permanent failure: raised by every later call
        self.exit_reported = False
        self.uploaded_objects = 0
        self.uploaded_bytes = 0
        self.retries = 0
        self.dropped: List[Any] = []  # core writers of files dropped without close(), under cond
        self.settling = False  # some were: give the spool up once everything is uploaded

    # -- the files writing to it (any thread) --

    def add_writer(self, writer: "FileWriter") -> None:
        """Track an open file of this run (the uploader looks at its size and age)."""
        with _uploader.cond:
            self._writers[id(writer)] = weakref.ref(writer)

    def writer_dropped(self, core: Any, files: Dict[str, Any]) -> None:
        """A file of this run was dropped without close() (its finalizer, any thread): the
        upload thread closes ``core`` and uploads what it left, ``files["segment"]`` and
        ``files["sides"]``."""
        if self.owner_pid != os.getpid():
            return  # a forked child's copy: the parent's file is the parent's
        with _uploader.cond:
            self.dropped.append((core, files))
            _uploader.wake()

    def settle_dropped(self) -> None:
        """(The upload thread.) Close the files dropped without close(), waiting for the worker
        to write them, and queue their last segments and side files. Only theirs: a sweep of
        the spool would take files that live writers are still writing."""
        with _uploader.cond:
            dropped, self.dropped = self.dropped, []
        for core, files in dropped:
            try:
                core.close()
            except OSError as exc:  # nobody is left to raise it to
                print(f"fasttb: a file of {self.url} dropped without close(): {_describe(exc)}", file=sys.stderr)
            self.enqueue(files["segment"])
            for side in list(files["sides"]):
                self.enqueue(side)
            self.settling = True

    @property
    def writers(self) -> List["FileWriter"]:
        """The files of this run still alive, open or closed."""
        with _uploader.cond:
            alive = []
            for key, ref in list(self._writers.items()):
                writer = ref()
                if writer is None:
                    del self._writers[key]
                else:
                    alive.append(writer)
            return alive

    # -- the spool folder --

    def ensure_spool(self) -> str:
        """The spool folder, made (with its locked manifest) on first use."""
        if self.spool is not None and (self.adopted or os.path.isdir(self.spool)):
            return self.spool
        root = spool_root()
        os.makedirs(root, mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            spool = os.path.join(root, f"{stamp}-{socket.gethostname()}-{os.getpid()}-{next(_spool_counter)}")
            try:
                os.mkdir(spool, 0o700)
                break
            except FileExistsError:
                continue
        manifest = {"version": 1, "remote": self.url, "storage_options": public_options(self.storage_options),
                    "host": socket.gethostname(), "pid": os.getpid(), "created": time.time()}
        # Locked before it has its name, so that no other process ever sees it unlocked.
        temporary = os.path.join(spool, MANIFEST + ".tmp")
        lock = _SpoolLock(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        fcntl.flock(lock.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(lock.fd, json.dumps(manifest).encode("utf-8"))
        os.rename(temporary, os.path.join(spool, MANIFEST))
        self._release_lock()
        self._lock_file = lock
        self.spool = spool
        self.owner_pid = os.getpid()
        return spool

    def local_path(self, url: Any) -> str:
        """Where the file or folder ``url`` (under this run's URL) is written on this machine."""
        text = str(url)
        if text.rstrip("/") == self.url:
            relative = ""
        elif text.startswith(self.url + "/"):
            # (lstrip: "s3://b/run/" + "/m_a", a run of a log_dir given with a trailing slash)
            relative = os.path.normpath(text[len(self.url) + 1:].lstrip("/"))
            if relative == ".." or relative.startswith("../") or os.path.isabs(relative):
                raise ValueError(f"log_dir: {text!r} is outside the remote run {self.url!r}")
        else:
            raise ValueError(f"log_dir: {text!r} is not under the remote run {self.url!r}")
        spool = self.ensure_spool()
        return os.path.join(spool, relative) if relative else spool

    def remote_name(self, local: str, url: bool = False) -> str:
        """The remote path (or, with ``url``, the URL) of the spool file ``local``."""
        assert self.spool is not None
        relative = os.path.relpath(local, self.spool).replace(os.sep, "/")
        return f"{self.url if url else self.path}/{relative}"

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def remove_spool_if_done(self, at_exit: bool = False) -> bool:
        """Removes the spool folder once nothing in it waits and no open file writes there
        (``at_exit``: open files that have nothing left to upload do not count)."""
        with _uploader.cond:  # (no writer of another thread makes its file meanwhile)
            return self._remove_spool_if_done(at_exit)

    def _remove_spool_if_done(self, at_exit: bool) -> bool:
        spool = self.spool
        if spool is None or self.queue or self.owner_pid != os.getpid():
            return False
        if not at_exit and any(not w._closed or w._close_pending for w in self.writers):
            return False
        for here, dirs, files in os.walk(spool, topdown=False):
            for name in files:
                if here == spool and name == MANIFEST:
                    continue
                return False  # a file nobody queued (a writer of a forked child, say): keep it
            for name in dirs:
                try:
                    os.rmdir(os.path.join(here, name))
                except OSError:
                    return False
        try:
            os.remove(os.path.join(spool, MANIFEST))
            os.rmdir(spool)
        except OSError:
            return False
        self._release_lock()
        if not self.adopted:
            self.spool = None
            _uploader.drop(self)  # register() adds it again if the writer logs after close()
        return True

    # -- queueing and waiting (any thread, GIL held) --

    def enqueue(self, local: str, writer: Optional["FileWriter"] = None) -> int:
        """Queue a completed file for upload; returns the ticket to wait for."""
        with _uploader.cond:
            if local in self.queued:
                return self.enqueued
            try:
                st = os.stat(local)
            except FileNotFoundError:
                return self.enqueued
            item = _Upload(local, self.remote_name(local), st.st_size, (st.st_ino, st.st_size, st.st_mtime_ns),
                           EVENT_FILE_MARK in os.path.basename(local))
            self.queue.append(item)
            self.queued.add(local)
            self.enqueued += 1
            self.pending_bytes += st.st_size
            _uploader.pending_bytes += st.st_size
            over = _uploader.limit and _uploader.pending_bytes > _uploader.limit
            _uploader.wake()
            ticket = self.enqueued
        if over and writer is not None:
            since = f" (failing since: {_describe(self.failing)})" if self.failing else ""
            writer._fail_remote(errno.ENOSPC, f"cannot spool event file: {_uploader.pending_bytes} bytes wait "
                                f"for their upload, over FASTTB_SPOOL_LIMIT ({_uploader.limit}){since}",
                                self.remote_name(local, url=True))
        return ticket

    def wait(self, ticket: Optional[int] = None, timeout: Optional[float] = None, closing: bool = False) -> None:
        """Wait until the files queued up to ``ticket`` (all so far by default) are uploaded.

        Raises the run's permanent failure as an OSError. When ``closing``, a timeout raises
        TimeoutError; otherwise (``flush()``) an unreachable store ends the wait with a warning.
        """
        if ticket is None:
            ticket = self.enqueued
        timeout = self.upload_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with _uploader.cond:
            if closing and self.finished < ticket:
                self.next_try = 0.0  # during an outage: try again now rather than after the backoff
                _uploader.wake()
            while self.finished < ticket and self.error is None:
                if self.failing is not None and not closing:
                    self._warn_outage()
                    return
                if self.stalled_at == self.finished and not closing:
                    return  # (the flush() that found the store silent warned)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                _uploader.cond.wait(min(left, 1.0))
            if self.error is not None:
                raise self.error
            if self.finished < ticket:
                waiting = len(self.queue)
                reason = f" (last failure: {_describe(self.failing)})" if self.failing else ""
                message = (f"fasttb: {_files(waiting)} could not be uploaded to {self.url} within "
                           f"{timeout:g} s{reason}; they wait in {self.spool}: the next run or "
                           f"`python -m fasttb upload {self.spool}` uploads them")
                if closing:
                    raise TimeoutError(errno.ETIMEDOUT, message)
                self.stalled_at = self.finished
                _warn(message)

    def _warn_outage(self) -> None:
        if not self.warned and self.failing is not None:
            self.warned = True
            _warn(f"fasttb: {self.url} cannot be reached ({_describe(self.failing)}); flush() returns "
                  f"with the records kept in {self.spool}, uploaded once it is back")

    def wake(self) -> None:
        """Have the uploader look at this run's files now (a file closed by close_later)."""
        with _uploader.cond:
            _uploader.wake()

    def stats(self) -> Dict[str, int]:
        """Upload counters: objects and bytes uploaded, files and bytes waiting, retries."""
        return {"uploaded_objects": self.uploaded_objects, "uploaded_bytes": self.uploaded_bytes,
                "upload_pending": len(self.queue), "upload_pending_bytes": self.pending_bytes,
                "upload_retries": self.retries}

    # -- the uploader thread's side --

    def fail(self, exc: BaseException, item: _Upload) -> None:
        """A permanent failure: every open file of the run fails with it; the files stay."""
        url = self.remote_name(item.local, url=True)
        code = _errno_of(exc)
        context = f"cannot upload to {self.url} ({_describe(exc)})"
        self.error = OSError(code, f"fasttb: {context}: {os.strerror(code)}", url)
        for writer in self.writers:
            writer._fail_remote(code, context, url)
        # Queued behind the failures: once it returns the worker has failed the files, so the
        # caller's next call raises even when it comes right after flush() gave up.
        _core.flush_all()
        with _uploader.cond:
            _uploader.pending_bytes -= self.pending_bytes
            self.pending_bytes = 0
            self.finished = self.enqueued
            self.queue.clear()
            self.queued.clear()
            _uploader.cond.notify_all()

    def upload_next(self) -> None:
        """Upload the first waiting file (the uploader thread, without the GIL while sending)."""
        item = self.queue[0]
        try:
            if item.event_file and self.adopted and truncate_torn_record(item.local):
                self._resized(item)
            if self.fs is None:  # after fork: fsspec's clients belong to the parent
                self.fs, _ = open_filesystem(self.url, self.storage_options)
            if os.path.exists(item.local):
                self.fs.put_file(item.local, item.remote)
        except BaseException as exc:  # classified below; nothing from the network may kill the thread
            if isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                raise  # (asyncio's CancelledError, a BaseException, is a transient failure here)
            if is_permanent(exc) and os.path.exists(item.local):
                self.fail(exc, item)
                return
            with _uploader.cond:
                self.retries += 1
                self.failing = exc
                self.backoff = min(max(self.backoff * 2, MIN_BACKOFF), MAX_BACKOFF)
                self.next_try = time.monotonic() + self.backoff * (0.5 + random.random() / 2)
                _uploader.cond.notify_all()
            return
        try:
            st = os.stat(item.local)
            if (st.st_ino, st.st_size, st.st_mtime_ns) == item.signature:
                os.remove(item.local)  # else rewritten meanwhile (projector_config.pbtxt): queued again
        except OSError:
            pass
        with _uploader.cond:
            self.queue.popleft()
            self.queued.discard(item.local)
            self.pending_bytes -= item.size
            _uploader.pending_bytes -= item.size
            self.finished += 1
            self.uploaded_objects += 1
            self.uploaded_bytes += item.size
            self.backoff = 0.0
            self.next_try = 0.0
            if self.failing is not None:
                self.failing = None
                self.warned = False
            _uploader.cond.notify_all()

    def _resized(self, item: _Upload) -> None:
        """``item``'s file was cut short (a torn last record): what it holds now is uploaded,
        counted and, once uploaded, removed."""
        st = os.stat(item.local)
        with _uploader.cond:
            self.pending_bytes -= item.size - st.st_size
            _uploader.pending_bytes -= item.size - st.st_size
            item.size = st.st_size
            item.signature = (st.st_ino, st.st_size, st.st_mtime_ns)

    def sweep(self, live: Iterable[str]) -> None:
        """Queue every file of the spool that is neither queued nor being written (files of
        writers that were dropped without ``close()``), folder by folder in name order."""
        spool = self.spool
        if spool is None or not os.path.isdir(spool):
            return
        skip = set(live) | self.queued
        mine = f".{os.getpid()}."
        for here, dirs, files in os.walk(spool):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(here, name)
                if (here == spool and name.startswith(MANIFEST)) or path in skip:
                    continue
                if not self.adopted and EVENT_FILE_MARK in name and mine not in name:
                    continue  # another process's (a forked child's): its own to upload
                self.enqueue(path)


def upload_aside(root: RemoteRoot, timeout: float, meanwhile: Optional[Callable[[], None]] = None) -> bool:
    """``root.upload_next()`` on a thread of its own, waited for at most ``timeout`` seconds,
    calling ``meanwhile`` every TICK_SECS: a store that neither answers nor fails (s3fs waits
    for minutes) holds that thread, not the caller. False if it has not returned by then; it
    then goes on alone (a daemon thread), and the file stays first in the queue."""
    failure: List[BaseException] = []

    def put() -> None:
        try:
            root.upload_next()
        except BaseException as exc:  # raised below, on the thread that waits
            failure.append(exc)

    thread = threading.Thread(target=put, name="fasttb-put", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while True:
        thread.join(max(0.0, min(TICK_SECS, deadline - time.monotonic())))
        if not thread.is_alive():
            break
        if time.monotonic() >= deadline:
            return False
        if meanwhile is not None:
            try:
                meanwhile()
            except Exception as exc:  # (not raised: the caller would start this upload again)
                print(f"fasttb: upload thread: {_describe(exc)}", file=sys.stderr)
    if failure:
        raise failure[0]
    return True


def truncate_torn_record(path: str) -> bool:
    """Cut an event file after its last whole record (a process killed mid-write); True if it
    was cut."""
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos + 12 <= size:
            f.seek(pos)
            (length,) = struct.unpack("<Q", f.read(8))
            end = pos + 12 + length + 4
            if end > size:
                break
            pos = end
    if pos < size:
        os.truncate(path, pos)
        return True
    return False


# -- the uploader thread ---------------------------------------------------------------------------


class _Uploader:
    """The process's one upload thread and the state it shares with callers (under ``cond``)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.roots: List[RemoteRoot] = []
        self.pending_bytes = 0
        self.limit = 0
        self.thread: Optional[threading.Thread] = None
        self.woken = False
        self.adopt = True
        self.hooks_registered = False
        self.terminating = False  # a SIGTERM: upload what is spooled, then let the process end
        self.terminated = False  # ... and the watcher was told that it may end it
        self.term_seconds = DEFAULT_TERM_UPLOAD_SECS

    def own_roots(self) -> List[RemoteRoot]:
        """The runs this process writes (not spools it adopted, nor its parent's after fork)."""
        return [r for r in self.roots if not r.adopted and r.owner_pid == os.getpid()]

    def _expect_termination(self) -> None:
        """Tell the SIGTERM watcher whether to wait for this thread's uploads (``cond`` held)."""
        _core.expect_termination_uploads(self.term_seconds if self.own_roots() else 0.0)

    def wake(self) -> None:
        """Have the thread look now (called with ``cond`` held)."""
        self.woken = True
        self.cond.notify_all()

    def add_root(self, root: RemoteRoot) -> None:
        term_seconds = _env_seconds("FASTTB_TERM_UPLOAD_SECONDS", DEFAULT_TERM_UPLOAD_SECS)
        with self.cond:
            self.term_seconds = term_seconds
            if root not in self.roots:
                self.roots.append(root)
            self.limit = _env_size("FASTTB_SPOOL_LIMIT", DEFAULT_SPOOL_LIMIT)
            self._start()
            self._expect_termination()
            self.wake()

    def drop(self, root: RemoteRoot) -> None:
        with self.cond:
            if root in self.roots:
                self.roots.remove(root)
                self._expect_termination()

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="fasttb-upload", daemon=True)
            self.thread.start()
        if not self.hooks_registered:
            self.hooks_registered = True
            _register_exit_hooks()

    def _next_wait(self) -> float:
        now = time.monotonic()
        wait = TICK_SECS if any(r._writers for r in self.roots) else IDLE_TICK_SECS if self.roots else 3600.0
        for root in self.roots:
            if root.queue and root.error is None:
                wait = min(wait, max(root.next_try - now, 0.0))
        return wait

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            with self.cond:
                wait = self._next_wait()
                if wait > 0 and not self.woken:
                    self.cond.wait(wait)
                self.woken = False
                roots = list(self.roots)
            if os.getpid() != pid:
                return
            try:
                self._tick(roots)
                if self.terminating and not self.terminated:
                    self._terminate_when_uploaded()
            except Exception as exc:  # never let the thread die: report and go on
                print(f"fasttb: upload thread: {_describe(exc)}", file=sys.stderr)
                time.sleep(TICK_SECS)
            del roots  # nothing of a run is kept alive while the thread waits

    def _tick(self, roots: List[RemoteRoot]) -> None:
        """One look at every run: segments to end, dropped files to settle, uploads due. (A
        function of its own, so that no writer outlives it in a local variable: a dropped
        writer must be collectable while the thread waits.)"""
        if self.adopt:
            self.adopt = False
            adopt_orphans(self)
        self._look(roots)
        for root in roots:
            while root.queue and root.error is None and root.next_try <= time.monotonic():
                upload_aside(root, float("inf"), lambda: self._look(roots))
            if root.adopted and (root.error is not None or not root.queue):
                self._let_go(root)
            elif root.settling and not root.queue and root.error is None and root.remove_spool_if_done():
                root.settling = False

    def _look(self, roots: List[RemoteRoot]) -> None:
        """The part of a tick that never waits for the network, done during uploads too: a
        SIGTERM to act on, files dropped without close() to settle, segments to end by size
        and age (while a store that neither answers nor fails holds an upload, the spool's
        bound must still apply)."""
        if not self.terminating and _core.termination_pending():
            self.terminating = True
            self._end_segments(self.own_roots())
        now = time.monotonic()
        for root in roots:
            root.settle_dropped()
            for writer in root.writers:
                writer._remote_tick(now)

    def _let_go(self, root: RemoteRoot) -> None:
        """An adopted spool is done with: removed when uploaded, reported and left otherwise."""
        if root.error is not None:
            print(f"fasttb: cannot upload the spool {root.spool} left by an earlier run: {root.error}; "
                  f"`python -m fasttb upload {root.spool}` tries again", file=sys.stderr)
        else:
            root.remove_spool_if_done()
        root._release_lock()
        with self.cond:
            if root in self.roots:
                self.roots.remove(root)

    def _terminate_when_uploaded(self) -> None:
        """After a SIGTERM: once nothing of this process's runs waits for an upload that can
        still succeed, remove their spools and let the watcher end the process."""
        roots = self.own_roots()
        if any(r.queue and r.error is None for r in roots):
            return
        for root in roots:
            root.remove_spool_if_done(at_exit=True)
        self.terminated = True
        _core.termination_uploads_done()

    @staticmethod
    def _end_segments(roots: List[RemoteRoot]) -> None:
        """End every open file's segment and queue it, with whatever else waits in the spools."""
        for root in roots:
            for writer in root.writers:
                try:
                    writer._end_segment_at_exit()
                except Exception as exc:
                    print(f"fasttb: {_describe(exc)}", file=sys.stderr)
            if root.error is None:
                root.sweep(w._segment_path for w in root.writers if not w._closed)

    def finish(self, timeout: Optional[float], final: bool) -> None:
        """End every open remote file's segment and wait for the uploads (interpreter exit);
        report on stderr what stays in a spool. ``final``: the last pass, after which no thread
        logs any more, so spools with nothing left are removed even with files open."""
        roots = self.own_roots()
        self._end_segments(roots)
        with self.cond:
            self._start()
            self.wake()
        longest = max((r.upload_timeout for r in roots), default=0.0)
        deadline = time.monotonic() + (longest if timeout is None else min(timeout, longest))
        with self.cond:
            # (Not again for a run whose uploads an earlier pass gave up on: exit would wait
            # upload_timeout and 10 s more.)
            while any(r.queue and r.error is None and not r.exit_reported for r in roots):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
        for root in roots:
            if root.remove_spool_if_done(at_exit=final) or root.exit_reported or not (root.queue or root.error):
                continue
            root.exit_reported = True
            reason = str(root.error) if root.error else _describe(root.failing) if root.failing else "timeout"
            print(f"fasttb: records logged to {root.url} were not all uploaded ({reason}); they wait in "
                  f"{root.spool}: the next run or `python -m fasttb upload {root.spool}` uploads them",
                  file=sys.stderr)


_uploader = _Uploader()


def register(root: RemoteRoot) -> None:
    """Start uploading for ``root`` (the thread starts with the first one)."""
    _uploader.add_root(root)


def _after_fork_in_child() -> None:
    # The thread is gone, and what the parent queued is the parent's to upload.
    global _uploader
    old = _uploader
    _uploader = _Uploader()
    _uploader.adopt = False
    _uploader.hooks_registered = old.hooks_registered
    for root in old.roots:
        for writer in root.writers:
            writer._segment_lock = threading.Lock()  # maybe held by the parent's upload thread
        root.fs = None
        root.queue.clear()
        root.queued.clear()
        root.finished = root.enqueued
        root.pending_bytes = 0
        root._writers = {}
        root._lock_file = None  # the parent's lock, shared through fork: the parent lets it go
        _uploader.roots.append(root)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _register_exit_hooks() -> None:
    import atexit

    # Before concurrent.futures' own hook (registered on import; the hooks run last first): after
    # it, asyncio can no longer resolve host names, which fsspec's backends need.
    import concurrent.futures.thread  # noqa: F401

    register_early = getattr(threading, "_register_atexit", None)
    if register_early is not None:
        try:
            register_early(_finish_before_threads_end)
        except RuntimeError:  # already shutting down
            pass
    atexit.register(_finish_at_exit)


def _finish_before_threads_end() -> None:
    _uploader.finish(None, final=False)


def _finish_at_exit() -> None:
    # Whatever daemon threads logged after the first pass; a short wait (upload_timeout, if
    # shorter), then it stays spooled.
    _uploader.finish(10.0, final=True)


# -- spools left behind ----------------------------------------------------------------------------


def read_manifest(spool: str) -> Dict[str, Any]:
    """The manifest of a spool folder."""
    with open(os.path.join(spool, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("remote"), str):
        raise ValueError(f"{spool}: not a fasttb spool manifest")
    return manifest


def claim(spool: str) -> Optional[_SpoolLock]:
    """The spool's manifest, locked by this process, or None while its owner lives (or it has
    none)."""
    try:
        lock = _SpoolLock(os.open(os.path.join(spool, MANIFEST), os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        return None
    try:
        fcntl.flock(lock.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    return lock


def adopt(spool: str, storage_options: Optional[Dict[str, Any]] = None,
          upload_timeout: float = 60.0) -> Optional[RemoteRoot]:
    """A RemoteRoot that uploads a spool whose owner is gone, or None if it is still owned."""
    lock = claim(spool)
    if lock is None:
        return None
    try:
        manifest = read_manifest(spool)
        options = storage_options if storage_options is not None else (manifest.get("storage_options") or None)
        root = RemoteRoot(manifest["remote"], options, upload_timeout, spool=spool)
    except BaseException:
        lock.close()
        raise
    root._lock_file = lock
    root.sweep(())
    return root


def adopt_orphans(uploader: _Uploader) -> None:
    """Adopt the spools of processes that ended before their uploads did (uploader thread)."""
    root_dir = spool_root()
    try:
        names = sorted(os.listdir(root_dir))
    except OSError:
        return
    mine = {r.spool for r in uploader.roots}
    for name in names:
        spool = os.path.join(root_dir, name)
        if spool in mine or not os.path.isfile(os.path.join(spool, MANIFEST)):
            continue
        try:
            root = adopt(spool)
        except Exception as exc:
            print(f"fasttb: cannot upload the spool {spool} left by an earlier run: {_describe(exc)}",
                  file=sys.stderr)
            continue
        if root is not None:
            with uploader.cond:
                uploader.roots.append(root)


def upload_spools(spools: List[str], storage_options: Optional[Dict[str, Any]], timeout: float,
                  log: Callable[[str], None]) -> int:
    """``python -m fasttb upload``: upload spool folders left behind; 0 when all went up."""
    if not spools:
        root_dir = spool_root()
        try:
            spools = [os.path.join(root_dir, n) for n in sorted(os.listdir(root_dir))
                      if os.path.isfile(os.path.join(root_dir, n, MANIFEST))]
        except OSError:
            spools = []
        if not spools:
            log(f"no spool folders in {root_dir}")
            return 0
    status = 0
    for spool in spools:
        if not os.path.isfile(os.path.join(spool, MANIFEST)):
            log(f"{spool}: not a fasttb spool folder (it has no {MANIFEST})")
            status = 1
            continue
        try:
            root = adopt(spool, storage_options, timeout)
        except (OSError, ValueError, ImportError, TypeError) as exc:
            log(f"{spool}: {_describe(exc)}")
            status = 1
            continue
        if root is None:
            log(f"{spool}: in use by a running process (its lock is held); left alone")
            continue
        total = len(root.queue)
        deadline = time.monotonic() + timeout
        while root.queue and root.error is None and time.monotonic() < deadline:
            delay = root.next_try - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
                continue
            if not upload_aside(root, max(deadline - time.monotonic(), 0.0)):
                break  # (a hung upload: the CLI ends, and the thread sending it with it)
        if root.error is not None:
            log(f"{spool}: {root.error}")
            status = 1
        elif root.queue:
            log(f"{spool}: {len(root.queue)} of {_files(total)} not uploaded to {root.url} within {timeout:g} s"
                f" ({_describe(root.failing) if root.failing else 'timeout'})")
            status = 1
        else:
            log(f"{spool}: uploaded {_files(total)} ({root.uploaded_bytes} bytes) to {root.url}")
            root.remove_spool_if_done()
        root._release_lock()
    return status
