"""Runs started by a launcher (torchrun, or any code that initialises torch.distributed).

fasttb runs no coordination of its own; it reads what the launcher already provides:

* The rank: ``torch.distributed.get_rank()`` once torch.distributed is initialised (looked up
  only when the program imported it), else ``RANK`` when ``WORLD_SIZE`` is set too (torchrun
  sets both, and ``LOCAL_RANK``). Event file names then carry it:
  ``events.out.tfevents.<time>.<host>.rank<R>.<pid>.<counter><suffix>``, so ranks writing to one
  directory never clash and a file says whose it is.
* The default log dir, ``runs/<MonDD_HH-MM-SS>_<host><comment>``, must name one directory on
  every rank, but each rank reads its own clock. The rank that first creates its N-th
  default-dir writer publishes its time stamp and host name, and every other rank's N-th such
  writer takes them, through a key-value store the launcher already runs (``compare_set``, so
  nobody ever waits for another rank):

  1. torchrun's agent store (``TORCHELASTIC_USE_AGENT_STORE=True``: a TCPStore at
     ``MASTER_ADDR:MASTER_PORT`` that every worker reaches anyway); works across nodes and before
     ``init_process_group``;
  2. otherwise, once torch.distributed is initialised, its default store;
  3. otherwise (no store), ranks on one node agree on their parent's start time (the launcher's:
     every local rank is its child), read from /proc; across nodes the host part differs. Not
     when the parent is a shell: that is a script run with the variables exported, whose runs
     one after another would share the shell's start time, so each takes its own clock.
  The key holds torchrun's restart count, so a restarted group starts a new directory. If the
  store cannot be reached within 5 s, the rank falls back to 3.
* ``rank_zero_only`` (or ``FASTTB_RANK_ZERO_ONLY=1``): on ranks other than 0 the writer is a
  :func:`null_writer_class` instance whose methods do nothing; the ranks still agree on
  ``log_dir``.
"""

from __future__ import annotations

import datetime
import inspect
import itertools
import json
import os
import socket
import sys
from typing import Any, Dict, Optional, Tuple

_STAMP_FORMAT = "%b%d_%H-%M-%S"
_STORE_TIMEOUT = datetime.timedelta(seconds=5)
_default_dirs = itertools.count()  # default-dir writers made by this process, the store key's N
_TRUE = ("1", "true", "yes", "on")


