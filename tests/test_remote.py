"""Remote log dirs without a network: fsspec's in-memory filesystem (``memory://``) and a
filesystem that fails on demand, for segments, names, side files, retries, permanent failures,
timeouts, the spool bound and the errors for missing packages. The S3 tests are in
test_remote_s3.py."""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import textwrap
import threading
import time
import uuid
import warnings

import numpy as np
import pytest
from conftest import normalized, read_records, read_tree, run_child
from tensorboard.compat.proto import event_pb2

fsspec = pytest.importorskip("fsspec")
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

from fasttb import SummaryWriter  # noqa: E402

# fasttb._remote is imported by the tests that need it, not at collection: test_fuzz.py's
# add_onnx_graph case sits on its threshold, and one more module imported before it moves it.

SEGMENT = re.compile(r"^events\.out\.tfevents\.\d{10}\.[^/]+\.\d+\.\d{6}\.\d{6}$")


class FlakyFileSystem(MemoryFileSystem):
    """memory:// that raises ``failure`` (an exception) from put_file while it is set, counting
    the attempts; ``failures_left`` limits how many times."""

    protocol = "flaky"
    failure: "BaseException | None" = None
    failures_left = 0
    attempts = 0

    def put_file(self, lpath, rpath, *args, **kwargs):
        type(self).attempts += 1
        if type(self).failure is not None and type(self).failures_left != 0:
            type(self).failures_left -= 1
            raise type(self).failure
        return super().put_file(lpath, rpath, *args, **kwargs)


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


@pytest.fixture(autouse=True)
def spool(tmp_path, monkeypatch):
    path = tmp_path / "spool"
    monkeypatch.setenv("FASTTB_SPOOL", str(path))
    FlakyFileSystem.failure, FlakyFileSystem.failures_left, FlakyFileSystem.attempts = None, 0, 0
    yield str(path)
    FlakyFileSystem.failure = None


def fresh_url(protocol: str = "memory") -> str:
    return f"{protocol}://fasttb-{uuid.uuid4().hex[:12]}/run"


def in_memory_store(protocol: str, code: str, hang: bool = True) -> str:
    """Child-process code: ``protocol`` registered as memory:// whose uploads (``hang``) never
    return, a store that neither answers nor fails; then ``code``."""
    store = textwrap.dedent(f"""
        import threading
        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem

        class Store(MemoryFileSystem):
            protocol = {protocol!r}

            def put_file(self, *args, **kwargs):
                if {hang!r}:
                    threading.Event().wait()
                return super().put_file(*args, **kwargs)

        fsspec.register_implementation({protocol!r}, Store, clobber=True)
    """)
    return store + textwrap.dedent(code)


