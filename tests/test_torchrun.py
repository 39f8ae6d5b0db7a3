"""Runs started by a launcher: the rank in event file names, one default log dir for every rank,
and rank-zero-only writers; with torchrun itself (CPU, gloo) and with its environment set by hand."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
import timeit

import pytest
from conftest import read_events, run_child

from fasttb import SummaryWriter, _distributed

WRITE = """
    import os
    from fasttb import SummaryWriter
    w = SummaryWriter()
    for i in range(100):
        w.add_scalar("x", float(i), i)
    w.close()
    print(w.get_logdir())
    print(" ".join(os.listdir(w.get_logdir())))
"""


def test_ranks_share_the_default_log_dir_and_name_their_files(tmp_path):
    # torchrun's variables without its store: ranks on one node agree on their parent's start.
    out = []
    for rank in (0, 1):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "TORCHELASTIC_USE_AGENT_STORE": ""}
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(WRITE)], capture_output=True, text=True,
                                timeout=60, cwd=tmp_path, env=dict(os.environ, **env))
        assert result.returncode == 0, result.stderr
        out.append(result.stdout.split("\n"))
    assert out[0][0] == out[1][0] and out[0][0].startswith("runs" + os.sep)
    names = sorted(os.listdir(tmp_path / out[0][0]))
    assert len(names) == 2 and ".rank0." in names[0] and ".rank1." in names[1]
    assert len(read_events(str(tmp_path / out[0][0]))) == 2 * 101


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_runs_one_after_another_from_a_shell_get_their_own_default_dirs(tmp_path):
    # An sbatch script (or a terminal) with the variables exported is no launcher: two
    # trainings it runs in turn shared the shell's start time, so one directory.
    env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", TORCHELASTIC_USE_AGENT_STORE="")
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(textwrap.dedent(WRITE))}"
    result = subprocess.run(["bash", "-c", f"{command}; sleep 1.1; {command}; true"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] != lines[2] and lines[0].startswith("runs" + os.sep) and lines[2].startswith("runs" + os.sep)


def test_outside_a_distributed_run_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert _distributed.rank() is None and _distributed.rank_tag() == ""
    w = SummaryWriter(str(tmp_path / "run"))
    w.close()
    assert ".rank" not in os.listdir(tmp_path / "run")[0]


def test_rank_zero_only_writers_do_nothing_on_other_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("FASTTB_RANK_ZERO_ONLY", raising=False)
    target = str(tmp_path / "run")
    w = SummaryWriter(target, rank_zero_only=True)
    assert isinstance(w, SummaryWriter) and w.get_logdir() == target
    with w:
        w.add_scalar("x", 1.0, 1)
        w.add_scalars("m", {"a": 1.0}, 1)
        w.add_histogram("h", [1, 2, 3], 1)  # not even checked: nothing is done
        w.add_hparams({"lr": 0.1}, {"acc": 1.0})
        w._get_file_writer().add_summary(None)
        w.flush()
    assert w.stats()["records"] == 0
    # What code reads of rank 0's writer is there too (it was None).
    assert w.file_writer.get_logdir() == target and list(w.all_writers) == [target]
    assert w._get_file_writer() is w.file_writer
    assert not os.path.exists(target)
    cost = min(timeit.repeat(lambda: w.add_scalar("x", 1.0, 1), number=100_000, repeat=3)) / 100_000
    print(f"add_scalar of a rank-zero-only writer on rank 1: {cost * 1e9:.0f} ns")
    # The environment variable does the same for every writer; rank 0 writes as usual.
    monkeypatch.setenv("FASTTB_RANK_ZERO_ONLY", "1")
    SummaryWriter(target).add_scalar("x", 1.0, 1)
    assert not os.path.exists(target)
    monkeypatch.setenv("RANK", "0")
    with SummaryWriter(target) as w:
        w.add_scalar("x", 1.0, 1)
    (name,) = os.listdir(target)
    assert ".rank0." in name
    # tensorboardX's dialect too, as an instance of its own class. (In a child: importing
    # fasttb.tensorboardX here would change what test_fuzz.py's `anything` strategy draws.)
    run_child(f"""
        import os
        import fasttb.tensorboardX
        tbx = fasttb.tensorboardX.SummaryWriter({str(tmp_path / "tbx")!r})
        assert isinstance(tbx, fasttb.tensorboardX.SummaryWriter)
        with tbx.use_metadata(global_step=1):
            tbx.add_scalar("x", 1.0)
        tbx.default_bins = tbx.default_bins[:5]
        assert tbx.scalar_dict == {{}} and tbx.kwargs == {{}} and tbx.file_writer.get_logdir() == tbx.logdir
        tbx.close()
        assert not os.path.exists({str(tmp_path / "tbx")!r})
    """, env={"RANK": "1"})


SCRIPT = """
import os
import torch.distributed as dist
from fasttb import SummaryWriter

dist.init_process_group("gloo")
rank = dist.get_rank()
w = SummaryWriter()
for i in range(200):
    w.add_scalar("x", rank * 1000.0 + i, i)
w.close()
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_ranks_write_one_run(tmp_path):
    pytest.importorskip("torch.distributed")
    (tmp_path / "train.py").write_text(SCRIPT)

    def launch(cwd, **env):
        os.makedirs(cwd)
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                 str(tmp_path / "train.py")], capture_output=True, text=True, timeout=180,
                                cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1", **env))
        assert result.returncode == 0, result.stdout + result.stderr
        (run,) = os.listdir(os.path.join(cwd, "runs"))  # one run directory for both ranks
        return os.path.join(cwd, "runs", run)

    run = launch(tmp_path / "both")
    names = sorted(os.listdir(run))
    assert len(names) == 2 and ".rank0." in names[0] and ".rank1." in names[1]
    for rank, name in enumerate(names):
        values = [(e.step, e.summary.value[0].simple_value) for e in read_events_of(os.path.join(run, name))]
        assert values == [(i, rank * 1000.0 + i) for i in range(200)]
    run = launch(tmp_path / "rank0", FASTTB_RANK_ZERO_ONLY="1")
    (name,) = os.listdir(run)
    assert ".rank0." in name


def read_events_of(path):
    from conftest import read_records
    from tensorboard.compat.proto import event_pb2

    return [e for e in map(event_pb2.Event.FromString, read_records(path)) if e.summary.value]


def test_the_launcher_store_gives_every_rank_the_same_stamp(monkeypatch):
    # What torchrun's agent store does, with a store of our own: the first rank's stamp wins.
    dist = pytest.importorskip("torch.distributed")
    import datetime

    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                           timeout=datetime.timedelta(seconds=5))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(server.port))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = "from fasttb import _distributed; print(_distributed.default_log_dir('x'))"
    first = run_child(code).stdout
    assert first.startswith(os.path.join("runs", "")) and first.strip().endswith("x")
    assert server.get("fasttb/default_log_dir/0/0")
    # Another rank, a second later, gets the first rank's directory whatever its own clock says.
    server.set("fasttb/default_log_dir/0/0", '["Jan01_00-00-00", "node7"]')
    assert run_child(code, env={"RANK": "1"}).stdout.strip() == os.path.join("runs", "Jan01_00-00-00_node7x")