def rank() -> Optional[int]:
    """This process's rank in a distributed run, or None outside one."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None:
        try:
            if dist.is_available() and dist.is_initialized():
                return int(dist.get_rank())
        except Exception:  # a half-torn-down process group: fall back to the environment
            pass
    value = os.environ.get("RANK")
    if value is None or "WORLD_SIZE" not in os.environ:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def rank_tag() -> str:
    """What event file names carry after the host: ``.rank<R>`` in a distributed run, else ""."""
    r = rank()
    return "" if r is None else f".rank{r}"


def rank_zero_only_from_environment() -> bool:
    """Whether ``FASTTB_RANK_ZERO_ONLY`` asks for rank-zero-only writers."""
    return os.environ.get("FASTTB_RANK_ZERO_ONLY", "").strip().lower() in _TRUE


def default_log_dir(comment: str = "") -> str:
    """``runs/<MonDD_HH-MM-SS>_<host><comment>``, the stock default; in a distributed run the same
    on every rank (see the module's docstring for how)."""
    if rank() is None:
        stamp, host = datetime.datetime.now().strftime(_STAMP_FORMAT), socket.gethostname()
    else:
        stamp, host = _shared_stamp()
    return os.path.join("runs", f"{stamp}_{host}{comment}")


def _shared_stamp() -> Tuple[str, str]:
    mine = (datetime.datetime.now().strftime(_STAMP_FORMAT), socket.gethostname())
    key = f"fasttb/default_log_dir/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{next(_default_dirs)}"
    try:
        store = _store()
        if store is not None:
            value = json.loads(store.compare_set(key, "", json.dumps(mine)))
            return str(value[0]), str(value[1])
    except Exception:  # no store after all: the launcher's start time below
        pass
    started = _parent_start_time() if "LOCAL_RANK" in os.environ else None
    if started is not None:
        return datetime.datetime.fromtimestamp(started).strftime(_STAMP_FORMAT), mine[1]
    return mine


def _store() -> Any:
    """A store shared by every rank: torchrun's agent store, else the process group's."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
        addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if addr and port:
            import torch.distributed as torch_dist

            return torch_dist.TCPStore(addr, int(port), is_master=False, timeout=_STORE_TIMEOUT)
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.distributed_c10d._get_default_store()
    return None


# Parents that are no launcher: a script (an sbatch job, a terminal) with RANK, WORLD_SIZE and
# LOCAL_RANK exported, running one training after another.
_SHELLS = {b"sh", b"bash", b"dash", b"zsh", b"ksh", b"mksh", b"fish", b"tcsh", b"csh", b"ash", b"busybox",
           b"tmux: server", b"screen", b"login", b"sshd"}


def _parent_start_time() -> Optional[float]:
    """The start time of this process's parent (the launcher), in seconds since the epoch
    (Linux); None when the parent is a shell (see ``_SHELLS``) or /proc says nothing."""
    try:
        with open(f"/proc/{os.getppid()}/stat", "rb") as f:
            name, rest = f.read().split(b"(", 1)[1].rsplit(b")", 1)
        if name in _SHELLS:
            return None
        fields = rest.split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None


# -- rank-zero-only writers -----------------------------------------------------------------------


def _nothing(self: Any, *args: Any, **kwargs: Any) -> None:
    """Does nothing: this writer belongs to a rank other than 0 (``rank_zero_only``)."""


class NullFileWriter:
    """The file writer of a rank-zero-only writer on another rank: every method does nothing."""

    def __init__(self, log_dir: Any) -> None:
        self._log_dir = log_dir

    def get_logdir(self) -> Any:
        """The run directory the writer was given."""
        return self._log_dir

    add_event = add_summary = add_graph = add_onnx_graph = flush = close = reopen = _nothing

    def stats(self) -> Dict[str, int]:
        """Zero counters: nothing is written."""
        return {"records": 0, "bytes": 0, "dropped": 0, "stalls": 0, "lost": 0}


class _NullMetadata:
    """``use_metadata()`` of a null writer: a context manager that does nothing."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def __enter__(self) -> Any:
        return self._writer

    def __exit__(self, *exc: Any) -> None:
        return None


_null_classes: Dict[type, type] = {}


def null_writer_class(cls: type) -> type:
    """A subclass of ``cls`` (so ``isinstance`` checks hold) whose logging methods, ``flush`` and
    ``close`` do nothing, for ranks other than 0 under ``rank_zero_only``."""
    made = _null_classes.get(cls)
    if made is not None:
        return made
    namespace: Dict[str, Any] = {"__doc__": f"{cls.__name__} of a rank other than 0: does nothing "
                                            "(rank_zero_only).",
                                 "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                 "__init__": _null_init, "_get_file_writer": _null_file_writer,
                                 "get_logdir": _null_logdir, "stats": _null_stats,
                                 "use_metadata": _null_use_metadata}
    for name in dir(cls):
        if name.startswith("add_") or name in ("flush", "close", "export_scalars_to_json"):
            if callable(inspect.getattr_static(cls, name, None)):
                namespace[name] = _nothing
    made = type(cls.__name__, (cls,), namespace)
    _null_classes[cls] = made
    return made


def _null_init(self: Any, log_dir: Any = None, comment: str = "", purge_step: Any = None,
               max_queue: int = 10, flush_secs: float = 120, filename_suffix: str = "",
               *args: Any, **kwargs: Any) -> None:
    if not log_dir:
        log_dir = kwargs.get("logdir") or kwargs.get("log_dir") or default_log_dir(comment)
    self.log_dir = log_dir
    self.purge_step = purge_step
    self.max_queue = max_queue
    self.flush_secs = flush_secs
    self.filename_suffix = filename_suffix
    # What rank 0's writer has from its first file on, so that code reading these works on
    # every rank.
    self.file_writer = NullFileWriter(log_dir)
    self.all_writers = {log_dir: self.file_writer}
    dialect_state = getattr(type(self), "_init_null_state", None)
    if dialect_state is not None:
        dialect_state(self, kwargs)


def _null_file_writer(self: Any) -> NullFileWriter:
    return self.file_writer


def _null_logdir(self: Any) -> Any:
    return self.log_dir


def _null_stats(self: Any) -> Dict[str, int]:
    return {"records": 0, "bytes": 0, "dropped": 0, "stalls": 0, "lost": 0}


def _null_use_metadata(self: Any, *args: Any, **kwargs: Any) -> _NullMetadata:
    return _NullMetadata(self)
