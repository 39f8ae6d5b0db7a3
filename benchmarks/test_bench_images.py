"""add_image / add_images: the caller's cost, and the cost until flush() returns."""

import numpy as np
import pytest

RNG = np.random.default_rng(0)
Y, X = np.mgrid[0:1024, 0:1024] / 1024.0
SMOOTH = (np.stack([np.sin(6 * X), np.cos(5 * Y), X * Y]) * 0.5 + 0.5).astype(np.float32)
IMAGES = {
    "3x256x256 uint8": RNG.integers(0, 256, (3, 256, 256), dtype=np.uint8),
    "3x1024x1024 uint8 smooth": (SMOOTH * 255).astype(np.uint8),
    "3x1024x1024 float smooth": SMOOTH,
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_add_image_call(benchmark, writer, name):
    benchmark.group = f"add_image {name} (caller's thread)"
    benchmark.pedantic(writer.add_image, args=("img", IMAGES[name], 1), rounds=5, warmup_rounds=1)
    writer.flush()


@pytest.mark.parametrize("name", list(IMAGES))
def test_add_image_until_flushed(benchmark, writer, name):
    benchmark.group = f"add_image {name} + flush"

    def run():
        writer.add_image("img", IMAGES[name], 1)
        writer.flush()

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


def test_add_images_grid(benchmark, writer):
    benchmark.group = "add_images 64x3x32x32 uint8 + flush"
    batch = RNG.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)

    def run():
        writer.add_images("grid", batch, 1)
        writer.flush()

    benchmark.pedantic(run, rounds=10, warmup_rounds=1)
