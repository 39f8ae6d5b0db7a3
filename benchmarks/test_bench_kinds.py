"""The rarer kinds at the sizes users log them: the caller's cost, and the cost until flush()
returns. The same cases as the "kinds" section of ``python -m fasttb bench``."""

import numpy as np
import pytest

RNG = np.random.default_rng(0)
LABELS, PREDICTIONS = RNG.integers(0, 2, 100_000), RNG.random(100_000).astype(np.float32)
MATRIX = RNG.standard_normal((1000, 128)).astype(np.float32)
AUDIO = np.sin(np.arange(44_100, dtype=np.float32) * 0.05) * 0.5


def label_images():
    images = RNG.random((1000, 3, 32, 32), dtype=np.float32)
    try:  # torch's add_embedding takes label images only as a tensor
        import torch

        return torch.from_numpy(images)
    except ImportError:
        return images


CASES = {
    "add_text": lambda w, i: w.add_text("notes", "step summary: **loss** 0.25", i),
    "add_pr_curve 1e5 predictions": lambda w, i: w.add_pr_curve("pr", LABELS, PREDICTIONS, i),
    "add_embedding 1000x128 + 1000 3x32x32 images": lambda w, i: w.add_embedding(
        MATRIX, metadata=list(range(1000)), label_img=IMAGES, global_step=i),
    "add_audio 1 s at 44.1 kHz": lambda w, i: w.add_audio("a", AUDIO, i, sample_rate=44_100),
    "add_hparams 4 hparams, 2 metrics": lambda w, i: w.add_hparams(
        {"lr": 0.01, "layers": 4, "optimizer": "adam", "nesterov": True}, {"hp/loss": 0.25, "hp/accuracy": 0.91}),
}
IMAGES = label_images()


def calls(writer, case):
    step = iter(range(1, 1_000_000))
    call = CASES[case]
    try:
        call(writer, 0)  # warm-up: imports, first allocations
    except ImportError as exc:  # tensorboardX's add_audio needs soundfile
        pytest.skip(f"{type(writer).__module__}: {exc}")
    writer.flush()
    return lambda: call(writer, next(step))


@pytest.mark.parametrize("case", list(CASES))
def test_call(benchmark, writer, case):
    benchmark.group = f"{case} (caller's thread)"
    run = calls(writer, case)

    def setup():
        writer.flush()  # each round starts with the worker idle, as between training steps

    benchmark.pedantic(run, setup=setup, rounds=7 if "embedding" in case else 15)
    writer.flush()


@pytest.mark.parametrize("case", list(CASES))
def test_until_flushed(benchmark, writer, case):
    benchmark.group = f"{case} + flush"
    run = calls(writer, case)

    def run_and_flush():
        run()
        writer.flush()

    benchmark.pedantic(run_and_flush, rounds=7 if "embedding" in case else 15)
