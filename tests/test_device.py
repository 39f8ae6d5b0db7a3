"""The machinery behind CUDA tensors (fasttb._device and the core's holds), on CPU: a stand-in
backend (fake_device.py) plays the device, whose copies land when the test says so. What is
checked: call order in the file, values identical to logging the same values from the CPU, the
pinned ring's bound (wait, or drop), errors raised on the next call, flush/close waiting, threads,
exit and fork. The same paths on a real GPU are in test_cuda.py."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from conftest import accumulator, read_records, run_child
from fake_device import FakeBackend, FakeTensor
from tensorboard.compat.proto import event_pb2

from fasttb import SummaryWriter, _core, _device

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def fake():
    backend = FakeBackend()
    _device.use_backend(lambda: backend)
    try:
        yield backend
    finally:
        backend.release_all()
        _device.use_backend(_device.CudaBackend)


@pytest.fixture
def ring(monkeypatch):
    """Sets the pinned ring's size for the next stager (the fixture `fake` makes a fresh one)."""
    def set_size(nbytes: int) -> None:
        monkeypatch.setenv("FASTTB_PINNED_BYTES", str(nbytes))
    return set_size


def runs(logdir: str) -> dict:
    """Each run's records (raw payloads), keyed by the run's directory relative to `logdir`."""
    out = {}
    for root, _, names in os.walk(logdir):
        for name in sorted(names):
            if "tfevents" in name:
                out.setdefault(os.path.relpath(root, logdir), []).extend(read_records(os.path.join(root, name)))
    return out


def same_records(ours: str, cpu: str) -> dict:
    """Checks that two log dirs hold the same runs with the same records, all but each file's
    first (its wall time is the file's opening); returns the runs of ``ours``."""
    a, b = runs(ours), runs(cpu)
    assert sorted(a) == sorted(b)
    for run in a:
        assert len(a[run]) == len(b[run]) > 1, run
        assert a[run][1:] == b[run][1:], run
    return a


def scalars(logdir: str, tag: str) -> list:
    return [(e.step, e.summary.value[0].simple_value)
            for e in (event_pb2.Event.FromString(r) for r in runs(logdir).get(".", []))
            if e.summary.value and e.summary.value[0].tag == tag]


DTYPES = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64)


def log_everything(w: SummaryWriter, wrap) -> None:
    """Every kind that takes device tensors, and plain values between them; `wrap` makes a value
    a device value (FakeTensor) or leaves it a numpy array."""
    rng = np.random.default_rng(5)
    t = 1_700_000_000.0
    w.add_scalar("a", wrap(np.array(1.5, np.float32)), 0, walltime=t)
    w.add_scalar("a", 2.5, 1, walltime=t + 1)
    for i, dtype in enumerate(DTYPES):
        w.add_scalar("dtypes", wrap(np.array([7], dtype)), i, walltime=t + 2)
    w.add_scalar("new_style", wrap(np.array(0.1, np.float64)), 0, walltime=t + 3, new_style=True,
                 double_precision=True)
    w.add_scalars("s", {"x": wrap(np.array(3.0, np.float32)), "y": 4.0, "z": wrap(np.array(5, np.int64))},
                  2, walltime=t + 4)
    w.add_text("text", "between", 3, walltime=t + 5)
    values = rng.standard_normal(1000).astype(np.float32)
    w.add_histogram("h", wrap(values), 3, walltime=t + 6)
    w.add_histogram("h_auto", wrap(values.astype(np.float64)), 3, bins="auto", walltime=t + 7)
    w.add_histogram("h_max", wrap(values), 3, max_bins=10, walltime=t + 8)
    w.add_image("chw", wrap(rng.random((3, 8, 10), dtype=np.float32)), 4, walltime=t + 9)
    w.add_image("hwc", wrap(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)), 4, walltime=t + 10,
                dataformats="HWC")
    w.add_image("hw", wrap(rng.random((4, 4))), 4, walltime=t + 11, dataformats="HW")
    w.add_image("grey", wrap(rng.random((1, 5, 5), dtype=np.float32)), 4, walltime=t + 12)
    w.add_images("batch", wrap(rng.random((5, 3, 4, 4), dtype=np.float32)), 5, walltime=t + 13)
    w.add_scalar("a", 9.0, 6, walltime=t + 14)


def held_then_compared(fake, tmp_path, writer, log):
    """Logs ``log(w, FakeTensor)`` while no copy lands and checks that the file waits at the first
    call's hold; lets the copies land, logs the same values from numpy into a second run, and
    checks that both hold the same records. Returns the two writers and the device run's runs."""
    fake.auto = False
    ours, cpu = str(tmp_path / "device"), str(tmp_path / "cpu")
    w = writer(ours)
    log(w, FakeTensor)
    time.sleep(0.3)  # time enough for the worker to write what it may (it writes when idle)
    assert runs(ours).get(".", [])[1:] == []  # it waits at the first call's hold
    fake.release_all()
    w.close()
    with writer(cpu) as c:
        log(c, lambda a: a)
    return w, c, same_records(ours, cpu)


def test_device_values_keep_call_order_and_match_logging_from_the_cpu(fake, tmp_path):
    w, _, device_runs = held_then_compared(fake, tmp_path, SummaryWriter, log_everything)
    assert sorted(device_runs) == [".", "s_x", "s_y", "s_z"]
    assert w.stats()["dropped"] == 0


def test_the_value_logged_is_the_value_at_the_call(fake, ring, tmp_path):
    ring(256)  # four slices: the ring wraps many times below
    fake.auto = False
    w = SummaryWriter(str(tmp_path))
    t = FakeTensor(np.array([1.0]))
    w.add_scalar("a", t, 0)
    t.array[...] = 99.0  # changed in place before the copy "lands"
    w.add_scalar("a", t, 1)
    fake.release_all()
    for i in range(2, 200):
        t.array[...] = i
        w.add_scalar("a", t, i)
    w.close()
    assert scalars(str(tmp_path), "a") == [(0, 1.0), (1, 99.0)] + [(i, float(i)) for i in range(2, 200)]


