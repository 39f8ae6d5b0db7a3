"""The worker's PNG encoder alone (``_core.encode_png``) against Pillow's default PNG save, side
by side for a few image classes from the bench's own set (``fasttb.cli.bench.png_images``)."""

import pytest

from fasttb import _core
from fasttb.cli.bench import pillow_png, png_images

pytest.importorskip("PIL")

IMAGES = png_images()
CASES = ["smooth", "photo", "gradient", "flat regions", "tiled"]
ENCODERS = {"fasttb": _core.encode_png, "Pillow": pillow_png}


@pytest.mark.parametrize("encoder", list(ENCODERS))
@pytest.mark.parametrize("name", CASES)
def test_encode_png(benchmark, name, encoder):
    pixels = IMAGES[name]
    benchmark.group = f"PNG encode 1024x1024 {name}"
    benchmark.extra_info["bytes_in"] = pixels.nbytes
    png = benchmark.pedantic(ENCODERS[encoder], args=(pixels,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["bytes_out"] = len(png)
