#!/bin/sh
# The GPU checks of fasttb, as one script for a machine with an NVIDIA GPU and a CUDA torch
# (the device machine of DEVELOPERS.md: no registry, so nothing is installed but fasttb):
# builds and installs the package, runs the CUDA tests and the CPU tests of the same machinery,
# then the GPU benchmark. Everything it prints is also kept under $OUT (default: gpu-results/).
#   tools/gpu_check.sh            # about 5 minutes on an H200, most of it the build
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee "$out/device.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/device.txt" 2>&1
python3 -m pip install --no-build-isolation --no-deps -q . > "$out/build.txt" 2>&1 || { tail -30 "$out/build.txt"; exit 1; }
# The tests import fasttb from the installed package, not from python/ in the tree.
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_device.py -rs 2>&1 | tee "$out/tests.txt"
python3 -m fasttb bench --only cuda --json "$out/bench-cuda.json" 2>&1 | tee "$out/bench-cuda.txt"
python3 -m fasttb bench --quick --only scalars 2>&1 | tee "$out/bench-scalars.txt"