def test_a_full_ring_makes_the_caller_wait_for_the_copies(fake, ring, tmp_path):
    ring(128)  # two slices of 64 bytes
    fake.auto = False
    w = SummaryWriter(str(tmp_path))
    w.add_scalar("a", FakeTensor(np.array(0.0)), 0)
    w.add_scalar("a", FakeTensor(np.array(1.0)), 1)
    third = threading.Thread(target=w.add_scalar, args=("a", FakeTensor(np.array(2.0)), 2))
    third.start()
    third.join(0.5)
    assert third.is_alive(), "the third call should wait for room in the ring"
    w.add_scalar("cpu", 1.0, 0)  # plain values never wait for the ring
    fake.release_all()
    third.join(10)
    assert not third.is_alive()
    w.close()
    assert scalars(str(tmp_path), "a") == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert scalars(str(tmp_path), "cpu") == [(0, 1.0)]
    assert w.stats()["stalls"] == 1  # the third call


def test_a_full_ring_drops_calls_under_on_full_drop(fake, ring, tmp_path):
    ring(128)
    fake.auto = False
    w = SummaryWriter(str(tmp_path), on_full="drop")
    for i in range(5):
        w.add_scalar("a", FakeTensor(np.array(float(i))), i)
        w.add_scalar("cpu", float(i), i)
    assert w.stats()["dropped"] == 3
    fake.release_all()
    w.close()
    assert scalars(str(tmp_path), "a") == [(0, 0.0), (1, 1.0)]
    assert scalars(str(tmp_path), "cpu") == [(i, float(i)) for i in range(5)]


def test_a_tensor_larger_than_the_ring_gets_a_buffer_of_its_own(fake, ring, tmp_path):
    ring(256)
    values = np.linspace(-3, 3, 1000)  # 8000 bytes
    ours, cpu = str(tmp_path / "device"), str(tmp_path / "cpu")
    with SummaryWriter(ours) as w:
        w.add_scalar("a", FakeTensor(np.array(1.0)), 0, walltime=1.0)
        w.add_histogram("h", FakeTensor(values), 1, walltime=2.0)
        w.add_scalar("a", FakeTensor(np.array(2.0)), 2, walltime=3.0)
    with SummaryWriter(cpu) as c:
        c.add_scalar("a", 1.0, 0, walltime=1.0)
        c.add_histogram("h", values, 1, walltime=2.0)
        c.add_scalar("a", 2.0, 2, walltime=3.0)
    assert 8000 in fake.allocations
    assert runs(ours)["."][1:] == runs(cpu)["."][1:]


def test_a_device_error_is_raised_on_the_next_call_and_earlier_records_are_kept(fake, tmp_path):
    w = SummaryWriter(str(tmp_path))
    w.add_scalar("a", FakeTensor(np.array(1.0)), 0)
    fake.fail_next = RuntimeError("CUDA error: device-side assert triggered")
    w.add_scalar("a", FakeTensor(np.array(2.0)), 1)  # returns: the error comes at the event
    _device.drain()
    with pytest.raises(RuntimeError, match="device-side assert"):
        w.add_scalar("b", 3.0, 2)  # even add_scalar's native path reports it
    w.add_scalar("a", FakeTensor(np.array(4.0)), 3)  # raised once; logging goes on
    w.add_scalar("b", 5.0, 4)
    w.close()
    assert scalars(str(tmp_path), "a") == [(0, 1.0), (3, 4.0)]
    assert scalars(str(tmp_path), "b") == [(4, 5.0)]


def test_an_error_found_when_the_values_arrive_has_the_cpu_paths_type(fake, tmp_path):
    w = SummaryWriter(str(tmp_path))
    values = np.array([np.nan, 1.0])  # numpy's "auto" bins refuse NaN, once they see it
    with pytest.raises(Exception) as cpu_error:
        w.add_histogram("h", values, 0, bins="auto")
    w.add_histogram("h", FakeTensor(values), 0, bins="auto")
    _device.drain()
    with pytest.raises(type(cpu_error.value)) as device_error:
        w.flush()
    assert str(device_error.value) == str(cpu_error.value)
    w.close()


@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_image_arguments_the_shape_decides_are_checked_at_the_call(fake, tmp_path, dialect):
    from fasttb.tensorboardX import SummaryWriter as TensorboardXWriter

    fake.auto = False
    w = (SummaryWriter if dialect == "torch" else TensorboardXWriter)(str(tmp_path))
    cases = [("add_image", (3, 4, 4), "XYZ"), ("add_image", (4, 4), "CHW"), ("add_image", (5, 4, 4), "CHW"),
             ("add_image", (3, 4, 4), 7), ("add_images", (2, 2, 4, 4), "NCHW"), ("add_images", (2, 3, 4), "NCHW")]
    for method, shape, dataformats in cases:
        image = np.zeros(shape, np.float32)
        with pytest.raises(Exception) as cpu_error:
            getattr(w, method)("i", image, 0, dataformats=dataformats)
        with pytest.raises(type(cpu_error.value)) as device_error:
            getattr(w, method)("i", FakeTensor(image), 0, dataformats=dataformats)
        assert str(device_error.value) == str(cpu_error.value)
    assert fake.tickets == []  # raised before anything was copied or queued
    w.add_image("i", FakeTensor(np.zeros((3, 4, 4), np.float32)), 1)
    fake.release_all()
    w.close()
    assert w.stats()["dropped"] == 0 and len(fake.tickets) == 1


