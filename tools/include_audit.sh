#!/bin/sh
# Runs include-what-you-use over csrc/ (Debian: apt-get install iwyu) and prints, per file, the
# includes it finds unused or missing. tools/iwyu.imp names the public headers for symbols that
# libstdc++, CPython and zlib declare in private ones. What it still reports and we keep:
#   <memory> for allocator_traits and <ratio> (only reached through std::vector and std::chrono),
#   <xmmintrin.h> (histogram.cc takes it through <immintrin.h>), <cstddef> in png.h.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${TMPDIR:-/tmp}/fasttb-iwyu
python=${PYTHON:-python3}
cmake -S "$root" -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DSKBUILD_PROJECT_NAME=fasttb \
    -DPython_EXECUTABLE="$(command -v "$python")" \
    -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" > /dev/null
iwyu_tool -p "$build" -j "$(nproc)" -- -Xiwyu --no_fwd_decls -Xiwyu --cxx17ns \
    -Xiwyu --mapping_file="$root/tools/iwyu.imp" 2>&1 |
    awk '/should (add|remove) these lines:/ { file = $1; verb = $3; next }
         /^$/ { file = "" }
         file != "" && /^(- )?#include|^- namespace/ { print file ": " verb " " $0 }' |
    sed "s|$root/||"
