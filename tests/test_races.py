"""Races between threads that share a writer: close() against a push waiting for room, against
an image still being copied, and against flush(). Each runs in a child process (a crash there
fails the test instead of the run) as a loop bounded in time, then every file is read back.

FASTTB_RACE_SECONDS sets how long each loop runs (the sanitizer runs of CI shorten it)."""

from __future__ import annotations

import os

import pytest

from conftest import pil_decode, read_events, read_tree, run_child

SECONDS = float(os.environ.get("FASTTB_RACE_SECONDS", "3"))


def logged_records(root: str, prefix: str) -> int:
    """Records after the first of each file under `root`/`prefix`*."""
    total = 0
    for path, events in read_tree(root).items():
        if os.path.relpath(path, root).startswith(prefix):
            assert events[0].file_version == "brain.Event:2", path
            steps = [e.step for e in events[1:]]
            assert steps == sorted(steps), path  # one logging thread per file: call order
            total += len(events) - 1
    return total


def test_close_while_a_push_waits_for_room(tmp_path):
    # A 4 KiB queue: the logging thread waits for room on most calls, so close() lands in the
    # middle of those waits. Each wait that sees the writer close raises "Writer is closed";
    # every call that returned is in a file. Scalars and texts both take their native paths,
    # and some texts are long enough to be copied without the GIL.
    result = run_child(f"""
        import threading, time, fasttb
        long_text = "y" * 200_000
        deadline = time.monotonic() + {SECONDS}
        trials = logged = refused = 0
        while time.monotonic() < deadline or trials < 3:
            w = fasttb.SummaryWriter({str(tmp_path)!r} + f"/run{{trials}}")
            done = [0, 0]
            def log():
                for i in range(5000):
                    try:
                        if i % 3:
                            w.add_scalar("x", float(i), i)
                        else:
                            w.add_text("t", long_text if i % 300 == 0 else "x" * (i % 50), i)
                        done[0] += 1
                    except OSError as exc:
                        assert "Writer is closed" in str(exc), exc
                        done[1] += 1
            t = threading.Thread(target=log)
            t.start()
            time.sleep(0.0005 * (trials % 8))
            w.close()
            t.join()
            w.close()
            logged += done[0]
            refused += done[1]
            trials += 1
        print(trials, logged, refused)
        """, env={"FASTTB_QUEUE_BYTES": "4096"})
    trials, logged, refused = map(int, result.stdout.split())
    assert trials >= 3 and logged + refused == 5000 * trials
    assert logged_records(str(tmp_path), "run") == logged


def test_close_while_an_image_is_copied(tmp_path):
    # A 27 MB image is copied without the GIL; close() comes in the middle of the copy and a new
    # writer opens at once. Before, the image could land in that other writer's file.
    result = run_child(f"""
        import threading, time, numpy as np, fasttb
        image = np.zeros((3, 3000, 3000), np.uint8)
        image[:, ::7, ::5] = 200
        deadline = time.monotonic() + {SECONDS}
        trials = logged = 0
        while time.monotonic() < deadline or trials < 3:
            w = fasttb.SummaryWriter({str(tmp_path)!r} + f"/images{{trials}}")
            ok = []
            def log():
                try:
                    w.add_image("im", image, trials)
                    ok.append(1)
                except OSError as exc:
                    assert "Writer is closed" in str(exc), exc
            t = threading.Thread(target=log)
            t.start()
            time.sleep(0.001 * (trials % 6))
            w.close()
            other = fasttb.SummaryWriter({str(tmp_path)!r} + f"/other{{trials}}")
            other.add_scalar("o", 1.0, trials)
            t.join()
            other.close()
            w.close()
            logged += len(ok)
            trials += 1
        print(trials, logged)
        """)
    trials, logged = map(int, result.stdout.split())
    assert trials >= 3
    images = 0
    for k in range(trials):
        found = [(e.step, v) for e in read_events(str(tmp_path / f"images{k}"))
                 for v in e.summary.value if v.HasField("image")]
        images += len(found)
        for step, value in found:
            assert (step, value.tag, value.image.height, value.image.width) == (k, "im", 3000, 3000)
            if k % 16 == 0:  # decoding every one would take longer than the race itself
                pixels = pil_decode(value.image.encoded_image_string)
                assert pixels[::7, ::5].min() == 200 and pixels[1::7].max() == 0
        assert not any(v.HasField("image") for e in read_events(str(tmp_path / f"other{k}"))
                       for v in e.summary.value)
    assert images == logged
    assert logged_records(str(tmp_path), "other") == trials