@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_every_image_shape_and_layout_does_on_the_device_what_it_does_on_the_cpu(fake, tmp_path, dialect):
    """A grid of shapes and dataformats, good and bad: the device path raises at the call
    exactly when the CPU path raises, with its exception, and otherwise writes what it writes."""
    from fasttb.tensorboardX import SummaryWriter as TensorboardXWriter

    writer = SummaryWriter if dialect == "torch" else TensorboardXWriter
    rng = np.random.default_rng(11)
    shapes = [(4, 5), (1, 4, 5), (2, 4, 5), (3, 4, 5), (4, 4, 5), (5, 4, 5), (4, 5, 3), (4, 5, 1), (4, 5, 4),
              (2, 3, 4, 5), (2, 1, 4, 5), (2, 4, 4, 5), (2, 4, 5, 3), (9, 3, 2, 2), (1, 2, 3, 4, 5)]
    layouts = ["HW", "WH", "CHW", "HWC", "WHC", "chw", "hwC", "NCHW", "NHWC", "nchw", "CHX", "HWW", "NCH", "", 7]
    ours, cpu = writer(str(tmp_path / "device")), writer(str(tmp_path / "cpu"))
    outcomes = {"raised": 0, "logged": 0}
    for method in ("add_image", "add_images"):
        for shape in shapes:
            image = rng.random(shape, dtype=np.float32)
            for dataformats in layouts:
                try:
                    getattr(cpu, method)("i", image, 0, walltime=1.0, dataformats=dataformats)
                except Exception as error:
                    cpu_error = error
                else:
                    cpu_error = None
                try:
                    getattr(ours, method)("i", FakeTensor(image), 0, walltime=1.0, dataformats=dataformats)
                except Exception as error:
                    assert cpu_error is not None, (method, shape, dataformats, error)
                    assert (type(error), str(error)) == (type(cpu_error), str(cpu_error))
                    outcomes["raised"] += 1
                else:
                    assert cpu_error is None, (method, shape, dataformats, cpu_error)
                    outcomes["logged"] += 1
    ours.close()
    cpu.close()
    assert min(outcomes.values()) > 50, outcomes
    assert len(fake.tickets) == outcomes["logged"]
    assert len(same_records(str(tmp_path / "device"), str(tmp_path / "cpu"))["."]) == 1 + outcomes["logged"]


def test_flush_and_close_wait_for_the_device_copies(fake, tmp_path):
    fake.auto = False
    w = SummaryWriter(str(tmp_path))
    w.add_scalar("a", FakeTensor(np.array(1.0)), 0)
    releaser = threading.Timer(0.3, fake.release_all)
    releaser.start()
    started = time.monotonic()
    w.flush()
    assert time.monotonic() - started >= 0.25
    assert scalars(str(tmp_path), "a") == [(0, 1.0)]  # on disk once flush() returns
    fake.auto = False
    w.add_scalar("a", FakeTensor(np.array(2.0)), 1)
    threading.Timer(0.3, fake.release_all).start()
    w.close()
    assert scalars(str(tmp_path), "a") == [(0, 1.0), (1, 2.0)]


