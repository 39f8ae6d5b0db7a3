"""For child scripts that fork: waiting for a grandchild that may hang (imported by path)."""

from __future__ import annotations

import os
import signal
import time


def exited_within(pid: int, seconds: float) -> bool:
    """Waits up to ``seconds`` for the forked process ``pid`` to exit, and reaps it. One still
    running is sent SIGABRT (faulthandler, inherited from the parent, prints where its threads
    stood), given 5 s, then killed; the answer is then False."""
    deadline = time.monotonic() + seconds
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGABRT)
            time.sleep(5)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.01)
    return True
