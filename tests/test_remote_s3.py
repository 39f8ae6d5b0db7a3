"""Remote log dirs against a real S3 API: moto's server on 127.0.0.1 (a free port), behind a
proxy that counts the bytes it receives (fasttb.cli.local_s3). The server runs in the test process
and is always stopped; the writers run in child processes with a timeout."""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap

import pytest
from conftest import read_records, run_child
from tensorboard.compat.proto import event_pb2

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")
pytest.importorskip("boto3")

from fasttb.cli.local_s3 import LocalS3  # noqa: E402


@pytest.fixture
def s3():
    server = LocalS3()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def spool(tmp_path):
    return str(tmp_path / "spool")


def records(data: bytes) -> list:
    """Every record of an event file's bytes (framing checked, CRCs by the tests' reader elsewhere)."""
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        assert pos + 16 + n <= len(data), "torn record"
        out.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
        pos += 16 + n
    return out


def scalars(objects: dict, tag: str = "loss") -> list:
    """(step, value) of every scalar under ``tag``, objects in key order."""
    out = []
    for key in sorted(objects):
        events = records(objects[key])
        assert events[0].HasField("file_version"), key  # every segment is a whole event file
        out += [(e.step, e.summary.value[0].simple_value) for e in events[1:]
                if e.summary.value and e.summary.value[0].tag == tag]
    return out


def wire_bytes(requests: list, prefix: str) -> int:
    return sum(r.header_bytes + r.body_bytes for r in requests if r.target.startswith(prefix))


def test_a_new_reader_sees_what_was_uploaded_since_the_last(s3, spool):
    # fsspec keeps one S3 file system per URL, its listings cached: a second reader in the same
    # process (a notebook polling a live run) saw only the files of the first read.
    from fasttb.reader import SummaryReader

    url, options = f"s3://{s3.bucket}/live", s3.storage_options()

    def log(first_step: int) -> None:
        run_child(f"""
            from fasttb import SummaryWriter
            with SummaryWriter({url!r}, storage_options={options!r}) as w:
                for i in range({first_step}, {first_step + 100}):
                    w.add_scalar("loss", float(i), i)
        """, env={"FASTTB_SPOOL": spool})

    log(0)
    assert list(SummaryReader(url, storage_options=options).scalars.step) == list(range(100))
    log(100)
    assert list(SummaryReader(url, storage_options=options).scalars.step) == list(range(200))


@pytest.mark.slow
def test_twenty_thousand_scalars_reach_the_bucket_once_each(s3, spool, tmp_path):
    # The endpoint comes from the environment, as fsspec's S3 backend reads it.
    result = run_child(f"""
        from fasttb import SummaryWriter
        for run, every in (("run", 100), ("run2", 1000)):
            w = SummaryWriter("s3://{s3.bucket}/" + run)
            for i in range(20000):
                w.add_scalar("loss", i * 0.25, i)
                if i % every == every - 1:
                    w.flush()
            w.close()
            print(run, w.stats())
    """, env={"FASTTB_SPOOL": spool, "AWS_ENDPOINT_URL": s3.endpoint}, timeout=180)
    requests = s3.requests
    assert sum(r.header_bytes + r.body_bytes for r in requests) == s3.bytes_received  # every byte parsed
    assert {r.method for r in requests} == {"PUT"}
    puts = [r.target for r in requests]
    assert len(set(puts)) == len(puts), "a key was written twice"
    for run, segments in (("run", 200), ("run2", 20)):
        objects = s3.objects(run + "/")
        assert len(objects) == segments == sum(t.startswith(f"/{s3.bucket}/{run}/") for t in puts)
        assert scalars(objects) == [(i, i * 0.25) for i in range(20000)]
        total = sum(len(v) for v in objects.values())
        mine = [r for r in requests if r.target.startswith(f"/{s3.bucket}/{run}/")]
        bodies, wire = sum(r.body_bytes for r in mine), wire_bytes(requests, f"/{s3.bucket}/{run}/")
        print(f"{run}: {segments} objects, {total} bytes; bodies sent {bodies / total:.3f}x, "
              f"on the wire with headers {wire / total:.3f}x")
        assert bodies <= 1.1 * total
        if run == "run2":  # 45 kB segments: the ~900 bytes of headers of each PUT are 2%
            assert wire <= 1.1 * total
        # Every record's CRCs, checked by the tests' reader on a downloaded copy.
        local = tmp_path / run
        local.mkdir()
        for key, data in objects.items():
            (local / key.split("/")[-1]).write_bytes(data)
        assert sum(len(read_records(str(p))) for p in local.iterdir()) == 20000 + segments
    assert "uploaded_objects': 200" in result.stdout
    # tensorboard reads the 200-segment run from the bucket itself: its S3 support (boto3), with
    # the endpoint in S3_ENDPOINT, as a user would point it at the same bucket.
    read = run_child(f"""
        from tensorboard.backend.event_processing import event_accumulator as ea
        acc = ea.EventAccumulator("s3://{s3.bucket}/run", size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE)
        acc.Reload()
        print([(s.step, s.value) for s in acc.Scalars("loss")] == [(i, i * 0.25) for i in range(20000)])
    """, env={"S3_ENDPOINT": s3.server_endpoint}, timeout=240)
    assert read.stdout.strip() == "True"