def test_threads_logging_device_and_plain_values_lose_nothing(fake, ring, tmp_path):
    ring(1024)
    w = SummaryWriter(str(tmp_path))

    def log(k: int) -> None:
        for i in range(300):
            w.add_scalar(f"dev{k}", FakeTensor(np.array(float(i))), i)
            w.add_scalar(f"cpu{k}", float(i), i)
            if i % 50 == 0:
                w.add_histogram(f"h{k}", FakeTensor(np.arange(10.0)), i)

    threads = [threading.Thread(target=log, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    for k in range(4):
        for tag in (f"dev{k}", f"cpu{k}"):
            assert scalars(str(tmp_path), tag) == [(i, float(i)) for i in range(300)], tag


@pytest.mark.parametrize("queue_bytes", [0, 4096], ids=["default queue", "4 KiB queue"])
def test_close_while_another_thread_logs_device_values(queue_bytes):
    # The threads log a given number of calls between two closes (up to 300 each), so that the
    # work a close waits for stays bounded: when they logged without pause, a worker slower than
    # they were (under TSan, with other tests running) left each close() twice the backlog of the
    # one before, and the test ran out of time. With a small queue, the waiter thread and the
    # callers wait for room when close() comes, and must give up.
    run_child(f"""
        import sys, tempfile, threading, time
        sys.path.insert(0, {TESTS!r})
        import numpy as np
        from fake_device import FakeBackend, FakeTensor
        from fasttb import SummaryWriter, _core, _device
        _device.use_backend(FakeBackend)
        if {queue_bytes}:
            _core.set_queue_limit({queue_bytes})
        w = SummaryWriter(tempfile.mkdtemp())
        stop = False
        budget = threading.Semaphore(0)
        def log():
            i = 0
            while True:
                budget.acquire()
                if stop:
                    return
                try:  # a call that meets close() half-way raises "Writer is closed", as on CPU
                    w.add_scalar("a", FakeTensor(np.array(float(i))), i)
                    w.add_histogram("h", FakeTensor(np.arange(100.0)), i)
                except OSError as exc:
                    assert "Writer is closed" in str(exc), exc
                i += 1
        threads = [threading.Thread(target=log) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(20):
                for _ in range(900):
                    budget.release()
                time.sleep(0.01)
                w.close()  # never raises what a call racing it met: those calls are dropped
        finally:
            stop = True
            for _ in threads:
                budget.release()
            for t in threads:
                t.join()
        w.close()
        print("ok")
    """, timeout=120)


_STALLED_WORKER = """
    import sys, tempfile, time
    sys.path.insert(0, {tests!r})
    import numpy as np
    from fake_device import FakeBackend, FakeTensor
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from fasttb import SummaryWriter, _core, _device
    _device.use_backend({backend})
    limit = {limit}
    _core.set_queue_limit(limit)
    d = tempfile.mkdtemp()

    def stop_worker(w):
        w.add_scalar("a", 0.0, 0)
        w.flush()  # the file's first records are written: only what comes next waits
        _core._pause_worker(True)

    def settle(stager):
        last = None
        for _ in range(50):  # until the waiter stops making progress
            time.sleep(0.2)
            if stager.pending() == last:
                return
            last = stager.pending()

    def histograms():
        acc = EventAccumulator(d, size_guidance={{"histograms": 0}})
        acc.Reload()
        return acc.Histograms("h")

    def histogram_steps():
        return [e.step for e in histograms()]
"""


def stalled_worker(limit: int = 64 << 10, backend: str = "FakeBackend") -> str:
    """The start of a child's code for tests with the worker stopped (stop_worker(w)): a queue
    bound of ``limit`` (the default holds four histograms of 2,000 float64), a log dir ``d``, and
    helpers to wait for the device waiter to settle and to read histograms "h" back."""
    return _STALLED_WORKER.format(tests=TESTS, limit=limit, backend=backend)


def test_records_of_landed_device_values_count_against_the_queue_limit():
    # The waiter thread makes the records of landed copies faster than a stopped worker writes
    # them: they must wait for room, as a CPU caller's do, rather than pile up in their holds.
    # The calls behind them then wait in the ring, which is bounded too.
    run_child(stalled_worker() + """
    w = SummaryWriter(d)
    stop_worker(w)
    values = np.arange(2000.0)  # 16 KB a record
    for i in range(100):
        w.add_histogram("h", FakeTensor(values + i), i)
    stager = _device.stager()
    settle(stager)
    queued = _core.engine_stats()["queue_bytes"]
    pending = stager.pending()
    _core._pause_worker(False)  # before any assert: a paused worker would hang the exit
    print("queued", queued, "pending", pending)
    assert 0 < queued <= limit + 20000, queued
    assert pending > 80, pending
    w.close()
    steps = histogram_steps()
    assert steps == list(range(100)), steps
    stats = w.stats()
    assert stats["queue_bytes"] == 0
    assert stats["queue_high_water"] <= limit + 20000, stats  # while they drained, too
    assert stats["stalls"] == 0, stats  # the waiter thread waited; no logging call did
    print("ok")
    """, timeout=60)


def test_threads_logging_device_and_plain_values_through_a_small_queue_lose_nothing():
    # Fillers waiting for room beside callers in line for it, the worker waiting at holds, and
    # the ring full: everything is written, in each thread's order, and nothing hangs.
    run_child(f"""
        import sys, tempfile, threading
        sys.path.insert(0, {TESTS!r})
        import numpy as np
        from fake_device import FakeBackend, FakeTensor
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from fasttb import SummaryWriter, _core, _device
        _device.use_backend(FakeBackend)
        _core.set_queue_limit(32 << 10)
        d = tempfile.mkdtemp()
        w = SummaryWriter(d)
        def log(k, device):
            wrap = FakeTensor if device else np.asarray
            for i in range(150):
                w.add_scalar(f"s{{k}}", wrap(np.array(float(i))), i)
                w.add_histogram(f"h{{k}}", wrap(np.arange(1000.0) + i), i)  # 8 KB a record
        threads = [threading.Thread(target=log, args=(k, k % 2 == 0)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        w.close()
        acc = EventAccumulator(d, size_guidance={{"scalars": 0, "histograms": 0}})
        acc.Reload()
        for k in range(4):
            assert [e.step for e in acc.Scalars(f"s{{k}}")] == list(range(150)), k
            hist = acc.Histograms(f"h{{k}}")
            assert [e.step for e in hist] == list(range(150)), k
            assert [e.histogram_value.max for e in hist] == [999.0 + i for i in range(150)], k
        assert w.stats()["dropped"] == 0
        print("ok")
    """, timeout=120)


def test_a_full_queue_never_makes_a_dropping_caller_wait_for_device_records():
    # on_full="drop": the waiter waits for room in the queue, and the calls behind it drop at the
    # ring rather than wait. Were the caller made to wait, the stopped worker would hang it.
    run_child(stalled_worker() + """
    w = SummaryWriter(d, on_full="drop")
    stop_worker(w)
    for i in range(40):
        w.add_histogram("h", FakeTensor(np.arange(2000.0) + i), i)
    settle(_device.stager())
    _core._pause_worker(False)
    w.close()
    steps, dropped = histogram_steps(), w.stats()["dropped"]
    print(steps, dropped)
    # Calls drop while the ring is full, and later ones get in once it has room again.
    assert steps == sorted(set(steps)) and steps[:4] == [0, 1, 2, 3], steps
    assert len(steps) + dropped == 40
    print("ok")
    """, env={"FASTTB_PINNED_BYTES": str(4 * 16000)}, timeout=60)


def test_cancelling_at_exit_ends_a_wait_for_room_of_the_device_waiter():
    # At exit the calls still pending are cancelled (finish_at_exit); the waiter may be waiting
    # for room for one of them (a hung worker): that wait must end, and the call's record drop.
    run_child(stalled_worker() + """
    w = SummaryWriter(d)
    stop_worker(w)
    for i in range(20):
        w.add_histogram("h", FakeTensor(np.arange(2000.0) + i), i)
    stager = _device.stager()
    settle(stager)
    assert stager.pending() == 16, stager.pending()  # four made, the fifth waits for room
    assert stager.cancel_pending() == 16
    stager._thread.join(5)
    alive = stager._thread.is_alive()
    _core._pause_worker(False)
    assert not alive, "the waiter still waits for room"
    w.close()
    assert histogram_steps() == [0, 1, 2, 3]
    assert w.stats()["dropped"] == 1  # the fifth, dropped as it waited
    print("ok")
    """, timeout=60)


def test_a_caller_in_line_for_room_and_the_waiter_both_get_in_when_the_worker_goes_on():
    # The queue is full; the waiter waits for room for a device call's record, and a CPU caller
    # waits in line behind it. Callers in line go first, then the waiter's record goes into its
    # hold; the file keeps call order.
    run_child(stalled_worker() + """
    import threading
    w = SummaryWriter(d)
    stop_worker(w)
    for i in range(4):
        w.add_histogram("h", np.arange(2000.0) + i, i)  # the queue is full
    w.add_histogram("h", FakeTensor(np.arange(2000.0) + 4), 4)
    cpu = threading.Thread(target=w.add_histogram, args=("h", np.arange(6000.0), 5))
    cpu.start()
    settle(_device.stager())
    assert _device.stager().pending() == 1 and cpu.is_alive()  # both wait
    _core._pause_worker(False)
    cpu.join(10)
    assert not cpu.is_alive()
    w.close()
    assert histogram_steps() == [0, 1, 2, 3, 4, 5]
    assert w.stats()["dropped"] == 0
    print("ok")
    """, timeout=60)


def test_a_hold_filled_while_the_worker_waits_at_an_earlier_one_goes_over_the_limit(tmp_path):
    # Out of order: the worker waits at `first`, so no room can come before `first` is filled;
    # filling `second` meanwhile must not wait for it.
    run_child(f"""
        import numpy as np
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from fasttb import SummaryWriter, _core
        _core.set_queue_limit(64 << 10)
        d = {str(tmp_path)!r}
        w = SummaryWriter(d)
        core = w._main()
        first = core.push_hold()
        w.add_histogram("h", np.arange(2000.0), 10)  # 16 KB a record
        second = core.push_hold()
        w.add_histogram("h", np.arange(2000.0), 20)
        second.fill(lambda: [w.add_histogram("h", np.arange(2000.0), 11 + i) for i in range(5)])
        first.fill(lambda: [w.add_histogram("h", np.arange(2000.0), i) for i in range(5)])
        w.close()
        acc = EventAccumulator(d, size_guidance={{"histograms": 0}})
        acc.Reload()
        steps = [e.step for e in acc.Histograms("h")]
        assert steps == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 20], steps
        assert _core.engine_stats()["queue_bytes"] == 0
        print("ok")
    """, timeout=60)


def test_a_call_whose_file_closes_while_its_records_are_made_is_dropped(fake, tmp_path):
    # The worst moment for close() on another thread: after the waiter saw the file open, before
    # the call's record reached it. Played here by the call's own record maker.
    w = SummaryWriter(str(tmp_path))
    w.add_scalar("a", 1.0, 0)
    core = w._main()

    def make(arrays):
        core.close(wait=False)
        core.push_scalar("b", float(arrays[0]), 1, 0.0, 0)

    w._defer(core, [FakeTensor(np.array(2.0))], make)
    _device.drain()
    w.close()  # before, it raised the "Writer is closed" the record maker met
    assert w.stats()["dropped"] == 1
    assert scalars(str(tmp_path), "a") == [(0, 1.0)] and scalars(str(tmp_path), "b") == []


def test_exit_goes_past_copies_that_never_land():
    result = run_child(f"""
        import sys, tempfile
        sys.path.insert(0, {TESTS!r})
        import numpy as np
        from fake_device import FakeBackend, FakeTensor
        from fasttb import SummaryWriter, _device
        backend = FakeBackend()
        backend.auto = False  # a device that never finishes
        _device.use_backend(lambda: backend)
        d = tempfile.mkdtemp()
        w = SummaryWriter(d)
        w.add_scalar("cpu", 1.0, 0)
        w.add_scalar("dev", FakeTensor(np.array(2.0)), 1)
        w.add_scalar("cpu", 3.0, 2)
        print(d)
    """, env={"FASTTB_DEVICE_EXIT_TIMEOUT": "0.5"}, timeout=60)
    assert "were lost at exit" in result.stderr
    assert scalars(result.stdout.strip(), "cpu") == [(0, 1.0), (2, 3.0)]
    assert scalars(result.stdout.strip(), "dev") == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_refuses_device_values():
    result = run_child(f"""
        import os, sys, tempfile
        sys.path.insert(0, {TESTS!r})
        import numpy as np
        from fake_device import FakeBackend, FakeTensor
        from fasttb import SummaryWriter, _device
        _device.use_backend(FakeBackend)
        w = SummaryWriter(tempfile.mkdtemp())
        w.add_scalar("a", FakeTensor(np.array(1.0)), 0)
        pid = os.fork()
        if pid == 0:
            try:
                w.add_scalar("a", FakeTensor(np.array(2.0)), 1)
            except RuntimeError as exc:
                print("child:", exc, flush=True)
                w.add_scalar("a", 3.0, 2)  # plain values still work in the child
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        w.close()
    """, timeout=60)
    assert "forked child" in result.stdout and "spawn" in result.stdout


def test_a_child_forked_while_a_parent_thread_holds_a_holds_lock_exits(tmp_path):
    # The worker lets a hold go (the holds' registry lock) and the waiter appends to one (the
    # hold's lock) all the time while CUDA values are logged; a DataLoader worker forked at that
    # moment inherited the lock held, and hung for good: when its copy of the device queue let
    # the parent's holds go (cancel), and at its exit (cancel_holds). _keep_locked makes that
    # moment last 3 s; the child must not wait for it.
    parent, child = tmp_path / "parent", tmp_path / "child"
    result = run_child(f"""
        import os, sys
        sys.path.insert(0, {TESTS!r})
        from forking import exited_within
        from fasttb import SummaryWriter, _lifecycle
        w = SummaryWriter({str(parent)!r})
        core = w._main()
        w.add_scalar("a", 0.0, 0)
        hold = core.push_hold()
        w.add_scalar("a", 2.0, 2)
        hold._keep_locked(3.0)
        pid = os.fork()
        if pid == 0:
            print("child: inherited hold resolved:", hold.resolved, flush=True)
            del hold  # cancels, then lets go of the parent's hold
            c = SummaryWriter({str(child)!r})  # holds of its own still work
            own = c._main().push_hold()
            c.add_scalar("b", 2.0, 2)
            own.fill(lambda: c._main().push_scalar("b", 1.0, 1, 1.0, 0))
            c.close()
            _lifecycle.flush_open_files()  # what exit and multiprocessing's finalizers run
            print("child: done", flush=True)
            os._exit(0)
        if not exited_within(pid, 20):
            print("child: hung", flush=True)
        hold.fill(lambda: core.push_scalar("a", 1.0, 1, 1.0, 0))  # once the lock is let go
        w.close()
    """, timeout=120)
    assert result.stdout.splitlines() == ["child: inherited hold resolved: True", "child: done"], result.stdout
    assert scalars(str(parent), "a") == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert scalars(str(child), "b") == [(1, 1.0), (2, 2.0)]
    for run, tag, expected in ((parent, "a", [(0, 0.0), (1, 1.0), (2, 2.0)]), (child, "b", [(1, 1.0), (2, 2.0)])):
        assert [(s.step, s.value) for s in accumulator(str(run)).Scalars(tag)] == expected


def test_a_child_forked_while_the_parent_makes_its_device_queue_can_make_its_own(tmp_path):
    # The lock around making the process's device queue, held by a parent thread at the fork,
    # stayed held in the child, whose first device value then waited for it for good.
    run_child(f"""
        import os, sys
        sys.path.insert(0, {TESTS!r})
        import numpy as np
        from fake_device import FakeBackend, FakeTensor
        from forking import exited_within
        from fasttb import SummaryWriter, _device
        _device.use_backend(FakeBackend)
        with _device._lock:  # as while another thread makes the queue
            pid = os.fork()
            if pid == 0:
                with SummaryWriter({str(tmp_path)!r}) as w:
                    w.add_scalar("a", FakeTensor(np.array(1.5)), 1)
                os._exit(0)
            if not exited_within(pid, 20):
                sys.exit("the child hung")
    """, timeout=60)
    assert scalars(str(tmp_path), "a") == [(1, 1.5)]
    assert [(s.step, s.value) for s in accumulator(str(tmp_path)).Scalars("a")] == [(1, 1.5)]


def test_holds_in_the_core(tmp_path):
    w = SummaryWriter(str(tmp_path))
    core = w._main()
    w.add_scalar("a", 0.0, 0)
    first = core.push_hold()
    second = core.push_hold()
    w.add_scalar("a", 3.0, 3)
    second.fill(lambda: core.push_scalar("a", 2.0, 2, 1.0, 0))
    assert second.resolved and not first.resolved
    with pytest.raises(ValueError, match="already filled"):
        second.fill(lambda: None)

    def nested() -> None:
        core.push_scalar("a", 1.0, 1, 1.0, 0)
        with pytest.raises(ValueError, match="while one is being filled"):
            core.push_hold()

    first.fill(nested)
    third = core.push_hold()
    w.add_scalar("a", 4.0, 4)
    del third  # dropped unfilled: cancelled, the worker goes on
    cancelled = core.push_hold()
    cancelled.cancel()
    cancelled.fill(lambda: None) if not cancelled.resolved else None
    w.close()
    assert scalars(str(tmp_path), "a") == [(i, float(i)) for i in range(5)]
    with pytest.raises(OSError):
        core.push_hold()  # closed


def test_a_fill_that_raises_keeps_what_it_made(tmp_path):
    w = SummaryWriter(str(tmp_path))
    core = w._main()
    hold = core.push_hold()

    def make() -> None:
        core.push_scalar("a", 1.0, 1, 1.0, 0)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        hold.fill(make)
    w.add_scalar("a", 2.0, 2)
    w.close()
    assert scalars(str(tmp_path), "a") == [(1, 1.0), (2, 2.0)]


def test_cancel_holds_lets_the_worker_go_on(tmp_path):
    w = SummaryWriter(str(tmp_path))
    core = w._main()
    kept = [core.push_hold() for _ in range(3)]
    w.add_scalar("a", 1.0, 1)
    assert _core.cancel_holds() == 3
    w.close()
    assert scalars(str(tmp_path), "a") == [(1, 1.0)]
    assert all(h.resolved for h in kept)


def test_plain_values_never_touch_the_device_module(tmp_path):
    # No device value was logged by this process's writers here: no stager, no waiter thread.
    run_child("""
        import sys, tempfile
        import numpy as np
        from fasttb import SummaryWriter, _device
        with SummaryWriter(tempfile.mkdtemp()) as w:
            w.add_scalar("a", np.float32(1), 0)
            w.add_histogram("h", np.arange(10), 0)
            w.add_image("i", np.zeros((3, 4, 4)), 0)
        assert _device.stager() is None
        assert "torch" not in sys.modules
    """)


def test_the_ring_size_setting_is_checked(monkeypatch):
    monkeypatch.setenv("FASTTB_PINNED_BYTES", "lots")
    with pytest.raises(ValueError, match="FASTTB_PINNED_BYTES"):
        _device.pool_bytes()
    monkeypatch.setenv("FASTTB_PINNED_BYTES", "1e6")
    assert _device.pool_bytes() == 1_000_000


class TorchOnCpu(_device.CudaBackend):
    """CudaBackend's copies and views, with CPU tensors marked as device values: what the CUDA
    path does with each dtype and layout, short of the device itself."""

    def owns(self, value):
        return getattr(value, "_on_fake_device", False) is True

    def allocate(self, nbytes):
        buffer = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8)  # not pinned: no CUDA here
        return buffer, buffer.numpy()

    gate = threading.Event()  # the "side stream" runs once it is set
    gate.set()

    fail_at = None  # the number (1, 2, ...) of a copy that raises, as a device error would

    def copy(self, value, buffer, offset):
        self.copied = getattr(self, "copied", 0) + 1
        if self.copied == self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().copy(value, buffer, offset)

    def copy_aside(self, dst, snapshot):
        return (dst, snapshot)  # a side stream that runs late: when the waiter waits

    capturing_graph = False

    def capturing(self):
        return self.capturing_graph

    def record(self, values):
        ticket, self._aside, self._direct = self._aside, [], set()
        return ticket

    def wait(self, ticket):
        self.gate.wait()
        for dst, snapshot in ticket:
            dst.copy_(snapshot)

    def abandon(self):
        self.wait(self._aside)  # what CudaBackend's event.synchronize() is
        self._direct, self._aside = set(), []


@pytest.mark.parametrize("side_copy_bytes", ["", "0"])  # large tensors aside (the default), or all
def test_the_cuda_backends_copies_give_what_the_cpu_path_logs(tmp_path, monkeypatch, side_copy_bytes):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("FASTTB_SIDE_COPY_BYTES", side_copy_bytes)

    def marked(a):
        t = torch.from_numpy(np.ascontiguousarray(a))
        t._on_fake_device = True
        return t

    _device.use_backend(TorchOnCpu)
    try:
        ours, cpu = str(tmp_path / "device"), str(tmp_path / "cpu")
        bf16 = torch.tensor([1.7, -2.3, 1e-3], dtype=torch.bfloat16)
        wide = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 24
        with SummaryWriter(ours) as w:
            log_everything(w, marked)  # its one-element scalars take add_scalar's native path
            for i, dtype in enumerate(DTYPES):  # so these go by the general one, as CUDA ones do
                w._add_scalar("dtypes_general", marked(np.array([7], dtype)), i, walltime=1.0)
            for tag, t in (("bf16", bf16[:1].reshape(())), ("bf16_h", bf16), ("transposed", wide.T)):
                t = t.clone() if tag != "transposed" else t
                t._on_fake_device = True
                if tag == "transposed":
                    w.add_image(tag, t, 0, walltime=1.0, dataformats="HW")  # not contiguous
                elif tag == "bf16":
                    w.add_scalar(tag, t, 0, walltime=1.0)
                else:
                    w.add_histogram(tag, t, 0, walltime=1.0)
        assert _device.stager().backend.copied == 23  # every other device value went the device way
        with SummaryWriter(cpu) as c:
            log_everything(c, lambda a: a)
            for i, dtype in enumerate(DTYPES):
                c.add_scalar("dtypes_general", np.array([7], dtype), i, walltime=1.0)
            c.add_scalar("bf16", bf16[0], 0, walltime=1.0)
            c.add_histogram("bf16_h", bf16, 0, walltime=1.0)
            c.add_image("transposed", wide.T, 0, walltime=1.0, dataformats="HW")
        a, b = runs(ours), runs(cpu)
        assert sorted(a) == sorted(b)
        for run in a:
            assert a[run][1:] == b[run][1:], run
    finally:
        _device.use_backend(_device.CudaBackend)


def log_tensorboardx_scalars(w, wrap) -> None:
    """The tensorboardX dialect's add_scalar in each of its forms; `wrap` as in log_everything."""
    t = 1_700_000_000.0
    w.add_scalar("a", wrap(np.array(1.5, np.float32)), 0, walltime=t)
    w.add_scalar("a", 2.5, 1, walltime=t + 1)
    for i, dtype in enumerate(DTYPES):
        w.add_scalar("dtypes", wrap(np.array([7], dtype)), i, walltime=t + 2)
    w.add_scalar("titled", wrap(np.array(0.25)), 2, walltime=t + 3, display_name="Loss",
                 summary_description="what it minimises")
    with w.use_metadata(global_step=9, walltime=t + 4):
        w.add_scalar("defaults", wrap(np.array(3, np.int64)))
    w.add_scalar("a", 4.0, 3, walltime=t + 5)
    w.add_scalars("s", {"x": wrap(np.array(3.0, np.float32)), "y": 4.0, "z": wrap(np.array([5], np.int64))},
                  4, walltime=t + 6)
    w.add_scalars("s", {"x": 6.0, "y": wrap(np.array(7.5, np.float64))}, 5, walltime=t + 7)
    w.add_scalar("a", 8.0, 6, walltime=t + 8)


def test_the_tensorboardx_dialect_takes_device_scalars_too(fake, tmp_path):
    from fasttb.tensorboardX import SummaryWriter as TensorboardXWriter

    w, c, a = held_then_compared(fake, tmp_path, TensorboardXWriter, log_tensorboardx_scalars)
    assert sorted(a) == [".", "s/x", "s/y", "s/z"]
    assert len(a["."]) == 1 + 2 + len(DTYPES) + 4
    dialect_dicts = [{os.path.relpath(k, str(tmp_path / d)): v for k, v in writer.scalar_dict.items()}
                     for writer, d in ((w, "device"), (c, "cpu"))]
    assert dialect_dicts[0] == dialect_dicts[1] and dialect_dicts[0]["s/y"][1] == [1_700_000_007.0, 5, 7.5]

    w = TensorboardXWriter(str(tmp_path / "error"))
    fake.fail_next = RuntimeError("CUDA error: device-side assert triggered")
    w.add_scalar("a", FakeTensor(np.array(2.0)), 1)
    _device.drain()
    with pytest.raises(RuntimeError, match="device-side assert"):
        w.add_scalar("b", 3.0, 2)
    w.add_scalar("a", FakeTensor(np.array(4.0)), 3)
    w.close()
    assert scalars(str(tmp_path / "error"), "a") == [(3, 4.0)]


def log_tensorboardx_pictures(w, wrap) -> None:
    """The tensorboardX dialect's histograms and images by its own rules (assigned default
    bins, pixels times 255 with no clipping, RGBA batches tiled); `wrap` as in log_everything."""
    rng = np.random.default_rng(7)
    t = 1_700_000_000.0
    values = rng.standard_normal(500).astype(np.float32)
    w.add_histogram("h", wrap(values), 0, walltime=t)
    w.add_scalar("between", 1.0, 0, walltime=t + 1)
    w.add_histogram("h_auto", wrap(values.astype(np.float64)), 1, bins="auto", walltime=t + 2)
    w.add_histogram("h_max", wrap(values), 2, max_bins=7, walltime=t + 3)
    w.default_bins = [-1.0, 0.0, 1.0]
    w.add_histogram("h_assigned", wrap(values), 3, walltime=t + 4)
    w.add_image("wraps", wrap(rng.random((3, 6, 5), dtype=np.float32) * 1.6), 4, walltime=t + 5)
    w.add_image("hwc", wrap(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)), 4, walltime=t + 6,
                dataformats="HWC")
    w.add_image("hw", wrap(rng.random((4, 4))), 4, walltime=t + 7, dataformats="HW")
    w.add_images("batch", wrap(rng.random((5, 3, 4, 4), dtype=np.float32)), 5, walltime=t + 8)
    w.add_images("rgba", wrap(rng.random((3, 4, 4, 4), dtype=np.float32)), 5, walltime=t + 9,
                 dataformats="NHWC")
    w.add_scalar("between", 2.0, 6, walltime=t + 10)


