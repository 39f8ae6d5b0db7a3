#!/usr/bin/env bash
# Builds the core with a sanitizer and runs the concurrency-heavy tests against that build.
#   tools/sanitize.sh thread    # ThreadSanitizer
#   tools/sanitize.sh address   # AddressSanitizer (+ UBSan checks that need no runtime flag)
#   tools/sanitize.sh thread tests/test_histogram_writer.py -k streamed   # other tests
# Needs the test dependencies installed in the active environment (pip install ".[test]").
set -euo pipefail
kind=${1:-thread}
shift || true
cd "$(dirname "$0")/.."
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
python -m pip install -q --no-deps --no-build-isolation --target "$target" \
  -Cbuild-dir="build/sanitize-$kind" -Ccmake.define.FASTTB_SANITIZE="$kind" \
  -Ccmake.build-type=RelWithDebInfo .
case "$kind" in
  thread)
    # TSan cannot follow a process that starts threads after fork (the fork test does, on purpose).
    export TSAN_OPTIONS="report_signal_unsafe=0 die_after_fork=0 exitcode=66"
    preload="$(gcc -print-file-name=libtsan.so)" ;;
  address)
    export ASAN_OPTIONS="detect_leaks=0"  # CPython itself does not free everything at exit
    preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" ;;
  *) echo "usage: $0 thread|address" >&2; exit 2 ;;
esac
# An editable install of fasttb would be found before PYTHONPATH: set its finder aside, here and
# in every subprocess the tests start, and make sure the sanitized build is the one loaded.
cat > "$target/sitecustomize.py" <<'PY'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
PY
export PYTHONPATH="$target"
LD_PRELOAD="$preload" python -c "import fasttb._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__" "$target"
if [ $# -eq 0 ]; then
  set -- tests/test_reliability.py tests/test_scalars.py tests/test_crc32c.py tests/test_wire.py \
    -k "not torch_is_not_imported and not sigkill"
fi
LD_PRELOAD="$preload" python -m pytest -q -p no:cacheprovider "$@"
