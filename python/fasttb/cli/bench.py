"""Side-by-side benchmark: fasttb against torch's and tensorboardX's SummaryWriter, in one run.

Every number is a median over repeats, measured in this process on this machine, and every
comparison is a ratio between writers measured in the same run. Writers that are not installed
are skipped. Run it as ``python -m fasttb bench [--quick] [--json PATH]``.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from datetime import date
from typing import Any, Callable, Dict, List, Optional

import numpy as np


def writer_classes() -> Dict[str, Callable[[str], Any]]:
    """fasttb's SummaryWriter and the stock writers that are installed, by name."""
    import fasttb

    classes: Dict[str, Callable[[str], Any]] = {"fasttb": fasttb.SummaryWriter}
    try:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter

        classes["torch"] = TorchWriter
    except ImportError:
        pass
    try:
        from tensorboardX import SummaryWriter as TbxWriter

        classes["tensorboardX"] = TbxWriter
    except ImportError:
        pass
    return classes


def smooth_planes(size: int) -> np.ndarray:
    """A smooth synthetic RGB image in CHW float64 planes, values in [0, 1]: the "smooth" class
    of the PNG and add_image benchmarks."""
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([np.sin(6 * x), np.cos(5 * y), x * y]) * 0.5 + 0.5


def png_images(size: int = 1024) -> Dict[str, np.ndarray]:
    """The PNG encoder's test images, HWC uint8, by class: what photos, plots and synthetic
    images look like, including the exact gradients and flat areas that deflate's long matches
    are made for."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = smooth_planes(size).transpose(1, 2, 0)
    # Photo-like: noise smoothed over a few scales, hard-edged shapes over it, and sensor grain.
    photo = np.zeros((size, size, 3))
    for cells in (8, 32, 128):
        coarse = rng.random((cells + 1, cells + 1, 3))
        iy = np.minimum((y * cells).astype(int), cells - 1)
        ix = np.minimum((x * cells).astype(int), cells - 1)
        fy, fx = (y * cells - iy)[..., None], (x * cells - ix)[..., None]
        photo += (coarse[iy, ix] * (1 - fy) * (1 - fx) + coarse[iy + 1, ix] * fy * (1 - fx) +
                  coarse[iy, ix + 1] * (1 - fy) * fx + coarse[iy + 1, ix + 1] * fy * fx) * (96 / cells ** 0.25)
    photo[(x - 0.3) ** 2 + (y - 0.6) ** 2 < 0.04] *= 0.4
    photo[(x > 0.55) & (x < 0.9) & (y > 0.1) & (y < 0.35)] = (200, 180, 60)
    photo += rng.normal(0, 2, photo.shape)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    iy, ix = np.mgrid[0:size, 0:size]
    gradient = np.stack([(ix + iy) % 256, (2 * ix + iy) % 256, (ix + 3 * iy) % 256], -1)
    regions = np.empty((size, size, 3), np.uint8)
    regions[:] = (250, 250, 250)
    regions[: size // 3] = (30, 90, 200)
    regions[size // 2 :, size // 4 : size // 2] = (230, 40, 40)
    regions[(x - 0.7) ** 2 + (y - 0.7) ** 2 < 0.03] = (20, 160, 60)
    checker = np.where(((iy // 8 + ix // 8) % 2)[..., None] == 1, (255, 255, 255), (0, 0, 64))
    tile = rng.integers(0, 256, (16, 24, 3))
    alpha = (255 * (1 - x)).astype(np.uint8)[..., None]
    return {
        "smooth": np.ascontiguousarray((smooth * 255).astype(np.uint8)),
        "photo": photo,
        "noise": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "gradient": gradient.astype(np.uint8),
        "horizontal ramp": np.repeat((ix % 256).astype(np.uint8)[..., None], 3, -1),
        "flat": np.full((size, size, 3), (40, 120, 200), np.uint8),
        "flat regions": regions,
        "checkerboard": checker.astype(np.uint8),
        "tiled": np.tile(tile, (size // 16, size // 24 + 1, 1))[:, :size].astype(np.uint8),
        "photo RGBA": np.ascontiguousarray(np.concatenate([photo, alpha], -1)),
        "photo grey": np.ascontiguousarray(photo[..., 1:2]),
    }


def pillow_png(pixels: np.ndarray) -> bytes:
    """Pillow's default PNG encoding of HWC uint8 `pixels` (what the stock writer does)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def _logger(method: str, data: Any) -> Callable[[Any, int], None]:
    """A call of `writer.<method>(tag, data, step)`, for the call-and-flush timings."""
    return lambda writer, step: getattr(writer, method)("x", data, step)