@pytest.mark.slow
def test_tensorboard_reads_the_run_from_the_bucket(s3, spool):
    run_child(f"""
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://{s3.bucket}/run", storage_options={s3.storage_options()!r})
        for i in range(2000):
            w.add_scalar("loss", float(i), i)
            if i % 100 == 99:
                w.flush()
        w.close()
    """, env={"FASTTB_SPOOL": spool})
    # tensorboard's own S3 support: boto3, with the endpoint in S3_ENDPOINT.
    result = run_child(f"""
        from tensorboard.backend.event_processing import event_accumulator as ea
        acc = ea.EventAccumulator("s3://{s3.bucket}/run", size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE)
        acc.Reload()
        print([(s.step, s.value) for s in acc.Scalars("loss")] == [(i, float(i)) for i in range(2000)])
    """, env={"S3_ENDPOINT": s3.server_endpoint}, timeout=120)
    assert result.stdout.strip() == "True"


@pytest.mark.slow
def test_a_server_restart_mid_run_loses_nothing(s3, spool):
    code = textwrap.dedent(f"""
        import time, warnings
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://{s3.bucket}/run", storage_options={s3.storage_options(fast_failure=True)!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(4000):
                w.add_scalar("loss", float(i), i)
                if i % 100 == 99:
                    w.flush()  # returns at once, with a warning, once an upload has failed
                    if caught and caught[0] is not None:
                        print("flush warned:", caught[0].message, flush=True)
                        caught.insert(0, None)
                if i == 999:
                    print("take it down", flush=True)
                time.sleep(0.0005)
        w.close()
        print("retries", w.stats()["upload_retries"], flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, FASTTB_SPOOL=spool))

    def line() -> str:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        return child.stdout.readline().strip() if ready else "(nothing for 60 s)"

    try:
        assert line() == "take it down"
        s3.stop_server()
        assert line().startswith("flush warned: fasttb: s3://"), "the outage went unnoticed"
        s3.start_server()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert int(out.split()[-1]) >= 1, out  # uploads failed while it was down, and were retried
    assert scalars(s3.objects("run/")) == [(i, float(i)) for i in range(4000)]
    # One warning said it; asyncio printed a traceback per connection aiohttp left behind (53 in
    # a 2 s outage) on the training job's stderr.
    assert "Task exception was never retrieved" not in err and "Traceback" not in err, err


def test_a_missing_bucket_is_an_os_error_on_the_next_call(s3, spool):
    result = run_child(f"""
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://no-such-bucket/run", storage_options={s3.storage_options()!r})
        w.add_scalar("loss", 1.0, 0)
        try:
            w.flush()
        except FileNotFoundError as exc:
            print("flush:", exc.filename)
        try:
            w.add_scalar("loss", 2.0, 1)
        except OSError as exc:
            print("next call:", type(exc).__name__, exc)
        try:
            w.close()
        except OSError as exc:
            print("close:", type(exc).__name__)
    """, env={"FASTTB_SPOOL": spool}, timeout=60)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flush: s3://no-such-bucket/run/events.out.tfevents.")
    assert lines[1].startswith("next call: FileNotFoundError") and "does not exist" in lines[1]
    assert lines[2] == "close: FileNotFoundError"
    assert "python -m fasttb upload" in result.stderr  # the records wait in the spool


KILLED = """
    import os, signal
    from fasttb import SummaryWriter
    w = SummaryWriter("s3://{bucket}/{run}", storage_options={options!r})
    for i in range(500):
        w.add_scalar("loss", float(i), i)
        if i == 199:
            w.flush()
    w._get_file_writer()._core.flush()  # in the spool's file, as the worker does within 20 ms
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_killed_process_leaves_its_spool_for_the_next_run_or_the_cli(s3, spool):
    options = s3.storage_options()
    env = {"FASTTB_SPOOL": spool}
    # The command line: every spool nobody owns (the endpoint is in the manifest).
    assert run_child(KILLED.format(bucket=s3.bucket, run="run", options=options), env=env, check=False).returncode < 0
    assert len(scalars(s3.objects("run/"))) == 200
    (left,) = os.listdir(spool)
    with open(os.path.join(spool, left, ".fasttb-spool.json")) as f:
        assert json.load(f)["remote"] == f"s3://{s3.bucket}/run"
    result = subprocess.run([sys.executable, "-m", "fasttb", "upload"], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, **env))
    assert result.returncode == 0 and "uploaded 1 file (" in result.stdout, result.stdout + result.stderr
    assert scalars(s3.objects("run/")) == [(i, float(i)) for i in range(500)]
    assert os.listdir(spool) == []
    # The next run: a process that opens a remote writer adopts the spool in the background.
    assert run_child(KILLED.format(bucket=s3.bucket, run="run2", options=options), env=env, check=False).returncode < 0
    run_child(f"""
        import os, time
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://{s3.bucket}/other", storage_options={options!r})
        deadline = time.monotonic() + 30
        while len(os.listdir({spool!r})) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        w.close()
    """, env=env, timeout=60)
    assert scalars(s3.objects("run2/")) == [(i, float(i)) for i in range(500)]
    assert os.listdir(spool) == []


