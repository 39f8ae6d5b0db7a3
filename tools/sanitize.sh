#!/usr/bin/env bash
# Builds the core with sanitizers and runs the lifecycle, race and fault tests against that build.
#   tools/sanitize.sh address   # AddressSanitizer + UndefinedBehaviorSanitizer (UB is fatal)
#   tools/sanitize.sh thread    # ThreadSanitizer
#   tools/sanitize.sh thread tests/test_histogram_writer.py -k streamed   # other tests
# Runs in the README's test environment (pip install ".[test]" brings the build tools too).
# FASTTB_RACE_SECONDS shortens or lengthens the race loops (default 3 s each).
set -euo pipefail
kind=${1:-thread}
shift || true
cd "$(dirname "$0")/.."
case "$kind" in
  thread) flags="thread" ;;
  address) flags="address,undefined" ;;
  *) echo "usage: $0 address|thread [pytest arguments]" >&2; exit 2 ;;
esac
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
python -m pip install -q --no-deps --no-build-isolation --target "$target" \
  -Cbuild-dir="build/sanitize-$kind" -Ccmake.define.FASTTB_SANITIZE="$flags" \
  -Ccmake.build-type=RelWithDebInfo .
case "$kind" in
  thread)
    # report_signal_unsafe: the SIGTERM drain only sleeps and reads atomics, which TSan cannot tell.
    export TSAN_OPTIONS="report_signal_unsafe=0 die_after_fork=0 halt_on_error=1 exitcode=66"
    # torch's OpenMP threads (libgomp is not instrumented) would show as races of torch's own.
    export OMP_NUM_THREADS=1
    preload="$(gcc -print-file-name=libtsan.so)" ;;
  address)
    # CPython itself does not free everything at exit, so leaks are not reported.
    export ASAN_OPTIONS="detect_leaks=0 exitcode=66"
    export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1"
    preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so) $(gcc -print-file-name=libstdc++.so.6)" ;;
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
  # Left out: the two RLIMIT_AS tests (a sanitizer's shadow memory takes terabytes of address
  # space, so an address-space limit fails for reasons of its own), and the resident-memory
  # bound (ASan holds freed memory in quarantine, TSan keeps shadow pages).
  # The reader's tests run under ASan only: its scanner shares nothing between threads, and
  # the DataFrames they build start pyarrow's threads, whose uninstrumented code TSan flags.
  # Under both, three fork tests are left out. A child forked while another thread of its
  # parent allocates can inherit a lock of the sanitizer's allocator that thread held, and hang
  # in its first malloc: GCC 12's libasan takes no locks around fork, and libtsan's fork handler
  # takes only its thread registry's and its report lock. gdb showed it under ASan: a child
  # forked during the SIGTERM drain (3 runs in 30 under load), DataLoader workers forked beside
  # fasttb's worker thread (once in a CI run). Under TSan, one child in 40 forked beside a thread
  # that flushes in a loop hung in a CI run. glibc's malloc has fork handlers: the main stage
  # runs all three.
  reader=""
  skip="not cannot_start and not memory_running_out and not memory_stays_near"
  skip="$skip and not forked_while_sigterm_drains and not dataloader_workers_with_an_inherited_writer"
  skip="$skip and not forked_children_exit_while_a_parent_thread_waits"
  if [ "$kind" = address ]; then
    reader=tests/test_reader.py
  fi
  set -- tests/test_races.py tests/test_lifecycle.py tests/test_faults.py tests/test_reliability.py \
    tests/test_scalars.py tests/test_crc32c.py tests/test_wire.py tests/test_histogram_writer.py \
    tests/test_kinds.py tests/test_fuzz.py $reader tests/test_remote.py tests/test_device.py \
    -k "$skip" -n auto --dist loadfile
fi
# --capture=sys: a sanitizer writes its report to file descriptor 2 and may end the process at
# once, before pytest could show what it captured there.
LD_PRELOAD="$preload" python -m pytest -q -p no:cacheprovider --capture=sys "$@"
