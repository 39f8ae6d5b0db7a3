"""How processes end, and what they keep: interpreter exit with daemon threads inside fasttb,
multiprocessing children and DataLoader workers (which leave with os._exit), SIGTERM, SIGKILL,
and a writer kept alive only by its bound add_scalar. Every process that could crash, hang or be
killed is a child of the test."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import event_files, read_events, read_records, read_tree, run_child
from tensorboard.compat.proto import event_pb2

from fasttb import SummaryWriter, _core

# What daemon threads are doing when the interpreter exits: each call lets the GIL go.
DAEMON_CALLS = {
    "flush": "w.flush()",
    "image": "w.add_image('im', image)",          # 12 MB of float pixels, scaled without the GIL
    "histogram": "w.add_histogram('h', values)",  # 8 MB, streamed in without the GIL
    "full queue": "w.add_scalar('x', 1.0)",       # a 4 KiB queue: waits for room
}


@pytest.mark.parametrize("call", DAEMON_CALLS)
def test_exit_with_daemon_threads_inside_fasttb(tmp_path, call):
    # Before, every such exit aborted (SIGABRT, status 134): CPython ends a daemon thread taking
    # the GIL back during shutdown, and that unwinding through C++ frames terminated the process.
    env = {"FASTTB_QUEUE_BYTES": "4096"} if call == "full queue" else {}
    for run in range(4):
        logdir = str(tmp_path / f"run{run}")
        result = run_child(f"""
            import threading, time, numpy as np, fasttb
            w = fasttb.SummaryWriter({logdir!r})
            image = np.zeros((3, 1000, 1000), np.float32)
            values = np.zeros(1_000_000, np.float64)
            def busy():
                while True:
                    {DAEMON_CALLS[call]}
            for _ in range(2):
                threading.Thread(target=busy, daemon=True).start()
            time.sleep(0.1 + 0.05 * {run})
            print("exiting", flush=True)
            """, env=env, timeout=60)
        assert result.stdout == "exiting\n" and "Fatal" not in result.stderr, result.stderr
        read_tree(logdir)  # whatever was written reads back


def _write_module(directory, name: str, code: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(code))


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_keep_what_they_logged(tmp_path, method):
    # Children end with os._exit, which skips atexit; before, a child that logged 1000 scalars
    # without close() left an empty file.
    _write_module(tmp_path, "mp_target", """
        import fasttb

        def log(logdir):
            w = fasttb.SummaryWriter(logdir)
            for i in range(1000):
                w.add_scalar("x", float(i), i)
        """)
    run_child(f"""
        import multiprocessing, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import mp_target
        if __name__ == "__main__":
            ctx = multiprocessing.get_context({method!r})
            children = [ctx.Process(target=mp_target.log, args=({str(tmp_path)!r} + f"/child{{k}}",))
                        for k in range(2)]
            for p in children:
                p.start()
            for p in children:
                p.join()
                assert p.exitcode == 0, p.exitcode
        """, timeout=120)
    for k in range(2):
        steps = [e.step for e in read_events(str(tmp_path / f"child{k}"))[1:]]
        assert steps == list(range(1000))


def test_process_pool_workers_keep_what_they_logged(tmp_path):
    _write_module(tmp_path, "pool_target", """
        import os, fasttb

        def log(args):
            logdir, n = args
            w = fasttb.SummaryWriter(os.path.join(logdir, str(os.getpid())))
            for i in range(n):
                w.add_scalar("x", float(i), i)
            return n
        """)
    run_child(f"""
        import concurrent.futures, multiprocessing, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import pool_target
        if __name__ == "__main__":
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
                assert sum(pool.map(pool_target.log, [({str(tmp_path)!r}, 500)] * 4)) == 2000
        """, timeout=120)
    # One file per task (a writer each), in a directory per worker process.
    assert sum(len(events) - 1 for events in read_tree(str(tmp_path)).values()) == 2000


def test_dataloader_workers_with_an_inherited_writer(tmp_path):
    # A writer made in the parent and used in DataLoader workers: each worker writes a file of its
    # own, and keeps everything (before: 380 of 400).
    run_child(f"""
        import torch
        from torch.utils.data import DataLoader, Dataset
        import fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})

        class Logged(Dataset):
            def __len__(self):
                return 400
            def __getitem__(self, i):
                w.add_scalar("item", float(i), i)
                return i

        if __name__ == "__main__":
            seen = sorted(int(i) for batch in DataLoader(Logged(), batch_size=10, num_workers=2,
                                                        multiprocessing_context="fork") for i in batch)
            assert seen == list(range(400))
            w.close()
        """, timeout=120)
    steps = sorted(e.step for events in read_tree(str(tmp_path)).values() for e in events
                   if e.summary.value and e.summary.value[0].tag == "item")
    assert steps == list(range(400))
    assert len(event_files(str(tmp_path))) == 3  # the parent's and one per worker


def test_sigterm_keeps_what_was_logged_and_still_ends_the_process(tmp_path):
    # SIGTERM with its default action (how schedulers and Kubernetes stop jobs), right after
    # logging: before, nothing was kept.
    result = run_child(f"""
        import os, signal, time, fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})
        for i in range(5000):
            w.add_scalar("x", float(i), i)
        w.add_image("im", __import__("numpy").zeros((3, 64, 64)), 5000)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        """, check=False, timeout=60)
    assert result.returncode == -signal.SIGTERM
    events = read_events(str(tmp_path))
    assert [e.step for e in events[1:5001]] == list(range(5000))
    assert events[-1].summary.value[0].HasField("image")


def test_a_child_forked_while_sigterm_drains_is_not_terminated_with_its_parent(tmp_path):
    # The SIGTERM the parent drains is not its child's: the child kept the mark, dropped all it
    # logged and, at its exit, waited for good for a watcher that only the parent has.
    # The parent's worker is paused with a record queued, so that the drain lasts its whole 5 s
    # and the fork surely falls inside it: with nothing to write, the watcher could end the
    # parent before it forked (7 runs in 30 under load and ASan), and there was no child to test.
    pid_file = str(tmp_path / "child.pid")
    result = run_child(f"""
        import os, signal, sys, time
        import fasttb
        from fasttb import _core
        w = fasttb.SummaryWriter({str(tmp_path / "parent")!r})
        w.add_scalar("x", 1.0, 0)
        w.flush()
        _core._pause_worker(True)
        w.add_scalar("x", 2.0, 1)
        os.kill(os.getpid(), signal.SIGTERM)
        if os.fork() == 0:
            os.setsid()  # outlives its parent: out of the group that run_child kills at the end
            quiet = os.open(os.devnull, os.O_WRONLY)  # (a child that hangs holds no pipe of the test's)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            with fasttb.SummaryWriter({str(tmp_path / "child")!r}) as c:
                for i in range(100):
                    c.add_scalar("y", float(i), i)
            with open({pid_file!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename({pid_file!r} + ".tmp", {pid_file!r})
            sys.exit(0)
        time.sleep(30)
    """, check=False)
    assert result.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(pid_file), "the child wrote no pid file within 30 s (it hung, or was never forked)"
    with open(pid_file) as f:
        pid = int(f.read())

    def running() -> bool:  # (an orphan's zombie may wait for a reaper that never comes)
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = running()
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the child did not exit"
    assert [e.step for e in read_events(str(tmp_path / "child")) if e.summary.value] == list(range(100))


@pytest.mark.parametrize("call", ["flush", "add_histogram"])
def test_atexit_handlers_registered_before_fasttb_can_still_wait_for_its_threads(tmp_path, call):
    # fasttb's exit handshake parks the threads that come back into fasttb from then on. It
    # was registered when fasttb loaded, so the handlers registered before (logging.shutdown,
    # a library's cleanup) ran after it and hung joining a daemon thread parked in flush().
    # It is registered at interpreter start now (fasttb-patch.pth), and runs after them all.
    result = run_child(f"""
        import atexit, threading, time
        stop = threading.Event()

        def shutdown():
            stop.set()
            thread.join()
            print("joined")

        atexit.register(shutdown)
        import numpy as np
        from fasttb import SummaryWriter
        w = SummaryWriter({str(tmp_path)!r})
        weights = np.random.default_rng(0).random(1_000_000)  # (8 MB: copied without the GIL)

        def monitor():
            i = 0
            while not stop.is_set():
                w.add_scalar("x", float(i), i)
                w.flush() if {call!r} == "flush" else w.add_histogram("w", weights, i)
                i += 1

        thread = threading.Thread(target=monitor, daemon=True)
        thread.start()
        time.sleep(0.3)
    """, timeout=60)
    assert result.stdout == "joined\n"
    steps = [e.step for e in read_events(str(tmp_path)) if e.summary.value and e.summary.value[0].tag == "x"]
    assert steps == list(range(len(steps))) and steps


def test_what_atexit_handlers_registered_before_fasttb_log_is_kept(tmp_path):
    # They run after fasttb's own exit flush: their records stayed in the queue.
    # (Images, which the worker takes a while to encode: exit came before it was done.)
    run_child(f"""
        import atexit
        import numpy as np
        noise = np.random.default_rng(0).integers(0, 256, (3, 1024, 1024), dtype=np.uint8)
        atexit.register(lambda: [w.add_image("late", noise, i) for i in range(20)])
        import fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})
        w.add_scalar("early", 1.0, 0)
    """)
    tags = [e.summary.value[0].tag for e in read_events(str(tmp_path)) if e.summary.value]
    assert tags == ["early"] + ["late"] * 20


def test_what_the_interpreter_teardown_logs_is_kept(tmp_path):
    # A __del__ that logs runs during Py_Finalize, after every atexit handler; its writer is never
    # freed (no close() on the way out). The record stayed in the queue unless the worker happened
    # to wake before the process ended: 5 of 10 runs lost it. The core's own C-level exit handler
    # writes it. Six runs, as a loss was a matter of timing.
    code = """
        import ctypes, sys
        import fasttb
        class LastWords:
            def __init__(self, w):
                self.w = w
            def __del__(self):
                self.w.add_scalar("last", 7.0, 99)
        w = fasttb.SummaryWriter(sys.argv[1])
        w.add_scalar("first", 1.0, 0)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(w))  # never freed, so never closed
        keeper = LastWords(w)
    """
    for i in range(6):
        run = str(tmp_path / str(i))
        subprocess.run([sys.executable, "-c", textwrap.dedent(code), run], check=True, timeout=60)
        tags = [e.summary.value[0].tag for e in read_events(run) if e.summary.value]
        assert tags == ["first", "last"], f"run {i}"


def test_sigterm_handlers_of_the_program_come_first(tmp_path):
    # A handler installed by the program (before or after fasttb's) decides what SIGTERM does.
    result = run_child(f"""
        import os, signal, sys, fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
        for i in range(100):
            w.add_scalar("x", float(i), i)
        os.kill(os.getpid(), signal.SIGTERM)
        """, check=False)
    assert result.returncode == 3
    assert len(read_events(str(tmp_path))) == 101


def test_sigkill_loses_at_most_what_the_queue_holds(tmp_path):
    # A saturated worker (noise images cost it more than the loop): SIGKILL loses the queue's
    # contents, bounded by its size in bytes, plus what waits in the file's buffer (4 MiB) and the
    # image being encoded. The README gives the time this is, measured.
    queue_bytes = 16 << 20
    child = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(f"""
        import numpy as np, fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})
        image = np.random.default_rng(0).integers(0, 255, (3, 512, 512), dtype=np.uint8)
        i = 0
        while True:
            w.add_image("im", image, i)
            i += 1
            print(i, flush=True)
        """)], stdout=subprocess.PIPE, text=True, env=dict(os.environ, FASTTB_QUEUE_BYTES=str(queue_bytes)))
    try:
        logged = 0
        while logged < 200:
            logged = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        logged = max([logged] + [int(line) for line in child.stdout.read().split()])
    finally:
        child.kill()
        child.stdout.close()
    (path,) = event_files(str(tmp_path))
    events = [event_pb2.Event.FromString(p) for p in read_records(path, allow_torn_tail=True)]
    kept = len(events) - 1
    assert [e.step for e in events[1:]] == list(range(kept))
    image_bytes = 3 * 512 * 512
    png_bytes = len(events[-1].summary.value[0].image.encoded_image_string)
    bound = queue_bytes // image_bytes + (4 << 20) // png_bytes + 2
    assert logged - kept <= bound, (logged, kept, bound)


def test_a_bound_add_scalar_keeps_its_writer_alive(tmp_path):
    # `log = SummaryWriter(d).add_scalar` keeps the writer, as a Python bound method would (before:
    # ReferenceError for everything but plain floats).
    import torch

    logdir = str(tmp_path)
    log = SummaryWriter(logdir).add_scalar
    gc.collect()
    log("x", np.float32(1.5), 1)
    log("x", torch.tensor(2.5), 2)
    log("x", 3.5, 3, new_style=True)
    log("x", 4.5, 4)
    with pytest.raises(TypeError):
        log("x", 5.5, 5, bogus=True)
    del log
    gc.collect()
    _core.flush_all()  # the writer is gone: its close was queued, and is done after this
    events = read_events(logdir)[1:]
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert events[2].summary.value[0].metadata.plugin_data.plugin_name == "scalars"
    assert [e.summary.value[0].simple_value for e in events if e.step != 3] == [1.5, 2.5, 4.5]


def test_a_writer_dropped_without_close_is_closed_in_the_background(tmp_path):
    w = SummaryWriter(str(tmp_path))
    for i in range(10):
        w.add_scalar("x", float(i), i)
    path = w.file_writer.path
    del w
    gc.collect()
    _core.flush_all()
    assert len(read_records(path)) == 11
    deadline = time.monotonic() + 30
    open_files = lambda: {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    while path in open_files() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path not in open_files()


@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_a_relative_log_dir_stays_where_it_was_when_the_directory_changes(tmp_path, dialect):
    # The worker opens hparams runs and embedding side files after the call has returned; with a
    # relative log dir it opened them in whatever directory the process had moved to by then
    # (and close() raised FileNotFoundError). The stock writers open them during the call.
    name = "run_name" if dialect == "torch" else "name"

    def tree(writer: str) -> list:
        root = tmp_path / writer
        (root / "moved").mkdir(parents=True)
        run_child(f"""
            import os, warnings
            import numpy as np
            warnings.simplefilter("ignore")
            os.chdir({str(root)!r})
            from {writer} import SummaryWriter
            w = SummaryWriter("runs/x")
            w.add_embedding(np.ones((3, 2)), metadata=["p", "q", "r"], global_step=1)
            w.add_hparams({{"lr": 0.1}}, {{"acc": 0.5}}, {name}="hp")
            os.chdir("moved")  # (add_scalars then breaks torch's writer, so it is left out)
            w.close()
            """)
        return sorted(os.path.relpath(os.path.join(here, n), root).split(".tfevents.")[0]
                      for here, _, names in os.walk(root) for n in names)

    stock = "torch.utils.tensorboard" if dialect == "torch" else "tensorboardX"
    ours = "fasttb" if dialect == "torch" else "fasttb.tensorboardX"
    expected = tree(stock)
    assert "runs/x/hp/events.out" in expected and "runs/x/projector_config.pbtxt" in expected
    assert tree(ours) == expected
    hp = read_events(str(tmp_path / ours / "runs" / "x" / "hp"))
    assert [v.simple_value for e in hp for v in e.summary.value if v.tag == "acc"] == [0.5]


def test_forked_children_exit_while_a_parent_thread_waits(tmp_path):
    # A parent thread in a fasttb wait (here flush(), which lets the GIL go and takes it back)
    # when another thread forks: the child inherited the exit handshake's count of threads
    # taking the GIL back, which no thread of the child would ever lower, and its exit hook
    # waited forever (7 children of 40 hung). A child still running after 20 s (normal exits
    # take well under 1 s, 3 s under TSan on a loaded machine) is sent SIGABRT, so that
    # faulthandler shows in stderr where it stood.
    result = run_child(f"""
        import os, sys, threading, time, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from forking import exited_within
        import fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})
        w.add_scalar("x", 1.0, 0)
        stop = False

        def flusher():
            while not stop:
                w.flush()

        t = threading.Thread(target=flusher)
        t.start()
        hung = 0
        for n in range(40):
            time.sleep(0.005)
            pid = os.fork()
            if pid == 0:
                sys.exit(0)  # a plain exit, fasttb untouched in the child
            hung += not exited_within(pid, 20)
        stop = True
        t.join()
        w.close()
        print(hung)
        """, timeout=300)
    assert int(result.stdout) == 0, result.stderr
    [event] = [e for e in read_events(str(tmp_path)) if e.summary.value]
    assert event.summary.value[0].simple_value == 1.0


def test_sigterm_in_the_middle_of_a_streamed_histogram(tmp_path):
    # The handler used to wait for the worker on the thread the signal interrupted; the worker
    # waited for that thread to finish copying a streamed histogram (1 MiB or more), so after a
    # 5 s stall the process ended and the scalars logged before the signal were lost. Now the
    # signal is handed to a watcher thread, the loop goes on (what it logs after the signal is
    # dropped), and the process ends by SIGTERM once the queue is written.
    code = textwrap.dedent("""
        import sys, numpy as np, fasttb
        w = fasttb.SummaryWriter(sys.argv[1])
        weights = np.random.default_rng(0).random(4_000_000, dtype=np.float32)
        n = 0
        print("ready", flush=True)
        for step in range(100000):
            for k in range(200):
                w.add_scalar("loss", float(n), n)
                n += 1
            print(n, flush=True)  # every scalar before this line has returned
            w.add_histogram("weights", weights, step)
        """)
    for trial, delay in enumerate((0.3, 0.55, 0.8)):
        logdir = str(tmp_path / str(trial))
        with subprocess.Popen([sys.executable, "-c", code, logdir], stdout=subprocess.PIPE, text=True) as child:
            before = _terminate_mid_loop(child, delay)
        steps = [e.step for e in read_events(logdir) if e.summary.value and e.summary.value[0].tag == "loss"]
        assert len(steps) >= before > 0 and steps == list(range(len(steps)))


def _terminate_mid_loop(child: subprocess.Popen, delay: float) -> int:
    """Sends SIGTERM `delay` seconds into the child's loop, checks that the child ends by it and
    returns how many calls had returned before it (at least: the last count the child printed)."""
    import threading

    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        seen = [0]

        def read() -> None:
            for line in child.stdout:
                seen.append(int(line))

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(delay)
        before = seen[-1]
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == -signal.SIGTERM
        reader.join()
        return before
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("handler", ["close", "log"])
def test_a_signal_handler_that_closes_or_logs_while_the_queue_is_full(tmp_path, handler):
    # Python runs signal handlers inside fasttb's wait for room, where the waiting call holds a
    # pin on the writer and a place in the queue's line. A handler's close() waited for that
    # pin, and a handler's add_scalar queued behind its own thread: both hung for good.
    code = textwrap.dedent(f"""
        import signal, sys, numpy as np, fasttb
        w = fasttb.SummaryWriter({str(tmp_path)!r})

        def on_term(signum, frame):
            if {handler!r} == "close":
                w.close()
            else:
                w.add_scalar("from handler", 1.0, 0)
            print("handled", flush=True)
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_term)
        image = np.random.default_rng(0).integers(0, 255, (3, 2500, 2500), dtype=np.uint8)
        print("ready", flush=True)
        for i in range(100000):
            w.add_image("im", image, i)  # 19 MB each, past the 1 MiB queue: calls wait for room
        """)
    env = dict(os.environ, FASTTB_QUEUE_BYTES="1M")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) as child:
        try:
            assert child.stdout.readline() == "ready\n"
            time.sleep(1.0)
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=60) == 0
            assert child.stdout.read() == "handled\n"
        finally:
            if child.poll() is None:
                child.kill()
    events = [e for e in read_events(str(tmp_path)) if e.summary.value]
    images = [e.step for e in events if e.summary.value[0].tag == "im"]
    assert images and images == list(range(len(images)))  # (one only, under TSan's slowdown)
    assert [e.summary.value[0].tag == "from handler" for e in events].count(True) == (handler == "log")