def test_the_tensorboardx_dialect_takes_device_histograms_and_images(fake, tmp_path):
    from fasttb.tensorboardX import SummaryWriter as TensorboardXWriter

    _, _, device_runs = held_then_compared(fake, tmp_path, TensorboardXWriter, log_tensorboardx_pictures)
    assert len(fake.tickets) == 9  # each device value was copied, none converted on the caller
    assert len(device_runs["."]) == 1 + 11

    with TensorboardXWriter(str(tmp_path / "off"), write_to_disk=False) as off:
        log_tensorboardx_pictures(off, FakeTensor)
    assert len(fake.tickets) == 9  # nothing to copy for


def test_tensorboardx_export_scalars_to_json_waits_for_device_values(fake, tmp_path):
    import json

    from fasttb.tensorboardX import SummaryWriter as TensorboardXWriter

    fake.auto = False
    w = TensorboardXWriter(str(tmp_path / "run"))
    w.add_scalars("m", {"a": FakeTensor(np.array(0.5)), "b": 2.0}, 1, walltime=10.0)
    assert w.scalar_dict[os.path.join(str(tmp_path / "run"), "m", "a")] == [[10.0, 1, None]]
    threading.Timer(0.2, fake.release_all).start()
    w.export_scalars_to_json(str(tmp_path / "all.json"))
    with open(tmp_path / "all.json") as f:
        exported = {os.path.relpath(k, str(tmp_path / "run")): v for k, v in json.load(f).items()}
    assert exported == {"m/a": [[10.0, 1, 0.5]], "m/b": [[10.0, 1, 2.0]]}
    w.close()