def test_flush_and_close_from_two_threads(tmp_path):
    # Through the core directly and through SummaryWriter: one thread flushes over and over
    # while another closes.
    result = run_child(f"""
        import os, threading, time, fasttb
        from fasttb import _core
        root = {str(tmp_path)!r}
        deadline = time.monotonic() + {SECONDS}
        trials = 0
        while time.monotonic() < deadline or trials < 3:
            core = _core.EventWriter(os.fsencode(f"{{root}}/core.{{trials}}.tfevents"), 120.0, False, time.time())
            core.push_scalar("x", 1.0, trials, time.time())
            w = fasttb.SummaryWriter(f"{{root}}/writer{{trials}}")
            w.add_scalar("x", 1.0, trials)
            start = threading.Barrier(3)
            def flush_often(flush):
                start.wait()
                for _ in range(200):
                    flush()
            threads = [threading.Thread(target=flush_often, args=(f,)) for f in (core.flush, w.flush)]
            for t in threads:
                t.start()
            start.wait()
            time.sleep(0.0002 * (trials % 10))
            core.close()
            w.close()
            for t in threads:
                t.join()
            trials += 1
        print(trials)
        """)
    trials = int(result.stdout)
    tree = read_tree(str(tmp_path))
    assert len(tree) == 2 * trials
    for path, events in tree.items():
        assert [e.summary.value[0].tag for e in events[1:]] == ["x"], path


def test_close_while_add_scalar_reads_a_tensor(tmp_path):
    # Reading a CPU tensor's value (torch's item()) lets the GIL go, and a subclass's item() is
    # Python: a close() from another thread (or from that Python) in the middle freed the writer
    # the native add_scalar had looked up before, and the worker crashed (SIGSEGV, 3 runs of 3).
    # Every call must log, into the file open at its end, as after any close().
    result = run_child(f"""
        import threading, time, torch, fasttb
        root = {str(tmp_path)!r}

        class Closing(torch.Tensor):
            def item(self):
                w.close()
                return super().item()

        w = fasttb.SummaryWriter(root + "/subclass")
        w.add_scalar("x", torch.tensor(1.0).as_subclass(Closing), 0)
        w.close()
        loss, calls = torch.tensor(0.5), 0
        for r in range(40):
            w = fasttb.SummaryWriter(root + f"/race/{{r}}")
            closer = threading.Timer(0.01, w.close)
            closer.start()
            end = time.monotonic() + 0.025
            while time.monotonic() < end:
                w.add_scalar("loss", loss, calls)
                calls += 1
            closer.join()
            w.close()
        print(calls)
        """, timeout=180)
    [event] = [e for e in read_events(str(tmp_path / "subclass")) if e.summary.value]
    assert event.summary.value[0].simple_value == 1.0
    logged = sum(len([e for e in events if e.summary.value]) for events in read_tree(str(tmp_path / "race")).values())
    assert logged == int(result.stdout)


def test_add_scalars_against_close_and_flush_on_other_threads(tmp_path):
    # add_scalars making runs while other threads close() and flush() over and over: flush()
    # and stats() iterated the dict of runs as it grew ("dictionary changed size during
    # iteration"), and add_scalars met the runs gone half-way (a bare AssertionError, or
    # AttributeError: _get_file_writer read its attribute again after a close cleared it). Each
    # call must log, or raise "Writer is closed" when a close lands between its checks.
    result = run_child(f"""
        import collections, sys, threading, fasttb
        sys.setswitchinterval(1e-6)
        w = fasttb.SummaryWriter({str(tmp_path)!r})
        errors = collections.Counter()
        stop = False

        def loop(call):
            while not stop:
                try:
                    call()
                except Exception as exc:
                    errors[type(exc).__name__ + ": " + str(exc).split(":")[0]] += 1

        threads = [threading.Thread(target=loop, args=(c,)) for c in (w.close, w.flush, w.stats)]
        for t in threads:
            t.start()
        logged = 0
        try:  # (a failure here must stop the other threads, or the child hangs instead)
            for i in range(1500):
                try:
                    w.add_scalars("m", {{f"k{{i % 50}}": 1.0, "b": 2.0}}, i)
                    logged += 1
                except OSError as exc:
                    assert str(exc).startswith("Writer is closed"), exc
        finally:
            stop = True
            for t in threads:
                t.join()
        w.close()
        print(logged, dict(errors))
        """, timeout=300)
    logged, errors = result.stdout.split(" ", 1)
    assert errors.strip() == "{}"
    b = sum(len([e for e in events if e.summary.value]) for path, events in read_tree(str(tmp_path)).items()
            if os.path.basename(os.path.dirname(path)) == "m_b")
    assert b == int(logged) > 1000


