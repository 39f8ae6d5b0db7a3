"""The wheel: built here, installed into a fresh virtual environment that builds nothing, used."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_wheel_installs_and_logs_in_a_fresh_venv(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), ROOT],
                   check=True, timeout=900)
    (wheel,) = glob.glob(str(wheels / "fasttb-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    # Binary packages only: nothing may be compiled in this environment.
    subprocess.run([py, "-m", "pip", "install", "-q", "--only-binary=:all:", wheel], check=True, timeout=600)
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