class _Noop:
    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        pass


class Bench:
    def __init__(self, quick: bool, out: Callable[[str], None] = print) -> None:
        self.quick = quick
        self.out = out
        self.classes = writer_classes()
        self.root = tempfile.mkdtemp(prefix="fasttb-bench-")
        self.results: Dict[str, Dict[str, Any]] = {}

    def _writer(self, name: str, label: str) -> Any:
        path = os.path.join(self.root, f"{label}-{name}-{len(os.listdir(self.root))}")
        return self.classes[name](path)

    def _record(self, section: str, name: str, **values: Any) -> None:
        self.results.setdefault(section, {})[name] = values

    # -- imports -------------------------------------------------------------------------------

    def imports(self) -> None:
        """Seconds to import each writer's module in a fresh interpreter (numpy alone as the
        floor fasttb stands on)."""
        modules = {"numpy": "numpy", "fasttb": "fasttb", "torch": "torch.utils.tensorboard",
                   "tensorboardX": "tensorboardX"}
        names = ["numpy"] + [name for name in modules if name in self.classes]
        code = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
        for name in names:
            samples = []
            for _ in range(3 if self.quick else 7):
                out = subprocess.run([sys.executable, "-c", code.format(modules[name])], capture_output=True,
                                     text=True, check=True, timeout=300)
                samples.append(float(out.stdout))
            self._record("import", name, module=modules[name], seconds=statistics.median(samples))

    # -- scalars -------------------------------------------------------------------------------

    def scalars(self) -> None:
        # timeit statements rather than a Python callback, so that only the loop's own overhead
        # (a few ns) is added to what is measured.
        calls = {"fasttb": 50000, "torch": 300, "tensorboardX": 300}
        repeats = 5 if self.quick else 15

        def per_call(stmt: str, namespace: Dict[str, Any], number: int) -> float:
            timer = timeit.Timer(stmt, globals=namespace)
            return statistics.median(timer.repeat(repeat=repeats, number=number)) / number

        base = per_call("w.add_scalar('loss', 0.5, 10)", {"w": _Noop()}, 50000)
        self._record("add_scalar", "noop method", seconds=base)
        for name in self.classes:
            w = self._writer(name, "scalar")
            n = calls[name] // (4 if self.quick else 1)
            t = per_call("w.add_scalar('loss', 0.5, 10)", {"w": w}, n)
            w.close()
            self._record("add_scalar", name, seconds=t)
        # The value types training loops log, on fasttb's writer, against a Python float's cost.
        values: Dict[str, Any] = {"np.float64": np.float64(0.5), "np.float32": np.float32(0.5),
                                  "np.int64": np.int64(5), "np.bool_": np.bool_(True),
                                  "0-d float32 array": np.array(0.5, dtype=np.float32),
                                  "1-element float64 array": np.array([0.5])}
        try:
            import torch

            values["CPU torch.tensor(0.5)"] = torch.tensor(0.5)
            values["CPU torch.tensor(5)"] = torch.tensor(5)
        except ImportError:
            pass
        # Interleaved: each round times every type once, so the ratio to a float is taken
        # within a round, and this machine's drift between rounds cancels out of it.
        w = self._writer("fasttb", "values")
        n = 50000 // (4 if self.quick else 1)
        timers = {label: timeit.Timer("w.add_scalar('loss', v, 10)", globals={"w": w, "v": value})
                  for label, value in {"Python float": 0.5, **values}.items()}
        rounds: Dict[str, List[float]] = {label: [] for label in timers}
        for _ in range(repeats):
            for label, timer in timers.items():
                rounds[label].append(timer.timeit(n) / n)
        w.close()
        floats = rounds["Python float"]
        for label, times in rounds.items():
            self._record("add_scalar values", label, seconds=statistics.median(times),
                         vs_float=statistics.median(t / f for t, f in zip(times, floats)))

    def throughput(self) -> None:
        """Records per second from the first call until close() returns, and (fasttb) the
        worker alone draining a pre-filled queue."""
        import fasttb
        from fasttb import _core

        sizes = {"fasttb": 200_000 if self.quick else 1_000_000, "torch": 2000, "tensorboardX": 2000}
        for name in self.classes:
            n = sizes[name]
            samples = []
            for _ in range(3):
                w = self._writer(name, "tp")
                start = time.perf_counter()
                for i in range(n):
                    w.add_scalar("loss", 0.5, i)
                w.close()
                samples.append(n / (time.perf_counter() - start))
            self._record("records_per_second", name, value=statistics.median(samples))
        n = sizes["fasttb"]
        fasttb.set_queue_limit(max(1 << 30, n * 512))
        w = fasttb.SummaryWriter(os.path.join(self.root, "worker"))
        samples = []
        for _ in range(3):
            w.flush()
            _core._pause_worker(True)
            try:
                for i in range(n):
                    w.add_scalar("loss", 0.5, i)
            finally:
                start = time.perf_counter()
                _core._pause_worker(False)
            w.flush()
            samples.append(n / (time.perf_counter() - start))
        w.close()
        fasttb.set_queue_limit(256 << 20)
        self._record("records_per_second", "fasttb worker alone", value=statistics.median(samples))

    def training_loop(self) -> None:
        """A loop doing ~1 ms of numpy work per step and logging 10 scalars per step."""
        x = np.linspace(0.0, 1.0, 20000)

        def work() -> float:  # elementwise numpy: one thread, no denormals, deterministic
            total = 0.0
            for _ in range(reps):
                total += float(np.sin(x).sum())
            return total

        reps = 1
        for _ in range(4):  # calibrate to about 1 ms per step (medians: the machine may be noisy)
            samples = []
            for _ in range(7):
                start = time.perf_counter()
                for _ in range(20):
                    work()
                samples.append((time.perf_counter() - start) / 20)
            reps = max(1, round(reps * 1e-3 / statistics.median(samples)))
        steps = 300 if self.quick else 2000
        tags = [f"metric/{k}" for k in range(10)]

        def run(writer: Any) -> float:
            start = time.perf_counter()
            for step in range(steps):
                value = work()
                if writer is not None:
                    for tag in tags:
                        writer.add_scalar(tag, value, step)
            if writer is not None:
                writer.flush()
            return (time.perf_counter() - start) / steps

        order = [None] + list(self.classes)
        per_step: Dict[str, List[float]] = {str(k): [] for k in order}
        for _ in range(3 if self.quick else 9):
            for name in order:  # interleaved, so drifts in machine speed hit every writer alike
                w = None if name is None else self._writer(name, "loop")
                per_step[str(name)].append(run(w))
                if w is not None:
                    w.close()
        base = statistics.median(per_step["None"])
        self._record("loop", "no logging", seconds=base)
        for name in self.classes:
            t = statistics.median(per_step[name])
            self._record("loop", name, seconds=t, slowdown=t / base - 1)

    def lightning(self) -> None:
        """Lightning's ``Trainer.fit`` of a tiny model logging 4 scalars per step: without a
        logger, with a TensorBoardLogger whose writer does nothing (Lightning's own logging
        work), with the stock TensorBoardLogger, and with the same logger after
        ``fasttb.patch()``. Lightning flushes the writer every time it logs."""
        try:
            import lightning.pytorch as pl
            import torch
        except ImportError as exc:
            self._record("lightning", "stock", missing=f"{exc.name} is not installed")
            return
        import logging
        import warnings

        from .. import _patch

        logging.getLogger("lightning").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        torch.set_num_threads(1)
        steps = 300 if self.quick else 2000

        class Tiny(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(8, 1)

            def training_step(self, batch: Any, index: int) -> Any:
                loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
                self.log_dict({"loss": loss, "loss_x2": loss * 2, "index": float(index), "const": 1.0})
                return loss

            def configure_optimizers(self) -> Any:
                return torch.optim.SGD(self.parameters(), lr=0.01)

        from lightning.pytorch.loggers import TensorBoardLogger

        class NullWriter:
            def __getattr__(self, name: str) -> Callable[..., None]:
                return lambda *args, **kwargs: None

        class NullWriterLogger(TensorBoardLogger):
            @property
            def experiment(self) -> Any:
                return NullWriter()

        x = torch.randn(steps * 4, 8)
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, :1]), batch_size=4)

        def fit(kind: str) -> float:
            logger: Any = False
            if kind == "null writer":
                logger = NullWriterLogger(os.path.join(self.root, "lightning"), name="null")
            elif kind != "no logger":
                logger = TensorBoardLogger(os.path.join(self.root, "lightning"), name=kind)
            trainer = pl.Trainer(max_steps=steps, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
            if kind == "fasttb":
                _patch.patch()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    trainer.fit(Tiny(), data)
                    seconds = time.perf_counter() - start
            finally:
                if kind == "fasttb":
                    _patch.unpatch()
            if kind in ("stock", "fasttb"):
                assert type(logger.experiment).__module__.startswith("fasttb") == (kind == "fasttb")
            return seconds / steps

        kinds = ["no logger", "null writer", "stock", "fasttb"]
        per_step: Dict[str, List[float]] = {kind: [] for kind in kinds}
        for _ in range(3 if self.quick else 5):
            for kind in kinds:  # interleaved, so drifts in machine speed hit each alike
                per_step[kind].append(fit(kind))
        base = statistics.median(per_step["no logger"])
        null = statistics.median(per_step["null writer"])
        self._record("lightning", "no logger", seconds=base)
        self._record("lightning", "null writer", seconds=null, overhead=null - base)
        for kind in kinds[2:]:
            t = statistics.median(per_step[kind])
            self._record("lightning", kind, seconds=t, overhead=t - base, writer=t - null)

    def remote(self) -> None:
        """A long run logged to a local S3 server by fasttb and torch's writer: the caller's cost
        per add_scalar and the bytes sent (fasttb.cli.bench_remote)."""
        from . import bench_remote

        self.results["remote"] = bench_remote.run(self.quick, self.out)

    def cuda(self) -> None:
        """A GPU training loop logging CUDA tensors: no logging, torch's writer, fasttb
        (fasttb.cli.bench_cuda). Reports why it did not run where there is no CUDA device."""
        from . import bench_cuda

        self.results["cuda"] = bench_cuda.run(self.quick, self.out)

    def reader(self) -> None:
        """Reading logs back: scalars into tbparse's DataFrame with tbparse, with tensorboard's
        EventAccumulator (all scalars collected) and with fasttb.SummaryReader; and listing the
        tags of a log that is mostly images."""
        try:
            import pandas  # noqa: F401  (imported before the clocks start, as tbparse imports it)
        except ImportError:
            self._record("reader", "scalars", missing="pandas is not installed")
            return
        from ..reader import SummaryReader

        readers: Dict[str, Callable[[str], Any]] = {"fasttb": lambda d: SummaryReader(d).scalars}
        try:
            import tbparse

            readers["tbparse"] = lambda d: tbparse.SummaryReader(d).scalars
        except ImportError:
            pass
        try:
            from tensorboard.backend.event_processing import event_accumulator as ea

            def accumulate(d: str) -> int:
                acc = ea.EventAccumulator(d, size_guidance={ea.SCALARS: 0})
                acc.Reload()
                return sum(len(acc.Scalars(tag)) for tag in acc.Tags()[ea.SCALARS])

            readers["EventAccumulator"] = accumulate
        except ImportError:
            pass
        from .. import SummaryWriter

        sizes = [10_000, 100_000] if self.quick else [10_000, 100_000, 1_000_000]
        for n in sizes:
            logdir = os.path.join(self.root, f"read-{n}")
            with SummaryWriter(logdir) as w:
                for step in range(n // 4):
                    for tag in ("loss", "accuracy", "lr", "grad/norm"):
                        w.add_scalar(tag, step * 1e-3, step)
            size = sum(os.path.getsize(os.path.join(logdir, f)) for f in os.listdir(logdir))
            row: Dict[str, Any] = {"bytes": size}
            for name, read in readers.items():
                repeats = (5 if n <= 100_000 else 3) if name == "fasttb" else (3 if n <= 10_000 else 1)
                samples = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    read(logdir)
                    samples.append(time.perf_counter() - start)
                row[name] = statistics.median(samples)
            self._record("reader", f"{n:,} scalars into a DataFrame", **row)
            shutil.rmtree(logdir, ignore_errors=True)
        # Tags of a log that is mostly images: 3x512x512 noise PNGs (~0.8 MB each).
        target = (64 << 20) if self.quick else (1 << 30)
        logdir = os.path.join(self.root, "read-images")
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (3, 512, 512), dtype=np.uint8) for _ in range(8)]
        with SummaryWriter(logdir) as w:
            step = 0
            while step * 790_000 < target:
                w.add_image(f"camera/{step % 3}", images[step % 8], step)
                w.add_scalar("loss", 1.0 / (step + 1), step)
                step += 1
        size = sum(os.path.getsize(os.path.join(logdir, f)) for f in os.listdir(logdir))
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            listed = SummaryReader(logdir).get_tags()
            samples.append(time.perf_counter() - start)
        assert isinstance(listed, dict) and listed["images"] == ["camera/0", "camera/1", "camera/2"]
        self._record("reader", "tags of an image log", bytes=size, fasttb=statistics.median(samples))
        shutil.rmtree(logdir, ignore_errors=True)

    # -- histograms and images -----------------------------------------------------------------

    def _call_and_flush(self, label: str, call: Callable[[Any, int], None], repeats: int,
                        names: Optional[List[str]] = None) -> None:
        for name in names or list(self.classes):
            w = self._writer(name, label)
            try:
                call(w, -1)  # warm-up: imports, first allocations
            except ImportError as exc:  # e.g. tensorboardX's add_audio without soundfile
                w.close()
                self._record(label, name, missing=str(exc))
                continue
            w.flush()
            calls, totals = [], []
            for i in range(repeats):
                start = time.perf_counter()
                call(w, i)
                mid = time.perf_counter()
                w.flush()
                end = time.perf_counter()
                calls.append(mid - start)
                totals.append(end - start)
            w.close()
            self._record(label, name, call=statistics.median(calls), total=statistics.median(totals))

    def histograms(self) -> None:
        rng = np.random.default_rng(1)
        sizes = [10_000, 1_000_000] + ([] if self.quick else [10_000_000])
        for n in sizes:
            values = rng.standard_normal(n).astype(np.float32)
            repeats = 3 if n >= 10_000_000 else (5 if self.quick else 11)
            self._call_and_flush(f"add_histogram {n:.0e} float32", _logger("add_histogram", values), repeats)
        # The worker's kernel (bins, min, max, sum, sum_squares) run here, alone.
        from fasttb import _core

        n = sizes[-1]
        values = rng.standard_normal(n).astype(np.float32)
        samples = []
        for _ in range(5 if self.quick else 11):
            start = time.perf_counter()
            _core.tf_histogram(values, 0)
            samples.append(time.perf_counter() - start)
        self._record("histogram kernel", "fasttb", values=n, seconds=statistics.median(samples))

    def images(self) -> None:
        rng = np.random.default_rng(2)
        cases = {
            "3x256x256 uint8": (rng.integers(0, 256, (3, 256, 256), dtype=np.uint8), "add_image"),
            "3x256x256 float smooth": (smooth_planes(256).astype(np.float32), "add_image"),
            "3x1024x1024 uint8 smooth": ((smooth_planes(1024) * 255).astype(np.uint8), "add_image"),
            "3x1024x1024 float smooth": (smooth_planes(1024).astype(np.float32), "add_image"),
            "64x3x32x32 uint8": (rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8), "add_images"),
        }
        if not self.quick:
            cases["3x1024x1024 uint8 noise"] = (rng.integers(0, 256, (3, 1024, 1024), dtype=np.uint8), "add_image")
        for label, (img, method) in cases.items():
            repeats = 3 if self.quick else 7
            self._call_and_flush(f"{method} {label}", _logger(method, img), repeats)

    def kinds(self) -> None:
        """The rarer kinds at the sizes users log them: text, a PR curve of 1e5 predictions, an
        embedding of 1000x128 with 1000 label images, one second of 44.1 kHz audio, hparams."""
        rng = np.random.default_rng(3)
        repeats = 5 if self.quick else 11
        labels, predictions = rng.integers(0, 2, 100_000), rng.random(100_000).astype(np.float32)
        mat = rng.standard_normal((1000, 128)).astype(np.float32)
        label_img: Any = rng.random((1000, 3, 32, 32), dtype=np.float32)
        try:  # torch's add_embedding takes label images only as a tensor
            import torch

            label_img = torch.from_numpy(label_img)
        except ImportError:
            pass
        audio = np.sin(np.arange(44_100, dtype=np.float32) * 0.05) * 0.5
        text = "step summary: **loss** 0.25, accuracy 0.91 — see the run notes"
        cases: Dict[str, Callable[[Any, int], None]] = {
            "add_text": lambda w, i: w.add_text("notes", text, i),
            "add_pr_curve 1e5 predictions": lambda w, i: w.add_pr_curve("pr", labels, predictions, i),
            "add_embedding 1000x128 + 1000 3x32x32 images": lambda w, i: w.add_embedding(
                mat, metadata=list(range(1000)), label_img=label_img, global_step=i + 1),
            "add_audio 1 s at 44.1 kHz": lambda w, i: w.add_audio("a", audio, i, sample_rate=44_100),
            "add_hparams 4 hparams, 2 metrics": lambda w, i: w.add_hparams(
                {"lr": 0.01, "layers": 4, "optimizer": "adam", "nesterov": True},
                {"hp/loss": 0.25, "hp/accuracy": 0.91}),
        }
        for label, call in cases.items():
            self._call_and_flush(label, call, 3 if self.quick and "embedding" in label else repeats)

    def png(self) -> None:
        """The worker's PNG encoder alone against Pillow's default, per image class."""
        from fasttb import _core

        try:
            import PIL  # noqa: F401

            have_pillow = True
        except ImportError:
            have_pillow = False
        repeats = 5 if self.quick else 11
        sizes = (256,) if self.quick else (256, 1024)
        images = {f"{size}x{size} {label}": pixels for size in sizes for label, pixels in png_images(size).items()}
        for label, pixels in images.items():
            ours, theirs = [], []
            for _ in range(repeats):  # interleaved, so drifts in machine speed hit both alike
                start = time.perf_counter()
                png = _core.encode_png(pixels)
                ours.append(time.perf_counter() - start)
                if have_pillow:
                    start = time.perf_counter()
                    reference = pillow_png(pixels)
                    theirs.append(time.perf_counter() - start)
            values: Dict[str, Any] = {"bytes_in": pixels.nbytes, "seconds": statistics.median(ours),
                                      "bytes_out": len(png)}
            if have_pillow:
                values.update(pillow_seconds=statistics.median(theirs), pillow_bytes_out=len(reference))
            self._record("png", label, **values)

    # -- report --------------------------------------------------------------------------------

    def report(self) -> str:
        lines = []
        imports = self.results.get("import", {})
        if imports:
            lines.append("import in a fresh interpreter (median)")
            for name, r in imports.items():
                lines.append(f"  {'import ' + r['module']:28s} {r['seconds'] * 1e3:10.1f} ms")
        scal = self.results.get("add_scalar", {})
        if scal:
            lines.append("add_scalar on the caller's thread (median per call)")
            noop = scal["noop method"]["seconds"]
            for name, r in scal.items():
                ratio = "" if name == "noop method" else f"  {r['seconds'] / noop:6.1f}x a no-op method"
                vs = ""
                if name == "fasttb":
                    vs = "".join(f", {scal[o]['seconds'] / r['seconds']:,.0f}x cheaper than {o}" for o in scal
                                 if o not in ("fasttb", "noop method"))
                lines.append(f"  {name:28s} {r['seconds'] * 1e9:12,.0f} ns{ratio}{vs}")
        kinds = self.results.get("add_scalar values", {})
        if kinds:
            lines.append("fasttb add_scalar by value type (median per call; median of each round's "
                         "ratio to a Python float)")
            for name, r in kinds.items():
                lines.append(f"  {name:28s} {r['seconds'] * 1e9:12,.0f} ns  {r['vs_float']:5.2f}x")
        rps = self.results.get("records_per_second", {})
        if rps:
            lines.append("scalar records per second, first call until close() returns")
            for name, r in rps.items():
                lines.append(f"  {name:28s} {r['value']:12,.0f} /s")
        loop = self.results.get("loop", {})
        if loop:
            lines.append("training loop, ~1 ms of work + 10 scalars per step (median per step)")
            for name, r in loop.items():
                extra = f"  {r['slowdown'] * 100:+6.1f}%" if "slowdown" in r else ""
                lines.append(f"  {name:28s} {r['seconds'] * 1e3:12.3f} ms{extra}")
        read = self.results.get("reader", {})
        if read:
            lines.append("reading logs back (median): seconds, and fasttb's speed-up")
            for name, r in read.items():
                if "missing" in r:
                    lines.append(f"  {name:34s} not run: {r['missing']}")
                    continue
                parts = [f"fasttb {r['fasttb']:8.3f} s ({r['bytes'] / r['fasttb'] / 1e6:6.0f} MB/s)"]
                for other in ("tbparse", "EventAccumulator"):
                    if other in r:
                        parts.append(f"{other} {r[other]:8.2f} s = {r[other] / r['fasttb']:5.0f}x")
                lines.append(f"  {name:34s} " + ", ".join(parts) + f"  [{r['bytes'] / 1e6:,.0f} MB]")
        fit = self.results.get("lightning", {})
        if fit:
            lines.append("Lightning Trainer.fit, 4 scalars per step, flushed each step (median per step)")
            for name, r in fit.items():
                if "missing" in r:
                    lines.append(f"  {name:28s} not run: {r['missing']}")
                    continue
                extra = f"  logging {r['overhead'] * 1e6:7.1f} us" if "overhead" in r else ""
                if "writer" in r:
                    extra += f", of which the writer {r['writer'] * 1e6:7.1f} us"
                lines.append(f"  {name:28s} {r['seconds'] * 1e3:12.3f} ms{extra}")
            if "stock" in fit and "fasttb" in fit:
                lines.append(f"  per step, fasttb saves {(fit['stock']['seconds'] - fit['fasttb']['seconds']) * 1e6:.1f} us "
                             f"of the stock writer's {fit['stock']['writer'] * 1e6:.1f} us")
        if "cuda" in self.results:
            from . import bench_cuda

            lines.extend(bench_cuda.report(self.results["cuda"]))
        if "remote" in self.results:
            from . import bench_remote

            lines.extend(bench_remote.report(self.results["remote"]))
        for section, rows in self.results.items():
            if section in ("lightning", "reader", "remote", "cuda") or not all("call" in r or "missing" in r for r in rows.values()):
                continue
            lines.append(f"{section}: caller / until flush() (median)")
            ours = rows.get("fasttb")
            for name, r in rows.items():
                if "missing" in r:
                    lines.append(f"  {name:28s} not run: {r['missing']}")
                    continue
                ratio = ""
                if ours and name != "fasttb":
                    ratio = f"  fasttb {r['call'] / ours['call']:6.1f}x / {r['total'] / ours['total']:5.1f}x faster"
                lines.append(f"  {name:28s} {r['call'] * 1e3:10.3f} ms {r['total'] * 1e3:10.3f} ms{ratio}")
        kernel = self.results.get("histogram kernel", {}).get("fasttb")
        if kernel:
            lines.append(f"histogram kernel, {kernel['values']:.0e} float32 on one thread (median): "
                         f"{kernel['seconds'] / kernel['values'] * 1e9:.2f} ns per value")
        png = self.results.get("png", {})
        if png:
            lines.append("PNG encoding (median): MB/s of raw pixels, fasttb's size / Pillow's")
            lines.append(f"  {'image':28s} {'fasttb':>10s} {'Pillow':>10s} {'speed':>8s} {'size':>7s}")
            for name, r in png.items():
                mbs = r["bytes_in"] / r["seconds"] / 1e6
                if "pillow_seconds" in r:
                    theirs = r["bytes_in"] / r["pillow_seconds"] / 1e6
                    lines.append(f"  {name:28s} {mbs:10.1f} {theirs:10.1f} {mbs / theirs:7.1f}x "
                                 f"{r['bytes_out'] / r['pillow_bytes_out']:6.2f}x")
                else:
                    lines.append(f"  {name:28s} {mbs:10.1f}   (Pillow not installed)")
        return "\n".join(lines)

    def run(self, sections: List[str]) -> Dict[str, Any]:
        try:
            for section in sections:
                self.out(f"[bench] {section} ...")
                getattr(self, section)()
        finally:
            # Interrupted (Ctrl-C) in a section, writers may still be open: close them before their
            # files go, or the exit would report those files as removed and their records lost.
            from .. import _lifecycle

            for writer in list(_lifecycle._open_files):
                if os.path.abspath(writer.get_logdir()).startswith(os.path.abspath(self.root)):
                    try:
                        writer.close()
                    except OSError:
                        pass
            shutil.rmtree(self.root, ignore_errors=True)
        return self.results


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(quick: bool = False, json_path: Optional[str] = None,
         sections: Optional[List[str]] = None) -> int:
    if json_path:  # a path that cannot be written fails now, not after the whole run
        try:
            with open(json_path, "a"):
                pass
        except OSError as exc:
            print(f"python -m fasttb bench: --json: {exc}", file=sys.stderr)
            return 2
    bench = Bench(quick)
    names = ", ".join(bench.classes)
    print(f"fasttb bench ({'quick' if quick else 'full'}): {names}; {machine_line()}")
    sections = sections or ["imports", "scalars", "throughput", "training_loop", "histograms", "images", "kinds",
                            "png", "lightning", "reader", "remote", "cuda"]
    results = bench.run(sections)
    print()
    print(bench.report())
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": machine_line(), "quick": quick, "results": results}, f, indent=2)
        print(f"\nresults written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv))
