"""GPU tensors logged without synchronising the device on the caller's thread.

``add_scalar``, ``add_scalars``, ``add_histogram``, ``add_image`` and ``add_images`` take CUDA
tensors the way they take CPU ones, but where the stock writer calls ``.cpu()`` (a blocking copy
that waits for every kernel already queued), fasttb does this:

1. **Place.** The call queues a *hold* on its event file (``EventWriter.push_hold``): a place in
   the queue where the call's records will go, so records keep call order whatever comes after.
2. **Copy.** Each tensor is copied with ``non_blocking=True`` on its device's current stream into
   a slice of one pinned host buffer (``FASTTB_PINNED_BYTES``, 64 MiB by default, allocated on
   first use), and a CUDA event is recorded after the copies. bfloat16 is first converted to
   float16 on the device, as the stock writer converts it. The copy is queued behind the kernels
   that compute the value and ahead of any that change it later, so the value logged is the
   value at the call.

   A large tensor (``FASTTB_SIDE_COPY_BYTES``, 1 MiB by default) would hold the training
   stream for as long as its bytes take to cross the bus (16 MB over PCIe: 0.3 to 0.6 ms), so
   it is first copied on the device, on the current stream (at HBM speed: about 10 us), and
   that snapshot goes to the host on a side stream, alongside the training kernels. Snapshots live
   until their copy is done: at most the ring's size of device memory, plus one tensor larger
   than the ring.
3. **Wait elsewhere.** One daemon thread per process (the *waiter*) takes the calls in order,
   waits for each one's event (``Event.synchronize`` lets the GIL go), and then makes the call's
   records from the host copies with the ordinary CPU code path, inside ``Hold.fill``: they go
   into the hold, and the native worker writes them there. The pinned slices are then free again.

The buffer is a ring, freed in the order it is taken. When it is full the caller waits for the
waiter (no device-wide synchronisation: only the copies already queued must finish), or, with
``on_full="drop"``, the call is dropped and counted in ``stats()["dropped"]``. A tensor larger
than the ring gets a pinned buffer of its own once the ring is empty. The records the waiter
makes count against the queue's bound (``FASTTB_QUEUE_BYTES``) as a CPU call's do: when the
worker falls behind, the waiter waits for room, and so the calls behind it wait in the ring
(or drop) instead of piling up in host memory. ``flush()`` and ``close()``
first wait for the calls already taken; at interpreter exit the waiter is given
``FASTTB_DEVICE_EXIT_TIMEOUT`` seconds (10) to finish, then what is left is cancelled and lost.

Errors. Arguments that do not depend on the values (tag, step, walltime, an image's shape and
``dataformats``) are checked on the caller's thread. An error met later (a device-side assert surfacing at the event, or a value
the conversion refuses) is raised by the writer's next call, as the exception the CPU path or
torch raised; that call's records are lost, earlier ones are kept. A forked child cannot use the
parent's CUDA context: logging a CUDA tensor there raises RuntimeError, as does logging one while
the current stream captures a CUDA graph.

Nothing here imports torch until a CUDA tensor is logged. The device work goes through a
*backend* (``CudaBackend``); the tests drive the same machinery on CPU with a stand-in backend.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

import numpy as np

from ._convert import _is_torch_tensor

DEFAULT_POOL_BYTES = 64 << 20
DEFAULT_SIDE_COPY_BYTES = 1 << 20
ALIGN = 64
# Calls waiting for their copies at most (then the caller waits, or drops): about a hundred
# steps of a loop that logs ten values per step, and a bound on the waiter's backlog.
MAX_PENDING_CALLS = 1024
# What submit() did with a call.
QUEUED, WAITED, DROPPED = 0, 1, 2


class DeviceCallError(RuntimeError):
    """Raised when a CUDA tensor cannot be logged the asynchronous way (a forked child)."""


class CudaBackend:
    """The device side of staging, through torch (imported when the first CUDA tensor comes)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self._supported = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
                           torch.int64, torch.float16, torch.bfloat16, torch.float32, torch.float64}
        self.side_copy_bytes = side_copy_bytes()
        self._side_streams: dict = {}  # device -> the stream that takes snapshots to the host
        # What the call being submitted has queued so far (submit holds the stager's lock from
        # its first copy to record(), which takes these): devices it copied to on their current
        # stream, and the events that end its side-stream copies.
        self._direct: set = set()
        self._aside: List[Any] = []

    def owns(self, value: Any) -> bool:
        """Whether ``value`` is a tensor this backend stages (a CUDA tensor of a plain dtype)."""
        return isinstance(value, self.torch.Tensor) and value.is_cuda and value.dtype in self._supported

    def nbytes(self, value: Any) -> int:
        """Host bytes the copy of ``value`` takes (bfloat16 is copied as float16)."""
        return value.numel() * (2 if value.dtype == self.torch.bfloat16 else value.element_size())

    def allocate(self, nbytes: int) -> Tuple[Any, np.ndarray]:
        """A pinned host buffer of ``nbytes``: the tensor and a numpy uint8 view of it."""
        buffer = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, pin_memory=True)
        return buffer, buffer.numpy()

    def copy(self, value: Any, buffer: Any, offset: int) -> np.ndarray:
        """Queue the copy of ``value`` into ``buffer[offset:]`` without waiting: on the current
        stream of the tensor's device, or for a large tensor through a snapshot and a side
        stream; returns the numpy view the copy lands in."""
        torch = self.torch
        t = value.detach()
        own = False  # whether t is already a device copy of the value's own
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float16)  # as the stock make_np does, but on the device
            own = True
        n = t.numel() * t.element_size()
        dst = buffer[offset:offset + n].view(t.dtype).view(t.shape)
        if n < self.side_copy_bytes:
            dst.copy_(t, non_blocking=True)
            self._direct.add(t.device)
        else:
            if not (own and t.is_contiguous()):
                t = t.clone(memory_format=torch.contiguous_format)  # the value at the call
            self._aside.append(self.copy_aside(dst, t))
        return dst.numpy()

    def check_stream(self) -> None:
        """Refuse a call made while the current stream captures a CUDA graph: Python runs once
        during a capture, so its copies would be replayed into one slice of the ring with every
        replay of the graph, never waited for (and allocating the ring then would break the
        capture)."""
        if self.capturing():
            raise RuntimeError(
                "fasttb: CUDA tensors cannot be logged while a CUDA graph is being captured; log "
                "the graph's output tensors after replaying it")

    def capturing(self) -> bool:
        """Whether the current stream is capturing a CUDA graph."""
        return bool(self.torch.cuda.is_current_stream_capturing())

    def copy_aside(self, dst: Any, snapshot: Any) -> Any:
        """Queue the copy of ``snapshot`` (a device tensor of this call's own, just made on the
        current stream) into the host tensor ``dst`` on the device's side stream, once the
        current stream has made it; returns an event that completes with the copy."""
        torch = self.torch
        device = snapshot.device
        side = self._side_streams.get(device)
        if side is None:
            side = self._side_streams[device] = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            dst.copy_(snapshot, non_blocking=True)
        # The caching allocator reuses the snapshot's memory only once the side stream is past
        # this copy, even though the snapshot is dropped as soon as this call returns.
        snapshot.record_stream(side)
        done = torch.cuda.Event()
        done.record(side)
        return done

    def record(self, values: Sequence[Any]) -> List[Any]:
        """The call's ticket: an event recorded on the current stream of each device copied on
        it, and the events of the side-stream copies."""
        torch = self.torch
        events = []
        for device in self._direct:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            events.append(event)
        events += self._aside
        self._direct, self._aside = set(), []
        return events

    def abandon(self) -> None:
        """A call failed after some of its copies were queued, and its slice is about to be
        given back. A copy on the current stream is ordered before any later copy into the
        slice; one on the side stream is not, so wait for those (this call's own copies only,
        and only on this error path)."""
        aside, self._direct, self._aside = self._aside, set(), []
        for event in aside:
            event.synchronize()

    def wait(self, ticket: List[Any]) -> None:
        """Wait (on the waiter thread, without the GIL) until the copies have landed."""
        for event in ticket:
            event.synchronize()


