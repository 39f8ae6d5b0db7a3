"""A stand-in for CUDA that drives fasttb._device's machinery on CPU: the copy of a FakeTensor
lands in the ring at once (so the call-time value is what the ring holds), and each call's
"event" completes only when the test says so, or fails as a device-side assert would."""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np


class FakeTensor:
    """An array that says it lives on a device."""

    def __init__(self, array: Any) -> None:
        self.array = np.asarray(array)

    def numel(self) -> int:
        return int(self.array.size)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim


class Ticket:
    def __init__(self) -> None:
        self.landed = threading.Event()
        self.error: Optional[BaseException] = None


class FakeBackend:
    def __init__(self) -> None:
        self.auto = True  # tickets complete at once unless a test holds them
        self.tickets: List[Ticket] = []
        self.fail_next: Optional[BaseException] = None
        self.allocations: List[int] = []
        self.lock = threading.Lock()

    def owns(self, value: Any) -> bool:
        return isinstance(value, FakeTensor)

    def check_stream(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def nbytes(self, value: FakeTensor) -> int:
        return value.array.nbytes

    def allocate(self, nbytes: int) -> Tuple[np.ndarray, np.ndarray]:
        self.allocations.append(nbytes)
        buffer = np.zeros(max(nbytes, 1), np.uint8)
        return buffer, buffer

    def copy(self, value: FakeTensor, buffer: np.ndarray, offset: int) -> np.ndarray:
        a = value.array
        dst = buffer[offset:offset + a.nbytes].view(a.dtype).reshape(a.shape)
        dst[...] = a
        return dst

    def record(self, values: Sequence[Any]) -> Ticket:
        ticket = Ticket()
        with self.lock:
            if self.fail_next is not None:
                ticket.error, self.fail_next = self.fail_next, None
            self.tickets.append(ticket)
            if self.auto:
                ticket.landed.set()
        return ticket

    def wait(self, ticket: Ticket) -> None:
        ticket.landed.wait()
        if ticket.error is not None:
            raise ticket.error

    def release_all(self) -> None:
        """Let every call so far complete, and later ones at once."""
        with self.lock:
            self.auto = True
            for t in self.tickets:
                t.landed.set()