def test_tensorboardx_dialect_calls_racing_close_log_or_raise(tmp_path):
    # A call of the tensorboardX dialect that met close() on another thread was dropped in
    # silence (its closed file writer took it as tensorboardX's closed writer takes records):
    # each call must reach a file, or raise "Writer is closed".
    result = run_child(f"""
        import sys, threading, time, numpy as np, fasttb.tensorboardX as ftx
        sys.setswitchinterval(1e-5)
        w = ftx.SummaryWriter({str(tmp_path)!r})
        image = np.zeros((3, 4, 4), np.float32)
        logged = []
        stop = threading.Event()

        def log(i):
            deadline = time.monotonic() + {SECONDS}
            step = 0
            while time.monotonic() < deadline:
                for call in (lambda: w.add_image(f"i{{i}}", image, step),
                             lambda: w.add_scalar(f"s{{i}}", 1.0, step, display_name="d")):
                    try:
                        call()
                        logged.append(1)
                    except OSError as exc:
                        assert str(exc).startswith("Writer is closed"), exc
                step += 1

        def close():
            while not stop.is_set():
                w.close()
                time.sleep(0.0003)

        loggers = [threading.Thread(target=log, args=(i,)) for i in range(3)]
        closer = threading.Thread(target=close)
        for t in loggers + [closer]:
            t.start()
        for t in loggers:
            t.join()
        stop.set()
        closer.join()
        w.close()
        print(len(logged))
        """, timeout=120 + 10 * SECONDS)
    written = sum(len([e for e in events if e.summary.value]) for events in read_tree(str(tmp_path)).values())
    assert written == int(result.stdout) > 100


@pytest.mark.parametrize("how", ["thread", "ctrl-c"])
def test_a_second_close_waits_for_the_first(tmp_path, how):
    # close() must return with everything written. A close() on a second thread while the first
    # waited for the worker, and a close() retried after Ctrl-C interrupted one, returned at
    # once with most of the queue still to write (and the runs' files still open).
    result = run_child(f"""
        import glob, os, signal, sys, threading, time, numpy as np, fasttb
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from conftest import read_tree
        image = np.random.default_rng(0).integers(0, 255, (3, 700, 700), dtype=np.uint8)

        def records(root):
            return sum(len([e for e in events if e.summary.value]) for events in read_tree(root).values())

        def open_event_files():
            paths = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    paths.append(os.readlink("/proc/self/fd/" + fd))
                except OSError:
                    pass  # the listing's own descriptor, closed by now
            return [p for p in paths if "tfevents" in p]

        for how in [{how!r}]:
            root = os.path.join({str(tmp_path)!r}, how)
            w = fasttb.SummaryWriter(root)
            w.add_scalars("m", {{"a": 1.0, "b": 2.0}}, 0)
            for i in range(40):
                w.add_image("im", image, i)
            if how == "thread":
                first = threading.Thread(target=w.close)
                first.start()
                time.sleep(0.02)
            else:
                main = threading.main_thread().ident
                threading.Timer(0.05, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
                try:
                    w.close()
                except KeyboardInterrupt:
                    pass
            w.close()
            print(how, records(root), len(open_event_files()))
            if how == "thread":
                first.join()
        """, timeout=300)
    assert result.stdout.split("\n")[0] == f"{how} 42 0"


@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_threads_logging_after_close_share_one_new_file(tmp_path, dialect):
    # After close() the next call opens a new file; several threads making that call at once
    # each made one, and their records then interleaved across files.
    result = run_child(f"""
        import glob, sys, threading, time
        from fasttb import SummaryWriter
        if {dialect!r} == "tensorboardX":
            from fasttb.tensorboardX import SummaryWriter
        sys.setswitchinterval(1e-6)
        deadline = time.monotonic() + {SECONDS}
        trials = 0
        while time.monotonic() < deadline or trials < 20:
            logdir = {str(tmp_path)!r} + f"/run{{trials}}"
            w = SummaryWriter(logdir)
            w.close()
            start = threading.Barrier(4)
            def log(k):
                start.wait()
                for i in range(20):
                    w.add_scalar(f"t{{k}}", float(i), i)
            threads = [threading.Thread(target=log, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            w.close()
            files = glob.glob(logdir + "/events.out.tfevents.*")
            assert len(files) == 2, (trials, files)
            trials += 1
        print(trials)
    """, timeout=60 + 10 * SECONDS)
    assert int(result.stdout) >= 20
