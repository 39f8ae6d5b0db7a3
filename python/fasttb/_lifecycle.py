"""What happens to open event files when a process ends.

* Interpreter exit: everything queued is written, closed or not, and a file that failed without
  any call having raised its error is reported on stderr (the program never heard of it).
* multiprocessing children, DataLoader workers and process pools end with ``os._exit``, which
  skips ``atexit``. They do run multiprocessing's own finalizers first, so fasttb registers one
  there: in any process where multiprocessing is loaded, and again in every child it starts
  (``multiprocessing`` clears the finalizers it inherits, then runs its after-fork hooks).
* SIGTERM with its default action is handled in the core (csrc/runtime/termination.h).
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any

from . import _core

if TYPE_CHECKING:
    from .writer import FileWriter

_open_files: "weakref.WeakSet[FileWriter]" = weakref.WeakSet()
_multiprocessing_hooked = False


class _Anchor:
    """Keeps the after-fork hook registered (multiprocessing holds its hooks weakly)."""


_anchor = _Anchor()


def track(writer: "FileWriter") -> None:
    """Remember an open file so that exit can report an error nobody saw."""
    _open_files.add(writer)
    hook_multiprocessing()  # multiprocessing may have been imported after fasttb


def flush_open_files() -> None:
    """Write everything queued by this process to the OS, calls with CUDA tensors included
    (within FASTTB_DEVICE_EXIT_TIMEOUT; see fasttb._device)."""
    device = sys.modules.get("fasttb._device")
    if device is not None:
        device.finish_at_exit()
    _core.cancel_holds()  # none is left unless the device copies did not finish: go past them
    _core.flush_all()


def _report_unseen_errors() -> None:
    for writer in list(_open_files):
        core = getattr(writer, "_core", None)
        if core is None or core.stale:
            continue
        try:
            if not core.error_unreported:
                if core.closed:
                    continue
                try:
                    core.check()
                except OSError:
                    continue  # failed, and the program was told
                # The last records may have been written before the worker next looked the
                # file up by name (it does every 10 ms): a flush looks now, so that a file
                # removed with its run directory is reported rather than lost in silence.
                core.flush()
            core.check()
        except OSError as exc:
            print(f"fasttb: records logged to this file were lost: {exc}", file=sys.stderr)


def _at_exit() -> None:
    flush_open_files()
    _report_unseen_errors()


def _register_finalizer(util: Any) -> None:
    util.Finalize(None, flush_open_files, exitpriority=0)


def _after_multiprocessing_fork(_: object) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        _register_finalizer(util)


def hook_multiprocessing() -> None:
    """Flush at the end of multiprocessing children too, if multiprocessing is in use."""
    global _multiprocessing_hooked
    util = sys.modules.get("multiprocessing.util")
    if util is None or _multiprocessing_hooked:
        return
    _multiprocessing_hooked = True
    util.register_after_fork(_anchor, _after_multiprocessing_fork)
    _register_finalizer(util)


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    # A fork by multiprocessing runs its after-fork hooks later, in the child: be among them.
    os.register_at_fork(after_in_child=hook_multiprocessing)
hook_multiprocessing()
