"""The ``cuda`` section of ``python -m fasttb bench``: a training loop on the GPU that logs CUDA
tensors, with no logging, with torch's writer and with fasttb, side by side in one run.

The loop trains an MLP on random data (calibrated to about 10 ms per step on the device: the
number of layers is scaled from a first measurement), and each step logs 10 scalars that are CUDA
tensors (the loss and nine quantities computed from it on the device) and one histogram of a
weight tensor. The time per step is measured over whole windows of steps, with the device
synchronised only at the ends of a window, as a training loop would run; the three variants
take turns, and the medians of the windows are reported.

torch's writer calls ``.cpu()`` on every tensor, which waits for the device; fasttb copies each
one asynchronously and lets a thread wait (fasttb._device). fasttb runs twice: as it is (the
histogram's 16 MB go to the host on a side stream, through a device snapshot) and with every
copy on the training stream, so that one run shows what the side stream buys.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

WIDTH = 4096
BATCH = 4096
TARGET_STEP_SECONDS = 0.010
ON_STREAM = "fasttb, copies on the stream"


def run(quick: bool, out: Callable[[str], None] = print, device: str = "cuda", width: int = WIDTH,
        batch: int = BATCH, target: float = TARGET_STEP_SECONDS, steps: Optional[int] = None,
        rounds: Optional[int] = None) -> Dict[str, Any]:
    """Measures the loop; returns the results (``{"missing": why}`` without a CUDA device).
    ``device="cpu"`` with small sizes runs the same code without a GPU (the tests' smoke run:
    CPU tensors take the CPU path, so it measures nothing of the device path)."""
    try:
        import torch
    except ImportError:
        return {"missing": "torch is not installed"}
    on_cuda = device == "cuda"
    if on_cuda and not torch.cuda.is_available():
        return {"missing": "no CUDA device"}
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    import fasttb
    from fasttb import _device

    torch.manual_seed(0)
    where = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = True

    def build(layers: int) -> Any:
        mods: List[Any] = []
        for _ in range(layers):
            mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        mods.append(torch.nn.Linear(width, 1000))
        return torch.nn.Sequential(*mods).to(where)

    x = torch.randn(batch, width, device=where)
    y = torch.randint(0, 1000, (batch,), device=where)

    def make_step(model: Any) -> Callable[[Any, int], None]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        head = model[-1].weight  # 1000 x 4096 floats (WIDTH): 16 MB per histogram
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(writer: Any, i: int) -> None:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if writer is not None:
                d = loss.detach()
                writer.add_scalar("loss", d, i)
                for k in range(1, 10):
                    writer.add_scalar(f"metric/{k}", d * k, i)
                writer.add_histogram("head/weight", head, i)
        return step

    def window(step: Callable[[Any, int], None], writer: Any, steps: int, first: int) -> float:
        sync()
        start = time.perf_counter()
        for i in range(first, first + steps):
            step(writer, i)
        sync()
        return (time.perf_counter() - start) / steps

    # Calibrate: scale the number of layers to about `target` seconds per step.
    layers = 4
    probe = make_step(build(layers))
    window(probe, None, 5, 0)
    measured = window(probe, None, 20, 0)
    layers = max(1, round(layers * target / measured))
    model = build(layers)
    step = make_step(model)
    window(step, None, 10, 0)  # warm up kernels and the allocator
    steps = steps or (200 if quick else 300)
    rounds = rounds or (3 if quick else 5)
    root = tempfile.mkdtemp(prefix="fasttb-bench-cuda-")
    makers: Dict[str, Optional[Callable[[str], Any]]] = {
        "no logging": None, "torch": TorchWriter, "fasttb": fasttb.SummaryWriter, ON_STREAM: fasttb.SummaryWriter}
    per_step: Dict[str, List[float]] = {name: [] for name in makers}
    backend = _device._get().backend  # the process's (close() leaves no copy in flight)
    side_copy_bytes = backend.side_copy_bytes
    try:
        for r in range(rounds):
            for name, make in makers.items():  # interleaved, so drifts hit every variant alike
                backend.side_copy_bytes = 1 << 62 if name == ON_STREAM else side_copy_bytes
                writer = None if make is None else make(os.path.join(root, f"{name}-{r}"))
                window(step, writer, 5, 0)  # the writer's first calls (torch imports, pinned ring)
                per_step[name].append(window(step, writer, steps, 5))
                if writer is not None:
                    writer.close()
            out(f"[bench] cuda round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1] * 1e3:.2f} ms" for k, v in per_step.items()))
        caller = caller_cost(fasttb.SummaryWriter(os.path.join(root, "caller")), model[-1].weight, sync)
    finally:
        backend.side_copy_bytes = side_copy_bytes
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(per_step["no logging"])
    results: Dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if on_cuda else device, "layers": layers, "width": width,
        "batch": batch, "histogram_floats": model[-1].weight.numel(), "steps": steps, "rounds": rounds,
        "no logging": {"seconds": base}, "caller": caller}
    for name in ("torch", "fasttb", ON_STREAM):
        t = statistics.median(per_step[name])
        results[name] = {"seconds": t, "overhead": t / base - 1}
    return results


def caller_cost(writer: Any, weight: Any, sync: Callable[[], None], calls: int = 200) -> Dict[str, float]:
    """Seconds per call on the caller's thread, the device idle: what batching a step's calls
    could save at most. The writer is closed."""
    import torch

    value = torch.ones((), device=weight.device)
    costs = {}
    with writer:
        for label, call in (("add_scalar", lambda i: writer.add_scalar("c", value, i)),
                            ("add_histogram", lambda i: writer.add_histogram("h", weight, i))):
            samples = []
            for _ in range(3):
                writer.flush()
                sync()
                start = time.perf_counter()
                for i in range(calls):
                    call(i)
                samples.append((time.perf_counter() - start) / calls)
            costs[label] = statistics.median(samples)
    return costs


def report(results: Dict[str, Any]) -> List[str]:
    """The section's lines for the bench report."""
    if "missing" in results:
        return [f"cuda training loop: not run: {results['missing']}"]
    lines = [f"cuda training loop on {results['device']}: MLP of {results['layers']} layers of "
             f"{results['width']}, batch {results['batch']}; 10 CUDA scalars + 1 histogram "
             f"({results['histogram_floats']:,} floats) per step; median of {results['rounds']} "
             f"windows of {results['steps']} steps"]
    for name in ("no logging", "torch", "fasttb", ON_STREAM):
        if name not in results:
            continue
        r = results[name]
        extra = f"  {r['overhead'] * 100:+6.1f}%" if "overhead" in r else ""
        lines.append(f"  {name:28s} {r['seconds'] * 1e3:12.3f} ms{extra}")
    caller = results.get("caller", {})
    if caller:
        lines.append("  fasttb on the caller's thread: " + ", ".join(
            f"{name} {seconds * 1e6:.1f} us" for name, seconds in caller.items()) + " per call")
    return lines
