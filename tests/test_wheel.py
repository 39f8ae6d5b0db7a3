"""The wheel: built here, installed into fresh virtual environments that build nothing (only the
wheel and what it declares: numpy and protobuf), used there, and what it wrote there compared with
what torch's writer writes in this, the full environment."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), ROOT],
                   check=True, timeout=900)
    (path,) = glob.glob(str(wheels / "fasttb-*.whl"))
    return path


def bare_venv(path, wheel: str, *pins: str) -> str:
    """A virtual environment holding the wheel and its dependencies, binary packages only:
    nothing may be compiled there. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    py = str(path / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--only-binary=:all:", wheel, *pins], check=True,
                   timeout=600)
    return py


@pytest.mark.slow
def test_wheel_installs_and_logs_in_a_fresh_venv(tmp_path, wheel):
    import zipfile

    with zipfile.ZipFile(wheel) as archive:  # the license goes with every copy (Apache-2.0, 4(a))
        assert any(".dist-info/" in name and name.endswith("/LICENSE") for name in archive.namelist())
    py = bare_venv(tmp_path / "venv", wheel)
    logdir = str(tmp_path / "run")
    script = textwrap.dedent(f"""
        import sys, fasttb
        from fasttb import SummaryWriter, _core
        with SummaryWriter({logdir!r}) as w:
            for i in range(100):
                w.add_scalar("loss", 1.0 / (i + 1), i)
        assert "torch" not in sys.modules
        print(fasttb.__version__, _core.crc32c_implementation())
        """)
    result = subprocess.run([py, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "0.1.0"
    from conftest import accumulator

    assert len(accumulator(logdir).Scalars("loss")) == 100


@pytest.mark.slow
@pytest.mark.parametrize("protobuf", ["newest", "3.20.3"])  # the newest and the oldest declared
def test_every_kind_from_a_bare_environment_matches_torch(tmp_path, wheel, protobuf):
    """Every method but add_graph and add_figure, called where only numpy and protobuf are
    installed; what that wrote is read back here and compared with torch's writer's records and
    side files for the same calls."""
    from conftest import assert_same_runs
    from every_kind import onnx_model

    py = bare_venv(tmp_path / "venv", wheel, *([] if protobuf == "newest" else [f"protobuf=={protobuf}"]))
    installed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                               check=True).stdout
    names = {line.split("==")[0].lower() for line in installed.split()}
    assert names - {"pip", "setuptools", "wheel"} == {"fasttb", "numpy", "protobuf"}, installed
    if protobuf != "newest":
        assert f"protobuf=={protobuf}" in installed
    model = str(tmp_path / "model.onnx")
    onnx_model(model, tensor_attribute=protobuf == "newest")
    script = os.path.join(ROOT, "tests", "every_kind.py")
    runs = {}
    for name, python in (("bare", py), ("torch", sys.executable)):
        runs[name] = str(tmp_path / name)
        result = subprocess.run([python, script, "fasttb" if name == "bare" else "torch", runs[name], model],
                                capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
    assert_same_runs(runs["torch"], runs["bare"])
