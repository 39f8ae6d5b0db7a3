"""The ``cuda`` section of ``python -m fasttb bench``: a training loop on the GPU that logs CUDA
tensors, with no logging, with torch's writer and with fasttb, side by side in one run.

The loop trains an MLP on random data (calibrated to about 10 ms per step on the device: the
number of layers is scaled from a first measurement), and each step logs 10 scalars that are CUDA
tensors (the loss and nine quantities computed from it on the device) and one histogram of a
weight tensor. The time per step is measured over whole windows of steps, with the device
synchronised only at the ends of a window, as a training loop would run; the three variants
take turns, and the medians of the windows are reported.

torch's writer calls ``.cpu()`` on every tensor, which waits for the device; fasttb copies each
one asynchronously and lets a thread wait (fasttb._device).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

WIDTH = 4096
BATCH = 4096
TARGET_STEP_SECONDS = 0.010


def run(quick: bool, out: Callable[[str], None] = print) -> Dict[str, Any]:
    """Measures the loop; returns the results (``{"missing": why}`` without a CUDA device)."""
    try:
        import torch
    except ImportError:
        return {"missing": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"missing": "no CUDA device"}
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    import fasttb

    torch.manual_seed(0)
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True

    def build(layers: int) -> Any:
        mods: List[Any] = []
        for _ in range(layers):
            mods += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
        mods.append(torch.nn.Linear(WIDTH, 1000))
        return torch.nn.Sequential(*mods).to(device)

    x = torch.randn(BATCH, WIDTH, device=device)
    y = torch.randint(0, 1000, (BATCH,), device=device)

    def make_step(model: Any) -> Callable[[Any, int], None]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        head = model[-1].weight  # 1000 x 4096 floats: 16 MB per histogram
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
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(first, first + steps):
            step(writer, i)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps

    # Calibrate: scale the number of layers to about TARGET_STEP_SECONDS per step.
    layers = 4
    probe = make_step(build(layers))
    window(probe, None, 5, 0)
    measured = window(probe, None, 20, 0)
    layers = max(1, round(layers * TARGET_STEP_SECONDS / measured))
    model = build(layers)
    step = make_step(model)
    window(step, None, 10, 0)  # warm up kernels and the allocator
    steps = 200 if quick else 300
    rounds = 3 if quick else 5
    root = tempfile.mkdtemp(prefix="fasttb-bench-cuda-")
    per_step: Dict[str, List[float]] = {"no logging": [], "torch": [], "fasttb": []}
    makers: Dict[str, Optional[Callable[[str], Any]]] = {
        "no logging": None, "torch": TorchWriter, "fasttb": fasttb.SummaryWriter}
    for r in range(rounds):
        for name, make in makers.items():  # interleaved, so drifts hit every variant alike
            writer = None if make is None else make(os.path.join(root, f"{name}-{r}"))
            window(step, writer, 5, 0)  # the writer's first calls (torch imports, pinned ring)
            per_step[name].append(window(step, writer, steps, 5))
            if writer is not None:
                writer.close()
        out(f"[bench] cuda round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {v[-1] * 1e3:.2f} ms" for k, v in per_step.items()))
    base = statistics.median(per_step["no logging"])
    results: Dict[str, Any] = {
        "device": torch.cuda.get_device_name(0), "layers": layers, "steps": steps, "rounds": rounds,
        "no logging": {"seconds": base}}
    for name in ("torch", "fasttb"):
        t = statistics.median(per_step[name])
        results[name] = {"seconds": t, "overhead": t / base - 1}
    return results


def report(results: Dict[str, Any]) -> List[str]:
    """The section's lines for the bench report."""
    if "missing" in results:
        return [f"cuda training loop: not run: {results['missing']}"]
    lines = [f"cuda training loop on {results['device']}: MLP of {results['layers']} layers of "
             f"{WIDTH}, batch {BATCH}; 10 CUDA scalars + 1 histogram (4.1M floats) per step; "
             f"median of {results['rounds']} windows of {results['steps']} steps"]
    for name in ("no logging", "torch", "fasttb"):
        r = results[name]
        extra = f"  {r['overhead'] * 100:+6.1f}%" if "overhead" in r else ""
        lines.append(f"  {name:28s} {r['seconds'] * 1e3:12.3f} ms{extra}")
    return lines