def test_a_large_tensor_is_snapshot_at_the_call_before_its_side_copy(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("FASTTB_SIDE_COPY_BYTES", "4096")
    _device.use_backend(TorchOnCpu)
    rng = np.random.default_rng(3)
    weight, image = rng.standard_normal(4096).astype(np.float32), rng.random((3, 32, 32), dtype=np.float32)
    try:
        TorchOnCpu.gate.clear()
        with SummaryWriter(str(tmp_path / "device")) as w:
            for tag, a in (("w", weight), ("i", image), ("small", weight[:8])):
                t = torch.from_numpy(a.copy())
                t._on_fake_device = True
                if tag == "i":
                    w.add_image(tag, t, 0, walltime=1.0)
                else:
                    w.add_histogram(tag, t, 0, walltime=1.0)
                t.mul_(-3.0)  # the next training step, before the side stream copies
            backend = _device.stager().backend
            assert backend.side_copy_bytes == 4096 and backend.copied == 3
            TorchOnCpu.gate.set()
    finally:
        TorchOnCpu.gate.set()
        _device.use_backend(_device.CudaBackend)
    with SummaryWriter(str(tmp_path / "cpu")) as c:
        c.add_histogram("w", weight, 0, walltime=1.0)
        c.add_image("i", image, 0, walltime=1.0)
        c.add_histogram("small", weight[:8], 0, walltime=1.0)
    same_records(str(tmp_path / "device"), str(tmp_path / "cpu"))


def test_logging_a_device_tensor_inside_graph_capture_is_refused_at_the_call(tmp_path):
    torch = pytest.importorskip("torch")
    _device.use_backend(TorchOnCpu)
    try:
        with SummaryWriter(str(tmp_path)) as w:
            def marked(a):
                t = torch.from_numpy(np.asarray(a, np.float32))
                t._on_fake_device = True
                return t

            w._add_scalar("a", marked([1.0]), 0)  # the general path, as CUDA scalars take
            backend = _device.stager().backend
            backend.capturing_graph = True
            with pytest.raises(RuntimeError, match="CUDA graph is being captured"):
                w._add_scalar("a", marked([2.0]), 1)
            with pytest.raises(RuntimeError, match="CUDA graph is being captured"):
                w.add_histogram("h", marked(np.ones(10)), 1)
            backend.capturing_graph = False
            w._add_scalar("a", marked([3.0]), 2)
            assert _device.stager().pending() <= 2
    finally:
        _device.use_backend(_device.CudaBackend)
    assert scalars(str(tmp_path), "a") == [(0, 1.0), (2, 3.0)]
    assert w.stats()["dropped"] == 0


def test_a_call_that_fails_after_a_side_copy_waits_for_it_before_its_slice_is_reused(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("FASTTB_SIDE_COPY_BYTES", "0")  # every value aside
    _device.use_backend(TorchOnCpu)

    def marked(a):
        t = torch.from_numpy(np.asarray(a, np.float32))
        t._on_fake_device = True
        return t

    try:
        with SummaryWriter(str(tmp_path)) as w:
            w._add_scalar("warm", marked([0.0]), 0)  # the ring exists, its first slice free again
            w.flush()
            backend = _device.stager().backend
            backend.fail_at = backend.copied + 2  # the second value of the next call
            TorchOnCpu.gate.clear()  # side copies stay queued...
            threading.Timer(0.3, TorchOnCpu.gate.set).start()
            with pytest.raises(RuntimeError, match="illegal memory access"):
                w.add_scalars("s", {"a": marked([1.0]), "b": marked([2.0])}, 1)
            assert TorchOnCpu.gate.is_set()  # ...and the failed call waited for its own
            assert backend._aside == [] and backend._direct == set()
            w.add_scalars("s", {"a": marked([3.0]), "b": marked([4.0])}, 2)
    finally:
        TorchOnCpu.gate.set()
        _device.use_backend(_device.CudaBackend)
    logged = {os.path.basename(run): [(e.step, e.summary.value[0].simple_value)
                                       for e in (event_pb2.Event.FromString(r) for r in records[1:])]
              for run, records in runs(str(tmp_path)).items() if run != "."}
    assert logged == {"s_a": [(2, 3.0)], "s_b": [(2, 4.0)]}


def test_the_side_copy_setting_is_checked(monkeypatch):
    for text in ("big", "-1"):
        monkeypatch.setenv("FASTTB_SIDE_COPY_BYTES", text)
        with pytest.raises(ValueError, match="FASTTB_SIDE_COPY_BYTES"):
            _device.side_copy_bytes()
    monkeypatch.setenv("FASTTB_SIDE_COPY_BYTES", "2e6")
    assert _device.side_copy_bytes() == 2_000_000
    monkeypatch.delenv("FASTTB_SIDE_COPY_BYTES")
    assert _device.side_copy_bytes() == 1 << 20


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