class _Call:
    """One logging call waiting for its device copies."""

    __slots__ = ("hold", "ticket", "arrays", "make", "owner", "offset", "seq")

    def __init__(self, hold: Any, ticket: Any, arrays: List[np.ndarray],
                 make: Callable[[List[np.ndarray]], None], owner: Any, offset: int, seq: int) -> None:
        self.hold = hold
        self.ticket = ticket
        self.arrays = arrays
        self.make = make
        self.owner = owner  # a weak reference to the SummaryWriter
        self.offset = offset  # of the call's slice of the ring; -1: a buffer of its own
        self.seq = seq


class Stager:
    """The process's pinned ring, its queue of calls, and the waiter thread."""

    def __init__(self, backend: Any, capacity: int) -> None:
        self.backend = backend
        self.capacity = capacity
        self.pid = os.getpid()
        self._buffer: Any = None
        self._view: Optional[np.ndarray] = None
        self._cond = threading.Condition()
        self._calls: Deque[_Call] = deque()
        self._taken: Deque[Tuple[int, int]] = deque()  # ring slices in the order they were taken
        self._head = 0  # where the next slice starts
        self._own_buffer = False  # a tensor larger than the ring is in flight
        self._submitted = 0
        self._done = 0
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    # -- the ring (all under self._cond) ---------------------------------------------------------

    def _fit(self, nbytes: int) -> int:
        """The offset of a free slice of ``nbytes`` (aligned), or -1 when there is none now."""
        if not self._taken:
            self._head = 0
            return 0 if nbytes <= self.capacity else -1
        tail = self._taken[0][0]
        if self._head > tail:  # not wrapped: room after the newest slice, or from the start
            if self._head + nbytes <= self.capacity:
                return self._head
            return 0 if nbytes <= tail else -1  # wrap, leaving the end unused
        return self._head if self._head + nbytes <= tail else -1

    def _take(self, size: int, block: bool) -> Tuple[Optional[int], bool]:
        """A slice of ``size`` bytes (a multiple of ALIGN) for a new call, waiting while the ring or
        the queue of calls is full (None instead when not ``block``), and whether it waited. -1:
        the call gets a buffer of its own, one such call at a time, once the ring is empty."""
        waited = False
        while True:
            if len(self._calls) < MAX_PENDING_CALLS:
                if size > self.capacity:
                    if not self._taken and not self._own_buffer:
                        self._own_buffer = True
                        return -1, waited
                else:
                    offset = self._fit(size)
                    if offset >= 0:
                        self._taken.append((offset, size))
                        self._head = offset + size
                        return offset, waited
            if not block:
                return None, waited
            waited = True
            self._cond.wait()

    def _give_back(self, offset: int) -> None:
        if offset < 0:
            self._own_buffer = False
        else:
            self._taken.popleft()  # calls finish in order, so their slices are the oldest
        self._cond.notify_all()

    # -- callers -----------------------------------------------------------------------------------

    def submit(self, owner: Any, core: Any, values: Sequence[Any],
               make: Callable[[List[np.ndarray]], None], drop: bool) -> int:
        """Queue a call: a hold on ``core``, the copies of ``values``, and ``make(arrays)`` to run
        on the waiter once they have landed. Returns QUEUED, WAITED (queued once the ring had
        room) or DROPPED (ring full, under ``drop``)."""
        if os.getpid() != self.pid:
            raise DeviceCallError(
                "fasttb: CUDA tensors cannot be logged in a forked child process, which cannot use "
                "its parent's CUDA context; start workers with the 'spawn' method, or log CPU values")
        backend = self.backend
        backend.check_stream()
        starts = []  # each value's place in the call's slice, aligned
        size = 0
        for v in values:
            starts.append(size)
            size += max(ALIGN, (backend.nbytes(v) + ALIGN - 1) // ALIGN * ALIGN)
        with self._cond:
            self._ensure_thread()
            offset, waited = self._take(size, block=not drop)
            if offset is None:
                return DROPPED
            hold = None
            try:
                hold = core.push_hold()
                if offset < 0:
                    buffer, _ = backend.allocate(size)
                    base = 0
                else:
                    if self._buffer is None:
                        self._buffer, self._view = backend.allocate(self.capacity)
                    buffer, base = self._buffer, offset
                arrays = [backend.copy(v, buffer, base + start) for v, start in zip(values, starts)]
                ticket = backend.record(values)
            except BaseException:
                if hold is not None:
                    hold.cancel()
                backend.abandon()  # before the slice can be taken again
                self._give_back_unused(offset)
                raise
            self._submitted += 1
            self._calls.append(_Call(hold, ticket, arrays, make, weakref.ref(owner), offset, self._submitted))
            self._cond.notify_all()
        return WAITED if waited else QUEUED

    def _give_back_unused(self, offset: int) -> None:
        # The slice of a call that never got queued: the newest in the ring (taken under the lock
        # just now), given back from the end.
        if offset < 0:
            self._own_buffer = False
        else:
            self._taken.pop()
            self._head = offset
        self._cond.notify_all()

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until every call submitted so far has been written into its hold. False on
        timeout. A no-op in a forked child (the calls were the parent's)."""
        if os.getpid() != self.pid:
            return True
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def cancel_pending(self) -> int:
        """Cancel every call not yet written (interpreter exit): their records are lost."""
        with self._cond:
            calls = list(self._calls)
            self._calls.clear()
            for call in calls:
                call.hold.cancel()
                self._give_back(call.offset)
            self._done = self._submitted
            self._stopping = True
            self._cond.notify_all()
        return len(calls)

    def pending(self) -> int:
        with self._cond:
            return self._submitted - self._done

    # -- the waiter --------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="fasttb-device", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._calls:
                    if self._stopping:
                        return
                    self._cond.wait()
                call = self._calls[0]
            error: Optional[BaseException] = None
            try:
                self.backend.wait(call.ticket)
            except BaseException as exc:  # a device-side error surfacing at the event
                error = exc
            with self._cond:
                if not self._calls or self._calls[0] is not call:
                    continue  # cancelled meanwhile (exit)
            owner = call.owner()
            if error is None:
                try:
                    call.hold.fill(lambda: call.make(call.arrays))
                except BaseException as exc:
                    error = exc
            else:
                call.hold.cancel()
            if error is not None and owner is not None:
                owner._device_failed(error)
            call.arrays = []
            with self._cond:
                if self._calls and self._calls[0] is call:
                    self._calls.popleft()
                    self._give_back(call.offset)
                    self._done = max(self._done, call.seq)
                self._cond.notify_all()


_stager: Optional[Stager] = None
_lock = threading.Lock()
_backend_factory: Callable[[], Any] = CudaBackend


def _bytes_setting(name: str, default: int, minimum: int) -> int:
    """A byte count from the environment variable ``name`` (``default`` when unset or empty)."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"{name}: expected a number of bytes, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name}: at least {minimum} bytes, got {value}")
    return value


def pool_bytes() -> int:
    """The pinned ring's size: ``FASTTB_PINNED_BYTES`` (a byte count), 64 MiB by default."""
    return _bytes_setting("FASTTB_PINNED_BYTES", DEFAULT_POOL_BYTES, ALIGN)


def side_copy_bytes() -> int:
    """The size from which a tensor goes to the host on a side stream, through a snapshot:
    ``FASTTB_SIDE_COPY_BYTES`` (a byte count), 1 MiB by default."""
    return _bytes_setting("FASTTB_SIDE_COPY_BYTES", DEFAULT_SIDE_COPY_BYTES, 0)


def is_device_value(value: Any) -> bool:
    """Whether ``value`` is a tensor to stage: a CUDA tensor of a plain dtype (or what a test
    backend owns). Imports torch only for a tensor that says it is on CUDA."""
    s = _stager
    if s is not None:
        return s.backend.owns(value)
    if _backend_factory is CudaBackend and not (
            _is_torch_tensor(value) and getattr(value, "is_cuda", False) is True):
        return False
    return _get().backend.owns(value)


def is_device_scalar(value: Any) -> bool:
    """A device value with one element: what the scalar calls copy."""
    return is_device_value(value) and value.numel() == 1


def is_device_array(value: Any) -> bool:
    """A device value with elements: what add_histogram and add_image(s) copy (an empty tensor
    takes the CPU path, which has nothing to copy)."""
    return is_device_value(value) and value.numel() > 0


def on_waiter_thread() -> bool:
    """Whether the calling thread is the waiter (which makes records inside holds)."""
    s = _stager
    return s is not None and s._thread is threading.current_thread()


def _get() -> Stager:
    global _stager
    with _lock:
        if _stager is None:
            _stager = Stager(_backend_factory(), pool_bytes())
        return _stager


def stager() -> Optional[Stager]:
    """The process's stager, if a device value was ever logged."""
    return _stager


def submit(owner: Any, core: Any, values: Sequence[Any], make: Callable[[List[np.ndarray]], None],
           drop: bool) -> int:
    """See Stager.submit."""
    return _get().submit(owner, core, values, make, drop)


def drain() -> None:
    """Wait for every device call made so far (flush, close)."""
    s = _stager
    if s is not None and s.pending():
        s.drain()


def finish_at_exit() -> None:
    """Give the waiter FASTTB_DEVICE_EXIT_TIMEOUT seconds to write what is pending, then cancel
    the rest, saying so on stderr."""
    s = _stager
    if s is None or not s.pending():
        return
    try:
        timeout = float(os.environ.get("FASTTB_DEVICE_EXIT_TIMEOUT", "10"))
    except ValueError:
        timeout = 10.0
    if s.drain(timeout):
        return
    lost = s.cancel_pending()
    if lost:
        print(f"fasttb: {lost} logging calls with CUDA tensors were lost at exit: their device "
              f"copies did not finish within {timeout:g} s", file=sys.stderr)


def use_backend(factory: Callable[[], Any]) -> None:
    """Replace the device backend (tests): the next device value starts a fresh stager."""
    global _stager, _backend_factory
    old = _stager
    if old is not None:
        old.drain(5)
        old.cancel_pending()
    _stager = None
    _backend_factory = factory


def _after_fork_in_child() -> None:
    # The parent's calls and waiter did not come along; its pinned buffer is not ours to use.
    # _lock may have been held by a parent thread making the first stager.
    global _stager, _lock
    _lock = threading.Lock()
    _stager = None if _stager is None else _ForkedStager(_stager)


class _ForkedStager(Stager):
    """What a forked child has: refuses device values with a clear error."""

    def __init__(self, parent: Stager) -> None:
        super().__init__(parent.backend, parent.capacity)
        self.pid = -1  # never this process: submit() raises


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
