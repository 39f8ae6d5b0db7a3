"""CUDA tensors on a real GPU (skipped where torch has no CUDA device; the same machinery runs on
CPU in test_device.py). Every logging call runs inside ``torch.cuda.set_sync_debug_mode("error")``,
so a synchronising call anywhere in fasttb fails the test; the records are compared with the
same values logged from the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import run_child
from test_device import (log_everything, log_tensorboardx_pictures, log_tensorboardx_scalars, same_records,
                         scalars, stalled_worker)

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from fasttb import SummaryWriter, _device  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def fresh_stager(monkeypatch):
    """Each test starts a stager of its own (FASTTB_PINNED_BYTES is read when it starts)."""
    _device.use_backend(_device.CudaBackend)
    yield
    _device.use_backend(_device.CudaBackend)


class NoSync:
    """Fails any synchronising CUDA call made inside it."""

    def __enter__(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc) -> None:
        torch.cuda.set_sync_debug_mode("default")


def on_device(values: list) -> list:
    """CUDA copies of numpy arrays and CPU tensors, made before NoSync (a host-to-device copy
    synchronises)."""
    return [v.cuda() if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v)).cuda()
            for v in values]


def logs_as_the_cpu_does(tmp_path, writer, log) -> None:
    """Runs ``log(w, wrap)`` on a probe writer that keeps each value given to ``wrap``, then on a
    writer given CUDA copies of them inside NoSync, then on one given the values themselves;
    the last two must write the same records."""
    captured: list = []
    with writer(str(tmp_path / "probe")) as probe:
        log(probe, lambda a: captured.append(a) or a)
    tensors = iter(on_device(captured))
    ours, cpu = str(tmp_path / "cuda"), str(tmp_path / "cpu")
    w = writer(ours)
    with NoSync():
        log(w, lambda a: next(tensors))
    w.close()
    with writer(cpu) as c:
        log(c, lambda a: a)
    same_records(ours, cpu)


def test_cuda_values_are_logged_without_a_sync_and_match_the_cpu(tmp_path):
    def log(w, wrap) -> None:
        log_everything(w, wrap)
        bf16 = wrap(torch.tensor(1.7, dtype=torch.bfloat16))
        w.add_scalar("bf16", bf16, 0, walltime=1.0)
        w.add_histogram("bf16_h", bf16.expand(10), 0, walltime=2.0)  # a view with stride 0

    logs_as_the_cpu_does(tmp_path, SummaryWriter, log)


def test_the_tensorboardx_dialect_logs_cuda_tensors_without_a_sync(tmp_path):
    from fasttb.tensorboardX import SummaryWriter as TensorboardXWriter

    def log(w, wrap) -> None:
        log_tensorboardx_scalars(w, wrap)
        log_tensorboardx_pictures(w, wrap)

    logs_as_the_cpu_does(tmp_path, TensorboardXWriter, log)


def test_the_value_logged_is_the_value_at_the_call(tmp_path):
    x = torch.zeros((), device="cuda")
    big = torch.randn(4096, 4096, device="cuda")
    w = SummaryWriter(str(tmp_path))
    with NoSync():
        for i in range(1, 101):
            big = big @ big.T / 4096  # keep the stream busy, so the copies run late
            x.add_(1)
            w.add_scalar("x", x, i)
            x.mul_(1)  # in place, after the call
            x.add_(1000)
            x.sub_(1000)
    w.close()
    assert scalars(str(tmp_path), "x") == [(i, float(i)) for i in range(1, 101)]


def test_a_large_tensor_goes_aside_with_its_value_at_the_call(tmp_path):
    h = torch.randint(-1000, 1000, (1 << 19,), device="cuda").float()  # 2 MiB: snapshot, side stream
    start = h.cpu().numpy()
    big = torch.randn(4096, 4096, device="cuda")
    ours, cpu = str(tmp_path / "cuda"), str(tmp_path / "cpu")
    w = SummaryWriter(ours)
    with NoSync():
        for i in range(20):
            big = big @ big.T / 4096  # keep the stream busy, so the copies run late
            w.add_histogram("h", h, i, walltime=1.0)
            h.add_(1.0)  # in place, after the call (integers: exact)
    w.close()
    with SummaryWriter(cpu) as c:
        for i in range(20):
            c.add_histogram("h", start + np.float32(i), i, walltime=1.0)
    same_records(ours, cpu)


def test_logging_inside_graph_capture_is_refused_and_the_graph_still_replays(tmp_path):
    x = torch.arange(10, device="cuda", dtype=torch.float32)
    ours, cpu = str(tmp_path / "cuda"), str(tmp_path / "cpu")
    w = SummaryWriter(ours)
    w.add_histogram("h", x, 0, walltime=1.0)  # before: the ring exists
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = x * 2  # warm up on a side stream, as torch's graph docs do
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = x * 2
        with pytest.raises(RuntimeError, match="CUDA graph is being captured"):
            w.add_histogram("h", y, 1, walltime=1.0)
    graph.replay()
    with NoSync():
        w.add_histogram("h", y, 2, walltime=1.0)
    w.close()
    with SummaryWriter(cpu) as c:
        c.add_histogram("h", np.arange(10, dtype=np.float32), 0, walltime=1.0)
        c.add_histogram("h", np.arange(10, dtype=np.float32) * 2, 2, walltime=1.0)
    same_records(ours, cpu)


def test_a_weight_larger_than_the_ring_and_a_full_ring(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTTB_PINNED_BYTES", str(1 << 20))
    _device.use_backend(_device.CudaBackend)
    weight = torch.randn(1024, 1024, device="cuda")  # 4 MiB: a buffer of its own
    small = [torch.randn(1000, device="cuda") for _ in range(64)]  # 4 KB each: fills the ring
    ours, cpu = str(tmp_path / "cuda"), str(tmp_path / "cpu")
    w = SummaryWriter(ours)
    with NoSync():
        for step in range(3):
            w.add_histogram("weight", weight, step, walltime=1.0)
            for k, s in enumerate(small):
                w.add_histogram(f"small/{k}", s, step, walltime=2.0)
    w.close()
    with SummaryWriter(cpu) as c:
        for step in range(3):
            c.add_histogram("weight", weight.cpu(), step, walltime=1.0)
            for k, s in enumerate(small):
                c.add_histogram(f"small/{k}", s.cpu(), step, walltime=2.0)
    same_records(ours, cpu)


def test_a_device_assert_is_raised_on_the_next_call():
    result = run_child(f"""
        import sys, tempfile
        sys.path.insert(0, {TESTS!r})
        import torch
        from test_device import scalars
        from fasttb import SummaryWriter
        d = tempfile.mkdtemp()
        w = SummaryWriter(d)
        w.add_scalar("ok", torch.tensor(1.0, device="cuda"), 0)
        w.flush()
        index = torch.tensor([5], device="cuda")
        bad = torch.zeros(1, device="cuda")[index]  # out of bounds: a device-side assert
        w.add_scalar("bad", bad.sum(), 1)  # returns; the error surfaces at the event
        try:
            for i in range(1000):
                w.add_scalar("cpu", float(i), i)
                w.flush()
        except RuntimeError as exc:
            print("raised:", exc)
        w.close()
        print(scalars(d, "ok"))
    """, timeout=120, check=False)
    assert "raised:" in result.stdout, result.stdout + result.stderr
    assert "[(0, 1.0)]" in result.stdout


def test_a_forked_child_that_logs_cuda_tensors_gets_a_clear_error():
    result = run_child("""
        import os, tempfile
        import torch
        from fasttb import SummaryWriter
        w = SummaryWriter(tempfile.mkdtemp())
        t = torch.ones((), device="cuda")
        w.add_scalar("a", t, 0)
        w.flush()
        pid = os.fork()
        if pid == 0:
            try:
                w.add_scalar("a", t, 1)  # fasttb refuses it before CUDA is touched
            except RuntimeError as exc:
                print("child:", exc, flush=True)
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("status", os.waitstatus_to_exitcode(status))
        w.close()
    """, timeout=120)
    assert "status 0" in result.stdout
    assert "forked child" in result.stdout and "spawn" in result.stdout


def test_a_worker_that_falls_behind_keeps_host_memory_bounded():
    # The records of landed copies count against the queue's bound: with the worker stopped, the
    # waiter makes as many as fit and the other calls wait in the pinned ring (test_device.py
    # has the same with a stand-in device).
    run_child(stalled_worker(limit=4 << 20, backend="_device.CudaBackend") + """
    import torch
    w = SummaryWriter(d)
    weights = [torch.randn(100_000, device="cuda") for _ in range(5)]  # 400 KB each
    torch.cuda.synchronize()
    stop_worker(w)
    try:
        torch.cuda.set_sync_debug_mode("error")
        for i in range(50):
            w.add_histogram("h", weights[i % 5], i, walltime=1.0)
        torch.cuda.set_sync_debug_mode("default")
        stager = _device.stager()
        settle(stager)
        queued, pending = _core.engine_stats()["queue_bytes"], stager.pending()
    finally:
        _core._pause_worker(False)
    print("queued", queued, "pending", pending)
    assert 0 < queued <= limit + (1 << 20), queued
    assert pending > 30, pending
    w.close()
    hist = histograms()
    assert [e.step for e in hist] == list(range(50))
    expected = [float(weights[i % 5].max().item()) for i in range(50)]
    assert [e.histogram_value.max for e in hist] == expected
    print("ok")
    """, timeout=120)
