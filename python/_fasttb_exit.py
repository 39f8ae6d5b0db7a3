"""fasttb's exit handshake, registered at interpreter start (by fasttb-patch.pth).

atexit runs its handlers last registered first. fasttb's core registered its handshake when it
loaded, so every handler registered before ``import fasttb`` (``logging.shutdown``, say) ran
after it, with the threads then inside fasttb already parked for good: a handler that joined
such a thread, or needed a lock one held, hung the exit. Registered here, before any program
code runs, the handshake runs after every other handler, and writes first what those handlers
logged; the core registers it itself only where this module was not loaded (``python -S``).
See fasttb/_lifecycle.py.
"""
import atexit
import sys


def _after_every_other_handler() -> None:
    lifecycle = sys.modules.get("fasttb._lifecycle")
    if lifecycle is not None:
        # What the handlers that ran after fasttb's own exit flush logged (those registered
        # before fasttb was imported run after it).
        try:
            lifecycle.flush_open_files()
        except Exception as exc:
            print(f"fasttb: at exit: {exc}", file=sys.stderr)
    core = sys.modules.get("fasttb._core")
    if core is not None:
        core._exit_hook()


atexit.register(_after_every_other_handler)