def test_interpreter_exit_uploads_what_close_would_have(s3, spool):
    result = run_child(f"""
        import threading
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://{s3.bucket}/run", storage_options={s3.storage_options()!r})
        w.add_scalars("m", {{"a": 1.0}}, 0)
        for i in range(300):
            w.add_scalar("loss", float(i), i)
        # no close(): exit ends the segments and waits for their uploads
    """, env={"FASTTB_SPOOL": spool}, timeout=60)
    assert result.stderr == ""
    assert scalars(s3.objects("run/events")) == [(i, float(i)) for i in range(300)]
    assert len(scalars(s3.objects("run/m_a/"), "m")) == 1
    assert os.listdir(spool) == []


def test_sigterm_uploads_what_was_logged_before_it_then_ends_the_process(s3, spool):
    # Kubernetes, Slurm and torchrun stop a job with SIGTERM, and a pod's spool may go with it:
    # once the worker has written what was logged, the upload thread uploads it, and only then
    # does the signal end the process.
    result = run_child(f"""
        import os, signal, time
        import numpy as np
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://{s3.bucket}/run", storage_options={s3.storage_options()!r})
        for i in range(200):
            w.add_scalar("loss", float(i), i)
        w.flush()
        for i in range(200, 500):
            w.add_scalar("loss", float(i), i)
        w.add_scalars("m", {{"a": 1.0}}, 0)
        w.add_image("img", np.zeros((3, 4, 4)), 0)
        os.kill(os.getpid(), signal.SIGTERM)
        for i in range(500, 10**9):  # the program goes on until the signal ends it
            w.add_scalar("loss", float(i), i)
            time.sleep(0.001)
    """, env={"FASTTB_SPOOL": spool}, timeout=60, check=False)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert scalars(s3.objects("run/events")) == [(i, float(i)) for i in range(500)]
    assert len(s3.objects("run/m_a/")) == 1
    images = [e for key, data in sorted(s3.objects("run/events").items()) for e in records(data)[1:]
              if e.summary.value and e.summary.value[0].tag == "img"]
    assert len(images) == 1 and images[0].summary.value[0].image.height == 4
    assert os.listdir(spool) == []


def test_a_forked_child_uploads_its_own_file(s3, spool):
    run_child(f"""
        import os
        from fasttb import SummaryWriter
        w = SummaryWriter("s3://{s3.bucket}/run", storage_options={s3.storage_options()!r})
        w.add_scalar("parent", 1.0, 0)
        w.flush()
        pid = os.fork()
        if pid == 0:  # a file of its own in the same run, uploaded by its own upload thread
            w.add_scalar("child", 2.0, 0)
            w.close()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        w.add_scalar("parent", 3.0, 1)
        w.close()
    """, env={"FASTTB_SPOOL": spool}, timeout=60)
    objects = s3.objects("run/")
    assert scalars(objects, "parent") == [(0, 1.0), (1, 3.0)] and scalars(objects, "child") == [(0, 2.0)]
    assert len({key.split(".")[-3] for key in objects}) == 2  # two pids
    assert os.listdir(spool) == []


@pytest.mark.slow
def test_the_remote_benchmark_runs(capsys):
    from fasttb.cli import bench_remote

    results = bench_remote.run(steps=2000, flush_every=200, out=lambda line: None)
    lines = bench_remote.report(results)
    ours, theirs = results["fasttb (s3)"], results.get("torch (s3)", {})
    assert ours["puts"] == ours["objects"] == 10 and ours["body_bytes"] == ours["object_bytes"]
    if "sent_bytes" in theirs:  # torch's writer sends its whole file again at every flush
        assert theirs["sent_bytes"] > 3 * ours["sent_bytes"]
    assert any(line.startswith("  fasttb (s3)") for line in lines)
