"""Smoke tests of the command line: the demo and the side-by-side bench, at tiny sizes."""

import json
import os
import subprocess
import sys

import pytest

from conftest import accumulator


def test_demo_writes_a_run_tensorboard_reads(tmp_path):
    logdir = str(tmp_path / "demo")
    result = subprocess.run([sys.executable, "-m", "fasttb", "demo", "--logdir", logdir, "--steps", "600"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "steps/s" in out and "us per call" in out and "tensorboard --logdir" in out
    acc = accumulator(logdir)
    assert len(acc.Scalars("train/loss")) == 600
    assert len(acc.Histograms("weights")) == 6
    assert len(acc.Images("samples")) == 2


def test_demo_rejects_bad_steps(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fasttb", "demo", "--steps", "0"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "--steps" in result.stderr


def test_demo_and_bench_paths_that_cannot_be_written_are_one_line(tmp_path):
    # A log dir under a file ended in a traceback; a --json path was opened only after the
    # whole benchmark had run, and its results were lost.
    (tmp_path / "file").write_text("")
    for args in (["demo", "--logdir", str(tmp_path / "file" / "run"), "--steps", "10"],
                 ["bench", "--quick", "--only", "imports", "--json", str(tmp_path / "missing" / "b.json")]):
        result = subprocess.run([sys.executable, "-m", "fasttb", *args], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1 and args[-3 if args[0] == "demo" else -2] in result.stderr
        assert "add_scalar" not in result.stdout  # nothing was run


def test_bench_reports_and_saves_json(tmp_path, capsys):
    from fasttb.cli import bench

    path = str(tmp_path / "bench.json")
    assert bench.main(quick=True, json_path=path, sections=["scalars"]) == 0
    out = capsys.readouterr().out
    assert "add_scalar on the caller's thread" in out and "fasttb" in out
    with open(path) as f:
        saved = json.load(f)
    rows = saved["results"]["add_scalar"]
    assert {"noop method", "fasttb", "torch", "tensorboardX"} <= set(rows)
    assert all(r["seconds"] > 0 for r in rows.values())
    assert saved["quick"] is True and saved["machine"]


def test_bench_help():
    result = subprocess.run([sys.executable, "-m", "fasttb", "bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--quick" in result.stdout and "--json" in result.stdout
    assert os.path.exists(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "compare.py"))


def test_bench_png_section_compares_with_pillow(capsys):
    from fasttb.cli import bench

    assert bench.main(quick=True, sections=["png"]) == 0
    out = capsys.readouterr().out
    assert "PNG encoding (median)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  256x256 ")]
    assert len(rows) == len(bench.png_images(8))
    for row in rows:  # "256x256 <class...> <fasttb MB/s> <Pillow MB/s> <speed>x <size>x"
        assert float(row[-4]) > 0 and float(row[-3]) > 0 and row[-2].endswith("x") and row[-1].endswith("x")


@pytest.mark.slow
def test_bench_lightning_section_compares_the_writers_inside_a_fit(tmp_path):
    pytest.importorskip("lightning")
    path = str(tmp_path / "bench.json")
    result = subprocess.run([sys.executable, "-m", "fasttb", "bench", "--quick", "--only", "lightning", "--json", path],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Lightning Trainer.fit" in result.stdout
    with open(path) as f:
        rows = json.load(f)["results"]["lightning"]
    assert list(rows) == ["no logger", "null writer", "stock", "fasttb"]
    assert all(r["seconds"] > 0 for r in rows.values())
    assert {"overhead", "writer"} <= set(rows["fasttb"]) and {"overhead", "writer"} <= set(rows["stock"])


def test_the_cuda_bench_runs_its_loop_on_cpu(tmp_path):
    """The GPU benchmark's code, run small on the CPU, so that a GPU session (minutes of device
    time) does not find its mistakes: every variant, the rounds, the report."""
    pytest.importorskip("torch")
    from fasttb.cli import bench_cuda

    lines: list = []
    results = bench_cuda.run(True, lines.append, device="cpu", width=32, batch=16, target=0.002, steps=5,
                             rounds=2)
    variants = ["no logging", "torch", "fasttb", bench_cuda.ON_STREAM]
    assert results["device"] == "cpu" and results["histogram_floats"] == 32_000
    assert all(results[name]["seconds"] > 0 for name in variants)
    assert len(lines) == 2 and all(name in lines[-1] for name in variants)
    from fasttb import _device

    assert _device.stager().backend.side_copy_bytes == _device.side_copy_bytes()  # put back
    report = bench_cuda.report(results)
    assert set(results["caller"]) == {"add_scalar", "add_histogram"}
    assert len(report) == 2 + len(variants) and "(32,000 floats)" in report[0] and "add_histogram" in report[-1]
