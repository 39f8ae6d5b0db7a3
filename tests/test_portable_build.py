"""The core built without its x86 vector code, as on CPUs that have none (arm64 builds take the
same scalar paths for pixels, PNG filters, matching and checksums): the native tests must pass
against that build too."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE_TESTS = ["test_image.py", "test_image_native.py", "test_histogram.py", "test_crc32.py", "test_wire.py"]


@pytest.mark.slow
def test_scalar_build_passes_the_native_tests(tmp_path):
    target, build = tmp_path / "site", tmp_path / "build"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    f"-Cbuild-dir={build}", "-Ccmake.define.CMAKE_CXX_FLAGS=-U__SSE2__",
                    "-Ccmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON", ROOT], check=True, timeout=900)
    with open(build / "compile_commands.json") as f:
        commands = {os.path.basename(c["file"]): c["command"] for c in json.load(f)}
    for source in ["png.cc", "pixels.cc", "histogram.cc"]:
        assert "-U__SSE2__" in commands[source]
    # An editable install of fasttb would be found before PYTHONPATH: set its finder aside.
    (target / "sitecustomize.py").write_text(
        "import sys\nsys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]\n")
    env = dict(os.environ, PYTHONPATH=str(target))
    check = "import fasttb._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__"
    subprocess.run([sys.executable, "-c", check, str(target)], env=env, check=True)
    tests = [os.path.join(ROOT, "tests", name) for name in NATIVE_TESTS]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