def download(url: str, local: str) -> str:
    fs, path = fsspec.core.url_to_fs(url)
    for remote in fs.find(path):
        target = os.path.join(local, os.path.relpath(remote, path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(fs.cat_file(remote))
    return local


def runs(logdir: str) -> dict:
    """{run: normalized events in file-name order}, without the first record of each file."""
    out: dict = {}
    for path, events in sorted(read_tree(logdir).items()):
        assert events[0].HasField("file_version"), path
        out.setdefault(os.path.relpath(os.path.dirname(path), logdir), []).extend(
            normalized(e) for e in events[1:])
    return out


def side_files(logdir: str) -> dict:
    out = {}
    for here, _, names in os.walk(logdir):
        for n in names:
            if "tfevents" not in n:
                with open(os.path.join(here, n), "rb") as f:
                    out[os.path.relpath(os.path.join(here, n), logdir)] = f.read()
    return out


def log_every_kind(w) -> None:
    for i in range(1000):
        w.add_scalar("loss", i * 0.5, i)
        if i % 100 == 99:
            w.flush()
    w.add_scalars("m", {"a": 1.0, "b": 2.0}, 3)
    w.add_hparams({"lr": 0.1, "opt": "sgd"}, {"acc": 0.5}, run_name="hp")
    w.add_embedding(np.arange(40.0).reshape(10, 4), metadata=list(range(10)),
                    label_img=np.zeros((10, 3, 4, 4)), global_step=2)
    w.add_embedding(np.ones((3, 2)), global_step=3, tag="second")
    w.add_histogram("h", np.arange(100.0), 1)
    w.add_image("img", np.zeros((3, 8, 8)), 1)
    w.add_text("t", "x", 1)
    w.close()


def test_a_remote_run_holds_what_a_local_run_holds(tmp_path, spool):
    local = str(tmp_path / "local")
    url = fresh_url()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the embedding-directory notice is printed, not warned
        log_every_kind(SummaryWriter(local))
        remote = SummaryWriter(url)
        log_every_kind(remote)
    assert remote.get_logdir() == url
    copy = download(url, str(tmp_path / "downloaded"))
    assert runs(copy) == runs(local)
    assert side_files(copy) == side_files(local)
    # Every segment is a whole event file, named in write order: steps rise across the sorted names.
    main = sorted(n for n in os.listdir(copy) if "tfevents" in n)
    assert len(main) == 11 and all(SEGMENT.match(n) for n in main)
    steps = [e.step for n in main for e in map(event_pb2.Event.FromString, read_records(os.path.join(copy, n)))
             if e.summary.value and e.summary.value[0].tag == "loss"]
    assert steps == list(range(1000))
    assert os.listdir(spool) == []  # uploaded, and the spool folder removed at close()
    stats = remote.stats()
    assert stats["upload_pending"] == 0 and stats["uploaded_objects"] >= 16


def test_segments_are_cut_by_size_and_age_without_flush(spool, monkeypatch):
    monkeypatch.setenv("FASTTB_SEGMENT_BYTES", "4K")
    url = fresh_url()
    w = SummaryWriter(url, flush_secs=1.0)
    fs, path = fsspec.core.url_to_fs(url)
    for i in range(600):  # about 22 kB/s for 1.2 s
        w.add_scalar("loss", float(i), i)
        if i % 10 == 9:
            time.sleep(0.02)
    logged = time.monotonic()
    # No flush(): every record reaches the store within flush_secs (plus the upload).
    deadline = logged + 1.0 + 0.5
    while time.monotonic() < deadline:
        data = b"".join(fs.cat_file(p) for p in sorted(fs.find(path)))
        if data.count(b"loss") == 600:
            break
        time.sleep(0.05)
    assert data.count(b"loss") == 600, "records did not reach the store within flush_secs"
    sizes = [fs.size(p) for p in fs.find(path)]
    w.close()
    assert len(sizes) >= 4
    # The size limit is checked four times a second: a segment holds at most what came meanwhile.
    assert max(sizes) < 4096 + 200 * 45


def test_a_writer_dropped_without_close_is_uploaded_and_lets_its_spool_go(spool):
    # A local writer nobody closes is closed by the worker once dropped. A remote one kept its
    # spool, the spool's locked descriptor and its records until the interpreter exited.
    import gc

    from fasttb import _remote

    def spool_descriptors():
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return sum(name.startswith(spool) for name in names)

    urls = [fresh_url() for _ in range(20)]
    for i, url in enumerate(urls):
        w = SummaryWriter(url, flush_secs=3600)
        w.add_scalar("loss", float(i), i)
        w.add_text("note", "dropped", i)
        w.add_embedding(np.ones((2, 2)), global_step=i)  # side files too
        del w
    gc.collect()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (os.listdir(spool) or spool_descriptors()):
        time.sleep(0.05)
    assert os.listdir(spool) == [] and spool_descriptors() == 0
    assert not any(root.url in urls for root in _remote._uploader.roots)
    for i, url in enumerate(urls):
        fs, path = fsspec.core.url_to_fs(url)
        names = sorted(os.path.relpath(p, path) for p in fs.find(path))
        assert "projector_config.pbtxt" in names and f"{i:05d}/default/tensors.tsv" in names
        data = b"".join(fs.cat_file(p) for p in fs.find(path) if "tfevents" in p)
        assert data.count(b"loss") == 1 and data.count(b"dropped") == 1


def test_a_forked_child_closing_an_inherited_writer_leaves_the_parents_segments(tmp_path, spool):
    # The child's close() of a remote writer it never logged to queued the parent's live
    # segments, uploaded them and removed them from the spool: the parent's next records
    # failed with "event file was removed". A store both processes see: a folder, under a
    # protocol of its own (file:// is a local log dir).
    store = tmp_path / "store"
    result = run_child(f"""
        import os, fsspec
        from fsspec.implementations.local import LocalFileSystem
        from fasttb import SummaryWriter

        class Folder(LocalFileSystem):
            protocol = "folderstore"

            def __init__(self, *args, **kwargs):
                super().__init__(*args, auto_mkdir=True, **kwargs)

            @classmethod
            def _strip_protocol(cls, path):
                return LocalFileSystem._strip_protocol(path.replace("folderstore://", "/", 1))

        fsspec.register_implementation("folderstore", Folder, clobber=True)
        w = SummaryWriter("folderstore:/" + {str(store / "run")!r})
        for step in range(50):
            w.add_scalar("a", float(step), step)
            w.add_scalars("m", {{"x": float(step)}}, step)
        pid = os.fork()
        if pid == 0:
            w.close()  # inherited, never logged to here
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        for step in range(50, 100):
            w.add_scalar("a", float(step), step)
            w.add_scalars("m", {{"x": float(step)}}, step)
        w.close()
        """, env={"FASTTB_SPOOL": spool})
    assert result.returncode == 0
    for run in ("run", os.path.join("run", "m_x")):
        steps = [e.step for path, events in read_tree(str(store / run)).items()
                 if os.path.dirname(path) == str(store / run) for e in events if e.summary.value]
        assert sorted(steps) == list(range(100)), run


def test_threads_logging_while_another_closes_lose_nothing(tmp_path, spool):
    # Racing close() and flush(), two threads could each make the new file writer; the one
    # left over is dropped, and handing it to the upload thread swept the whole spool, taking
    # segments live writers were still writing: uploaded half-written and removed.
    import concurrent.futures
    import random
    import sys

    url = fresh_url()
    w = SummaryWriter(url)
    returned: list = []
    stop = threading.Event()

    def log(i):
        for step in range(6000):
            for call, tag in ((lambda: w.add_scalar(f"s{i}", 1.0, step), f"s{i}"),
                              (lambda: w.add_scalars(f"m{i}", {"a": 1.0}, step), f"m{i}")):
                try:
                    call()
                    returned.append((tag, step))
                except OSError as exc:
                    assert str(exc).startswith("Writer is closed"), exc

    def close():
        while not stop.is_set():
            w.close() if random.random() < 0.5 else w.flush()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(2e-5)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            closing = pool.submit(close)
            try:
                for logging in [pool.submit(log, i) for i in range(3)]:
                    logging.result()
            finally:
                stop.set()
            closing.result()
    finally:
        sys.setswitchinterval(interval)
    w.close()
    local = download(url, str(tmp_path / "store"))
    stored = [(v.tag, e.step) for events in read_tree(local).values() for e in events for v in e.summary.value]
    assert sorted(stored) == sorted(returned) and len(returned) > 1000


def test_segments_of_many_runs_within_the_open_file_limit(tmp_path, spool):
    # 120 add_scalars keys under a limit of 64 descriptors: most runs' files are parked (closed
    # between writes) and segments are still cut, started and uploaded whole.
    local, copy = str(tmp_path / "local"), str(tmp_path / "downloaded")
    run_child(f"""
        import resource, sys, fsspec
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_remote import download, fresh_url
        from fasttb import SummaryWriter
        url = fresh_url()
        for w in (SummaryWriter({local!r}), SummaryWriter(url)):
            for step in range(4):
                w.add_scalars("acc", {{f"c{{i}}": i + step for i in range(120)}}, step)
                w.flush()  # each flush ends a segment of every remote run
            w.close()
        download(url, {copy!r})
        """)
    assert len(runs(local)) == 121
    assert runs(copy) == runs(local)
    assert all(len(runs(copy)[f"acc_c{i}"]) == 4 for i in range(120))


def test_file_urls_are_local_paths(tmp_path, spool):
    target = tmp_path / "run"
    w = SummaryWriter(f"file://{target}")
    w.add_scalar("x", 1.0, 1)
    w.close()
    names = os.listdir(target)
    assert len(names) == 1 and re.match(r"^events\.out\.tfevents\.\d{10}\.[^.]+.*\.\d+\.\d+$", names[0])
    assert not os.path.exists(spool)
    with pytest.raises(ValueError, match="storage_options"):
        SummaryWriter(str(tmp_path / "other"), storage_options={"anon": True})
    with pytest.raises(TypeError, match="storage_options"):
        SummaryWriter(fresh_url(), storage_options=["anon"])


def test_a_missing_backend_is_an_import_error_naming_the_package(spool):
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="gcsfs"):
            SummaryWriter("gs://bucket/run")
    with pytest.raises(ValueError, match="log_dir 'nosuchprotocol://"):
        SummaryWriter("nosuchprotocol://bucket/run")


def test_without_fsspec_the_import_error_names_it():
    result = run_child("""
        import sys
        sys.modules["fsspec"] = None
        from fasttb import SummaryWriter
        try:
            SummaryWriter("s3://bucket/run")
        except ImportError as exc:
            print(exc)
    """)
    assert "fsspec" in result.stdout and "s3fs" in result.stdout and "pip install" in result.stdout


@pytest.mark.parametrize("failure", ["refused", "cancelled"])
def test_transient_failures_are_retried_and_nothing_is_lost(spool, failure):
    # (asyncio's CancelledError is a BaseException: from a backend, it ended the upload thread.)
    import asyncio

    FlakyFileSystem.failure = (ConnectionError("connection refused") if failure == "refused"
                               else asyncio.CancelledError())
    FlakyFileSystem.failures_left = 2
    url = fresh_url("flaky")
    w = SummaryWriter(url, upload_timeout=10)  # (with no upload thread left, each wait ends)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(500):
            w.add_scalar("loss", float(i), i)
            if i % 100 == 99:
                w.flush()  # the first waits for the failed attempt, then warns; later ones return
    assert any("cannot be reached" in str(c.message) for c in caught)
    w.close()  # tries again at once, and waits for the uploads
    assert w.stats()["upload_retries"] >= 2
    fs, path = fsspec.core.url_to_fs(url)
    steps = [event_pb2.Event.FromString(r).step
             for p in sorted(fs.find(path)) for r in _records(fs.cat_file(p))[1:]]
    assert steps == list(range(500))
    assert os.listdir(spool) == []


def _records(data: bytes) -> list:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        out.append(data[pos + 12:pos + 12 + n])
        pos += 16 + n
    return out


def test_a_permanent_failure_is_raised_on_the_next_call(spool):
    FlakyFileSystem.failure, FlakyFileSystem.failures_left = PermissionError(13, "Access Denied"), -1
    url = fresh_url("flaky")
    w = SummaryWriter(url, flush_secs=0.2)
    w.add_scalar("loss", 1.0, 0)
    deadline = time.monotonic() + 30
    with pytest.raises(PermissionError) as raised:
        while time.monotonic() < deadline:  # the segment is cut at 0.16 s and its upload fails
            w.add_scalar("loss", 1.0, 1)  # the native fast path raises it too
            time.sleep(0.01)
    assert raised.value.filename.startswith(url + "/events.out.tfevents.")
    assert "Access Denied" in str(raised.value)
    with pytest.raises(PermissionError):
        w.add_histogram("h", np.array([1.0, 2.0]), 1)
    with pytest.raises(PermissionError):
        w.close()
    w.close()  # once raised, close() is done
    # The records stay in the spool, for `python -m fasttb upload` once the store is fixed.
    kept = [os.path.join(here, n) for here, _, names in os.walk(spool) for n in names if "tfevents" in n]
    assert kept and sum(len(read_records(p)) for p in kept) >= 2
    from fasttb import _remote

    _remote._uploader.drop(w._remote_root)  # no report about it at the end of the test session


def test_flush_during_a_silent_outage_waits_upload_timeout_once(spool):
    # A store that neither answers nor fails (a network gone silent: s3fs waits for minutes):
    # flush() waited twice upload_timeout, its own wait and the one for add_hparams' runs
    # (none), and both warnings named a line inside fasttb or above the program's flush().
    # Then every later flush() waited upload_timeout again (60 s a step, by default, in a loop
    # that flushes each step): only the first waits now, until an upload gets through.
    release = threading.Event()

    class Silent(MemoryFileSystem):
        protocol = "silent"
        hang = False

        def put_file(self, *args, **kwargs):
            if type(self).hang:
                release.wait()
            return super().put_file(*args, **kwargs)

    fsspec.register_implementation("silent", Silent, clobber=True)
    w = SummaryWriter(fresh_url("silent"), upload_timeout=1.0)
    w.add_scalar("loss", 0.0, 0)
    w.flush()
    Silent.hang = True
    try:
        waited = []
        for step in (1, 2, 3):
            w.add_scalar("loss", float(step), step)
            started = time.monotonic()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                w.flush(); line = sys._getframe().f_lineno  # noqa: E702
            waited.append(time.monotonic() - started)
            assert [(c.filename, c.lineno) for c in caught] == ([(__file__, line)] if step == 1 else [])
        assert 0.9 < waited[0] < 1.9, "flush() waited upload_timeout twice"
        assert max(waited[1:]) < 0.5, waited
    finally:
        Silent.hang = False
        release.set()
    # The store answers again: once the upload in flight gets through, flush() waits again.
    root = w._remote_root
    deadline = time.monotonic() + 30
    while root.stalled_at == root.finished and time.monotonic() < deadline:
        time.sleep(0.02)
    w.add_scalar("loss", 4.0, 4)
    w.flush()
    assert root.stats()["upload_pending"] == 0
    w.close()


def test_exit_with_a_silent_store_waits_upload_timeout_once(spool):
    # Exit waited upload_timeout for the uploads, and then 10 s more in a second pass (meant for
    # what daemon threads log after the first), even for a run the first pass gave up on.
    url = fresh_url("hung")
    started = time.monotonic()
    result = run_child(in_memory_store("hung", f"""
        from fasttb import SummaryWriter
        w = SummaryWriter({url!r}, upload_timeout=1)
        for i in range(100):
            w.add_scalar("loss", float(i), i)
    """), env={"FASTTB_SPOOL": spool}, timeout=60)
    assert time.monotonic() - started < 8, "exit waited more than upload_timeout"
    assert result.stderr.count("were not all uploaded") == 1, result.stderr
    assert len(os.listdir(spool)) == 1


class HangingFileSystem(MemoryFileSystem):
    """memory:// whose uploads hang, neither answering nor failing, while ``hang`` is set."""

    protocol = "hanging"
    hang = threading.Event()
    released = threading.Event()

    def put_file(self, *args, **kwargs):
        if type(self).hang.is_set():
            type(self).released.wait()
        return super().put_file(*args, **kwargs)


fsspec.register_implementation("hanging", HangingFileSystem, clobber=True)


@pytest.fixture
def hanging():
    HangingFileSystem.hang.set()
    HangingFileSystem.released.clear()
    yield HangingFileSystem
    HangingFileSystem.hang.clear()
    HangingFileSystem.released.set()


def test_segments_end_and_the_spool_stays_bounded_while_an_upload_hangs(spool, monkeypatch, hanging):
    # The upload thread also ended segments by size and age: while one upload hung, the file
    # grew without end and FASTTB_SPOOL_LIMIT never applied.
    monkeypatch.setenv("FASTTB_SEGMENT_BYTES", "4K")
    monkeypatch.setenv("FASTTB_SPOOL_LIMIT", "128K")
    w = SummaryWriter(fresh_url("hanging"), upload_timeout=1)
    failure = None
    deadline = time.monotonic() + 60
    step = 0
    while failure is None and time.monotonic() < deadline:
        try:
            w.add_text("t", "x" * 500, step)
            step += 1
        except OSError as exc:
            failure = exc
        time.sleep(0.01)  # (50 KB/s: a few segments between two of the thread's looks)
    segments = [n for _, _, names in os.walk(spool) for n in names if "tfevents" in n]
    assert failure is not None and failure.errno == errno.ENOSPC, failure
    assert len(segments) > 4 and step < 1000
    hanging.released.set()
    with pytest.raises(OSError):
        w.close()


def test_the_upload_command_gives_up_on_a_hung_upload_in_time(tmp_path, spool):
    url = fresh_url("hanging")
    result = run_child(in_memory_store("hanging", f"""
        import os, signal
        from fasttb import SummaryWriter
        w = SummaryWriter({url!r})
        for i in range(100):
            w.add_scalar("loss", float(i), i)
        w._get_file_writer()._core.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """, hang=False), env={"FASTTB_SPOOL": spool}, check=False)
    assert result.returncode < 0
    # The command, where the store hangs (in a child: before, it waited for as long as that).
    result = run_child(in_memory_store("hanging", """
        from fasttb import _remote
        print(_remote.upload_spools([], None, 1, print))
    """), env={"FASTTB_SPOOL": spool}, timeout=30)
    *lines, status = result.stdout.splitlines()
    assert status == "1" and "not uploaded" in lines[-1] and "within 1 s" in lines[-1], lines


def test_close_waits_for_the_uploads_then_raises(spool):
    FlakyFileSystem.failure, FlakyFileSystem.failures_left = TimeoutError("timed out"), -1
    url = fresh_url("flaky")
    w = SummaryWriter(url, upload_timeout=0.5)
    for i in range(100):
        w.add_scalar("loss", float(i), i)
    with pytest.warns(RuntimeWarning, match="cannot be reached"):
        w.flush()
    started = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        w.close()
    assert 0.4 < time.monotonic() - started < 5
    assert isinstance(raised.value, OSError) and "python -m fasttb upload" in str(raised.value)
    assert spool in str(raised.value)
    # The store comes back: the uploader, still retrying, sends everything.
    FlakyFileSystem.failure = None
    fs, path = fsspec.core.url_to_fs(url)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and sum(b"loss" in fs.cat_file(p) for p in fs.find(path)) < 1:
        time.sleep(0.1)
    steps = [event_pb2.Event.FromString(r).step for p in sorted(fs.find(path)) for r in _records(fs.cat_file(p))[1:]]
    assert steps == list(range(100))


def test_the_spool_is_bounded(spool, monkeypatch):
    monkeypatch.setenv("FASTTB_SPOOL_LIMIT", "8K")
    FlakyFileSystem.failure, FlakyFileSystem.failures_left = ConnectionError("down"), -1
    w = SummaryWriter(fresh_url("flaky"), upload_timeout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(OSError) as raised:
            for i in range(2000):
                w.add_scalar("loss", float(i), i)
                if i % 100 == 99:
                    w.flush()
    assert raised.value.errno == 28 and "FASTTB_SPOOL_LIMIT" in str(raised.value)
    with pytest.raises(OSError):
        w.close()


def test_a_writer_used_from_threads_keeps_every_record(spool):
    url = fresh_url()
    w = SummaryWriter(url, flush_secs=0.3)

    def log(k):
        for i in range(2000):
            w.add_scalar(f"t{k}", float(i), i)
            if i % 500 == 0:
                w.add_histogram(f"h{k}", np.arange(10.0), i)
                w.flush()

    threads = [threading.Thread(target=log, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    fs, path = fsspec.core.url_to_fs(url)
    events = [event_pb2.Event.FromString(r) for p in sorted(fs.find(path)) for r in _records(fs.cat_file(p))]
    for k in range(3):
        assert [e.step for e in events if e.summary.value and e.summary.value[0].tag == f"t{k}"] == list(range(2000))


def test_spools_left_behind_are_uploaded(tmp_path, spool):
    # A process that dies with files in its spool: its lock goes with it, and the CLI adopts it.
    url = fresh_url()
    result = run_child(f"""
        import os, signal
        from fasttb import SummaryWriter
        w = SummaryWriter({url!r})
        for i in range(300):
            w.add_scalar("loss", float(i), i)
        w._get_file_writer()._core.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """, env={"FASTTB_SPOOL": spool}, check=False)
    assert result.returncode < 0
    (left,) = os.listdir(spool)
    # A torn last record, as a kill in the middle of a write leaves: cut before the upload, which
    # then counted the bytes before the cut and left the cut file in the spool.
    (event_file,) = [os.path.join(here, n) for here, _, names in os.walk(spool) for n in names if "tfevents" in n]
    whole = os.path.getsize(event_file)
    with open(event_file, "ab") as f:
        f.write(_frame(b"x" * 40)[:30])
    # memory:// lives in a process: upload it from this one, as `python -m fasttb upload` does.
    lines: list = []
    from fasttb import _remote

    assert _remote.upload_spools([os.path.join(spool, left)], None, 10, lines.append) == 0, lines
    fs, path = fsspec.core.url_to_fs(url)
    steps = [event_pb2.Event.FromString(r).step for p in sorted(fs.find(path)) for r in _records(fs.cat_file(p))[1:]]
    assert steps == list(range(300))
    assert os.listdir(spool) == []
    assert any(f"uploaded 1 file ({whole} bytes)" in line for line in lines), lines


def test_a_log_dir_with_a_trailing_slash(spool):
    url = fresh_url() + "/"
    with SummaryWriter(url) as w:
        w.add_scalar("loss", 1.0, 0)
        w.add_scalars("m", {"a": 2.0}, 0)
    fs, path = fsspec.core.url_to_fs(url)
    runs = sorted(os.path.relpath(os.path.dirname(p), path) for p in fs.find(path))
    assert runs == [".", "m_a"]


class HungFileSystem(MemoryFileSystem):
    """memory:// under another name, for reading back a spool whose store hung (below)."""

    protocol = "hung"


fsspec.register_implementation("hung", HungFileSystem, clobber=True)


def test_sigterm_with_a_hung_store_ends_the_process_and_keeps_the_spool(spool):
    # The upload thread cannot finish: the process still ends by the signal, once
    # FASTTB_TERM_UPLOAD_SECONDS have passed, and what was logged waits in the spool.
    url = fresh_url("hung")
    result = run_child(in_memory_store("hung", f"""
        import os, signal, time
        from fasttb import SummaryWriter
        w = SummaryWriter({url!r})
        for i in range(300):
            w.add_scalar("loss", float(i), i)
        os.kill(os.getpid(), signal.SIGTERM)
        while True:
            time.sleep(0.01)
    """), env={"FASTTB_SPOOL": spool, "FASTTB_TERM_UPLOAD_SECONDS": "1"}, timeout=60, check=False)
    assert result.returncode == -signal.SIGTERM, result.stderr
    (left,) = os.listdir(spool)
    from fasttb import _remote

    lines: list = []
    assert _remote.upload_spools([os.path.join(spool, left)], None, 10, lines.append) == 0, lines
    fs, path = fsspec.core.url_to_fs(url)
    steps = [event_pb2.Event.FromString(r).step for p in sorted(fs.find(path)) for r in _records(fs.cat_file(p))[1:]]
    assert steps == list(range(300))


def test_a_torn_last_record_is_cut_before_the_upload(tmp_path):
    path = tmp_path / "events.out.tfevents.1"
    whole = b"".join(_frame(p) for p in (b"a" * 10, b"b" * 20))
    path.write_bytes(whole + _frame(b"c" * 30)[:25])
    from fasttb import _remote

    _remote.truncate_torn_record(str(path))
    assert path.read_bytes() == whole


def _frame(payload: bytes) -> bytes:
    from fasttb import _core

    return _core.frame_record(payload)
