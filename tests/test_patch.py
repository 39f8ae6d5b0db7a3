"""fasttb.patch(): the stock writer classes create fasttb writers, imported before or after the
call; unpatch() restores them; `python -m fasttb run` and FASTTB_PATCH=1 do the same for a
whole program. Each scenario runs in a fresh interpreter, where the import order is known."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_same_runs, event_files, read_events, run_child

pytest.importorskip("torch")

# Logs the same calls through whatever `torch.utils.tensorboard.SummaryWriter` makes, and prints
# what the writer was.
SCRIPT = """
import json, sys
import numpy as np
from torch.utils.tensorboard import SummaryWriter
w = SummaryWriter(sys.argv[1], flush_secs=5)
for step in range(50):
    w.add_scalar("loss", 1.0 / (step + 1), step)
w.add_scalars("pair", {"a": 1.0, "b": 2.0}, 3)
w.add_histogram("h", np.arange(100.0), 1)
w.add_image("img", np.linspace(0, 1, 3 * 8 * 8).reshape(3, 8, 8), 2)
w.add_text("t", "hello", 4)
w.add_hparams({"lr": 0.1, "opt": "sgd"}, {"hp/m": 1.0}, run_name="hp")
w.close()
import fasttb
print(json.dumps({"module": type(w).__module__, "fasttb": isinstance(w, fasttb.SummaryWriter),
                  "stock": isinstance(w, SummaryWriter), "argv": sys.argv}))
"""


def _child_report(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_patch_before_the_stock_module_is_imported(tmp_path):
    stock, fast = str(tmp_path / "stock"), str(tmp_path / "fast")
    run_child("import sys; sys.argv = ['x', %r]\n" % stock + SCRIPT)
    result = run_child(textwrap.dedent("""
        import sys
        import fasttb
        fasttb.patch()
        assert "torch.utils.tensorboard" not in sys.modules, "patch() imported torch's writer"
        sys.argv = ['x', %r]
    """) % fast + SCRIPT)
    report = _child_report(result)
    assert report["module"] == "fasttb.writer"
    assert report["fasttb"] and report["stock"]
    assert_same_runs(stock, fast)


def test_patch_after_the_stock_module_is_imported_and_unpatch(tmp_path):
    result = run_child(f"""
        import json
        from torch.utils.tensorboard import SummaryWriter as Early   # taken before patch()
        import torch.utils.tensorboard
        import fasttb

        class Mine(Early):  # a user's subclass keeps the stock behaviour
            pass

        fasttb.patch()
        fasttb.patch()  # twice is once
        made = {{}}
        w = Early({str(tmp_path / 'a')!r})
        made["early"] = type(w).__module__, isinstance(w, Early), isinstance(w, fasttb.SummaryWriter)
        w.add_scalar("x", 1.0, 0)
        w.close()
        w = torch.utils.tensorboard.SummaryWriter(log_dir={str(tmp_path / 'b')!r}, comment="c")
        made["attribute"] = type(w).__module__, isinstance(w, Early), isinstance(w, fasttb.SummaryWriter)
        w.close()
        m = Mine({str(tmp_path / 'c')!r})
        made["subclass"] = type(m).__module__, isinstance(m, Early), isinstance(m, fasttb.SummaryWriter)
        m.close()
        fasttb.unpatch()
        w = Early({str(tmp_path / 'd')!r})
        made["unpatched"] = type(w).__module__, isinstance(w, Early), isinstance(w, fasttb.SummaryWriter)
        w.add_scalar("x", 1.0, 0)
        w.close()
        fasttb.patch()
        w = Early({str(tmp_path / 'e')!r})
        made["again"] = type(w).__module__, isinstance(w, Early), isinstance(w, fasttb.SummaryWriter)
        w.close()
        print(json.dumps(made))
    """)
    made = _child_report(result)
    assert made["early"] == ["fasttb.writer", True, True]
    assert made["attribute"] == ["fasttb.writer", True, True]
    assert made["subclass"] == ["__main__", True, False]
    assert made["unpatched"] == ["torch.utils.tensorboard.writer", True, False]
    assert made["again"] == ["fasttb.writer", True, True]
    assert [e.summary.value[0].simple_value for e in read_events(str(tmp_path / "a")) if e.summary.value] == [1.0]
    assert [e.summary.value[0].simple_value for e in read_events(str(tmp_path / "d")) if e.summary.value] == [1.0]


def test_patched_writer_serves_the_stock_file_writer_api(tmp_path):
    # Lightning's log_hyperparams writes torch's own hparams summaries through _get_file_writer().
    result = run_child(f"""
        import fasttb
        fasttb.patch()
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
        w = SummaryWriter({str(tmp_path)!r})
        for summary in hparams({{"lr": 0.5}}, {{"m": 1.0}}):
            w._get_file_writer().add_summary(summary)
        w.file_writer.flush()
        print(w.get_logdir() == {str(tmp_path)!r}, w.log_dir == {str(tmp_path)!r})
        w.close()
    """)
    assert result.stdout.split() == ["True", "True"]
    tags = [v.tag for e in read_events(str(tmp_path)) for v in e.summary.value]
    assert tags == ["_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"]


def test_patched_class_keeps_its_signature_and_honours_later_assignments(tmp_path):
    # inspect.signature(SummaryWriter) read the patch's __new__, (*args, **kwargs); and a method
    # assigned to the stock class afterwards (mock.patch.object, a monkeypatched add_hparams)
    # was shadowed by fasttb's, silently.
    result = run_child(f"""
        import inspect, json
        from unittest import mock
        import fasttb
        from torch.utils.tensorboard import SummaryWriter
        stock_signature = str(inspect.signature(SummaryWriter))
        fasttb.patch()
        report = {{"signature": str(inspect.signature(SummaryWriter)) == stock_signature}}
        try:
            inspect.signature(SummaryWriter).bind(bogus=1)
            report["bogus bound"] = True
        except TypeError:
            report["bogus bound"] = False
        with mock.patch.object(SummaryWriter, "add_scalar") as add_scalar:
            w = SummaryWriter({str(tmp_path / 'mocked')!r})
            w.add_scalar("x", 1.0, 0)
            report["mock called"] = add_scalar.call_args == mock.call("x", 1.0, 0)
            report["mocked still fasttb"] = isinstance(w, fasttb.SummaryWriter) and isinstance(w, SummaryWriter)
            w.add_text("t", "logged", 0)  # the rest is fasttb's
            w.close()

        def add_text(self, tag, text, global_step=None):
            self._get_file_writer()  # a user's override uses the writer's own methods
            SummaryWriter.add_scalar(self, tag + "_length", len(text), global_step)

        SummaryWriter.add_text = add_text
        w = SummaryWriter({str(tmp_path / 'assigned')!r})
        w.add_text("t", "four", 1)
        w.close()
        w = SummaryWriter({str(tmp_path / 'after')!r})  # mock.patch.object undid its own
        w.add_scalar("x", 2.0, 2)
        w.close()
        print(json.dumps(report))
    """)
    report = _child_report(result)
    assert report == {"signature": True, "bogus bound": False, "mock called": True, "mocked still fasttb": True}
    tags = lambda name: [(v.tag, e.step) for e in read_events(str(tmp_path / name)) for v in e.summary.value]
    assert tags("mocked") == [("t/text_summary", 0)]
    assert tags("assigned") == [("t_length", 1)]
    assert tags("after") == [("x", 2)]


@pytest.mark.parametrize("order", ["hooks first", "patch first"])
def test_method_hooks_of_other_tools_are_honoured_whenever_they_came(tmp_path, order):
    # neptune-tensorboard and SwanLab wrap SummaryWriter.add_scalar and friends on the class
    # (functools.wraps, calling the original); wrappers put there before patch() were shadowed by
    # fasttb's methods, and saw nothing.
    result = run_child(f"""
        import functools, json
        import fasttb
        if {order!r} == "patch first":
            fasttb.patch()
        from torch.utils.tensorboard import SummaryWriter
        seen = []
        def hook(original):
            @functools.wraps(original)
            def wrapper(self, *args, **kwargs):
                seen.append((original.__name__, args[0]))
                return original(self, *args, **kwargs)
            return wrapper
        SummaryWriter.add_scalar = hook(SummaryWriter.add_scalar)
        SummaryWriter.add_hparams = hook(SummaryWriter.add_hparams)
        fasttb.patch()
        w = SummaryWriter({str(tmp_path)!r})
        w.add_scalar("loss", 1.0, 0)
        w.add_hparams({{"lr": 0.1}}, {{"m": 2.0}}, run_name="hp")
        w.close()
        print(json.dumps({{"fasttb": isinstance(w, fasttb.SummaryWriter), "seen": seen}}))
    """)
    report = _child_report(result)
    assert report == {"fasttb": True, "seen": [["add_scalar", "loss"], ["add_hparams", {"lr": 0.1}],
                                               ["add_scalar", "m"]]}
    assert [v.tag for e in read_events(str(tmp_path)) for v in e.summary.value] == ["loss"]
    assert [v.tag for e in read_events(str(tmp_path / "hp")) for v in e.summary.value][-1] == "m"


HOOKS = {
    # wandb.init(sync_tensorboard=True): a subclass of the module's EventFileWriter learns each
    # log dir, to upload what is written there.
    "wandb": """
        import torch.utils.tensorboard.writer as module
        class Notifying(module.EventFileWriter):
            def __init__(self, logdir, *args, **kwargs):
                seen.append(logdir)
                super().__init__(logdir, *args, **kwargs)
        module.EventFileWriter = Notifying
    """,
    # ClearML: FileWriter.add_event wrapped, to report every value.
    "clearml": """
        from torch.utils.tensorboard.writer import FileWriter
        original = FileWriter.add_event
        def add_event(self, event, *args, **kwargs):
            seen.extend(v.tag for v in event.summary.value)
            return original(self, event, *args, **kwargs)
        FileWriter.add_event = add_event
    """,
    # SwanLab: the constructor wrapped.
    "init": """
        from torch.utils.tensorboard import SummaryWriter as Stock
        original = Stock.__init__
        def __init__(self, *args, **kwargs):
            seen.append("init")
            original(self, *args, **kwargs)
        Stock.__init__ = __init__
    """,
}


@pytest.mark.parametrize("tool", sorted(HOOKS))
def test_hooks_on_what_the_stock_writer_builds_on_get_the_stock_writer(tmp_path, tool):
    # A fasttb writer never calls these: wandb's sync and ClearML got nothing, with no word.
    # Now the patched class makes the stock writer while such a hook is there, and says so once.
    result = run_child(f"""
        import json, warnings
        import fasttb
        fasttb.patch()
        seen = []
        {textwrap.indent(textwrap.dedent(HOOKS[tool]), " " * 8).strip()}
        from torch.utils.tensorboard import SummaryWriter
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            writers = [SummaryWriter({str(tmp_path / "a")!r}), SummaryWriter({str(tmp_path / "b")!r})]
        for w in writers:
            w.add_scalar("loss", 1.0, 0)
            w.close()
        print(json.dumps({{"fasttb": [isinstance(w, fasttb.SummaryWriter) for w in writers],
                          "warnings": [str(c.message) for c in caught], "seen": seen}}))
    """)
    report = _child_report(result)
    assert report["fasttb"] == [False, False]
    assert len(report["warnings"]) == 1 and "is the stock writer" in report["warnings"][0]
    expected = {"wandb": [str(tmp_path / "a"), str(tmp_path / "b")], "clearml": ["loss", "loss"],
                "init": ["init", "init"]}[tool]
    assert report["seen"] == expected
    for run in "ab":
        assert [v.tag for e in read_events(str(tmp_path / run)) for v in e.summary.value] == ["loss"]


def test_stock_methods_called_unbound_on_a_patched_writer(tmp_path):
    # SummaryWriter.add_scalars(w, ...) runs torch's own method, which puts torch's FileWriter
    # in all_writers; close() and stats() assumed every entry was fasttb's (AttributeError).
    run_child(f"""
        import fasttb
        fasttb.patch()
        from torch.utils.tensorboard import SummaryWriter
        w = SummaryWriter({str(tmp_path)!r})
        SummaryWriter.add_scalars(w, "m", {{"a": 1.0}}, 3)
        w.add_scalar("x", 2.0, 1)
        w.flush()
        assert w.stats()["records"] >= 2
        w.close()
    """)
    assert [(v.tag, e.step) for e in read_events(str(tmp_path / "m_a")) for v in e.summary.value] == [("m", 3)]
    assert [(v.tag, e.step) for e in read_events(str(tmp_path)) for v in e.summary.value] == [("x", 1)]


def test_patch_reaches_tensorboardx_with_its_dialect(tmp_path):
    pytest.importorskip("tensorboardX")
    result = run_child(f"""
        import json, sys
        import fasttb
        fasttb.patch()
        assert "tensorboardX" not in sys.modules
        import tensorboardX
        import fasttb.tensorboardX
        w = tensorboardX.SummaryWriter(logdir={str(tmp_path)!r})
        w.add_scalar("x", 2.0, 1)
        w.close()
        print(json.dumps([isinstance(w, tensorboardX.SummaryWriter),
                          isinstance(w, fasttb.tensorboardX.SummaryWriter)]))
    """)
    assert _child_report(result) == [True, True]
    assert [e.summary.value[0].simple_value for e in read_events(str(tmp_path)) if e.summary.value] == [2.0]


def _script(tmp_path, body=SCRIPT):
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_run_command_runs_a_script_patched(tmp_path):
    stock, fast = str(tmp_path / "stock"), str(tmp_path / "fast")
    script = _script(tmp_path)
    subprocess.run([sys.executable, script, stock], check=True, timeout=120, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "fasttb", "run", script, fast], timeout=120,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = _child_report(result)
    assert report["module"] == "fasttb.writer" and report["stock"]
    assert report["argv"] == [script, fast]
    assert_same_runs(stock, fast)


def test_run_command_passes_on_exit_status_and_module_form(tmp_path):
    _script(tmp_path, "import sys\nprint(sys.argv[1:])\nsys.exit(7)\n")
    result = subprocess.run([sys.executable, "-m", "fasttb", "run", str(tmp_path / "train.py"), "--x", "1"],
                            timeout=60, capture_output=True, text=True)
    assert result.returncode == 7 and result.stdout.strip() == "['--x', '1']"
    result = subprocess.run([sys.executable, "-m", "fasttb", "run", "-m", "train", "a"], cwd=str(tmp_path),
                            timeout=60, capture_output=True, text=True)
    assert result.returncode == 7 and result.stdout.strip() == "['a']"
    result = subprocess.run([sys.executable, "-m", "fasttb", "run", str(tmp_path / "missing.py")],
                            timeout=60, capture_output=True, text=True)
    assert result.returncode == 2 and "missing.py" in result.stderr
    result = subprocess.run([sys.executable, "-m", "fasttb", "run", "-m", "no_such_module_here"],
                            cwd=str(tmp_path), timeout=60, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(": No module named no_such_module_here")


def test_run_command_passes_arguments_and_file_as_python_does(tmp_path):
    # "--" and what follows are the script's (argparse's REMAINDER dropped the "--"); __file__
    # is absolute, so paths made from it hold after os.chdir; a folder runs its __main__.py.
    body = "import os, sys\nos.chdir('/')\nprint(sys.argv[1:], os.path.isfile(__file__), sys.path[0])\n"
    _script(tmp_path, body)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(body)
    for target in ("train.py", "app"):
        outputs = [subprocess.run(prefix + [target, "--", "--lr", "1"], cwd=str(tmp_path), timeout=60,
                                  capture_output=True, text=True, check=True).stdout
                   for prefix in ([sys.executable], [sys.executable, "-m", "fasttb", "run"])]
        assert outputs[0] == outputs[1], target
        assert outputs[1].startswith("['--', '--lr', '1'] True")


def test_run_command_patches_the_interpreters_the_script_starts(tmp_path):
    # A spawned child (mp.spawn, a DataLoader with spawn) is a new interpreter: only the
    # environment reaches it, as FASTTB_PATCH=1 reaches torchrun's workers.
    script = _script(tmp_path, """
        import multiprocessing as mp

        def child(queue):
            from torch.utils.tensorboard import SummaryWriter
            queue.put(SummaryWriter.__new__(SummaryWriter).__class__.__module__)

        if __name__ == "__main__":
            context = mp.get_context("spawn")
            queue = context.Queue()
            process = context.Process(target=child, args=(queue,))
            process.start()
            print(queue.get(timeout=120))
            process.join()
    """)
    env = {k: v for k, v in os.environ.items() if k != "FASTTB_PATCH"}
    result = subprocess.run([sys.executable, "-m", "fasttb", "run", script], env=env, timeout=180,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fasttb.writer"


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_patch_reaches_the_interpreters_the_program_starts_and_unpatch_takes_it_back(tmp_path, method):
    # Only `fasttb run` set FASTTB_PATCH: a script that called fasttb.patch() itself got stock
    # writers in its spawn and forkserver children (mp.spawn, Lightning's ddp_spawn).
    script = _script(tmp_path, """
        import multiprocessing as mp
        import os
        import sys

        def child(queue):
            from torch.utils.tensorboard import SummaryWriter
            queue.put(SummaryWriter.__new__(SummaryWriter).__class__.__module__)

        def start(context):
            queue = context.Queue()
            process = context.Process(target=child, args=(queue,))
            process.start()
            kind = queue.get(timeout=120)
            process.join()
            return kind

        if __name__ == "__main__":
            import fasttb
            fasttb.patch()
            print(start(mp.get_context(sys.argv[1])), os.environ.get("FASTTB_PATCH"))
            fasttb.unpatch()
            print(start(mp.get_context(sys.argv[1])), os.environ.get("FASTTB_PATCH"))
    """)
    env = {k: v for k, v in os.environ.items() if k != "FASTTB_PATCH"}
    result = subprocess.run([sys.executable, script, method], env=env, timeout=240, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    patched, unpatched = result.stdout.split("\n")[:2]
    assert patched == "fasttb.writer 1"
    # (forkserver's children come from a server started while patched: they stay patched)
    assert unpatched == ("torch.utils.tensorboard.writer None" if method == "spawn" else "fasttb.writer None")


def test_installed_command_runs_modules_of_the_working_directory_and_linked_scripts(tmp_path):
    # The `fasttb` command's sys.path[0] is its own folder: `fasttb run -m mymod` did not find a
    # module that `python -m mymod` finds. A script reached through a symbolic link imports from
    # the folder of its target, as under python; `fasttb run` looked beside the link.
    command = os.path.join(os.path.dirname(sys.executable), "fasttb")
    assert os.access(command, os.X_OK), "pip installs the fasttb command beside the interpreter"
    (tmp_path / "mymod.py").write_text("print('module ran')\n")
    result = subprocess.run([command, "run", "-m", "mymod"], cwd=str(tmp_path), timeout=60,
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "module ran\n"), result.stderr
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    (tmp_path / "real" / "helper.py").write_text("WHERE = 'beside the target'\n")
    (tmp_path / "real" / "train.py").write_text("import helper\nprint(helper.WHERE)\n")
    os.symlink(str(tmp_path / "real" / "train.py"), str(tmp_path / "links" / "train.py"))
    for prefix in ([sys.executable], [sys.executable, "-m", "fasttb", "run"], [command, "run"]):
        result = subprocess.run(prefix + ["train.py"], cwd=str(tmp_path / "links"), timeout=60,
                                capture_output=True, text=True)
        assert (result.returncode, result.stdout) == (0, "beside the target\n"), (prefix, result.stderr)


@pytest.mark.parametrize("value, patched", [("1", True), ("yes", True), ("0", False), ("", False),
                                            ("false", False), (" Off ", False)])
def test_environment_variable_patches_at_start(tmp_path, value, patched):
    # The wheel's fasttb-patch.pth reads FASTTB_PATCH at interpreter start: no fasttb import in
    # the script.
    script = _script(tmp_path, """
        import sys
        from torch.utils.tensorboard import SummaryWriter
        w = SummaryWriter(sys.argv[1])
        w.add_scalar("x", 1.0, 0)
        w.close()
        print(type(w).__module__)
    """)
    env = dict(os.environ, FASTTB_PATCH=value)
    result = subprocess.run([sys.executable, script, str(tmp_path / "run")], env=env, timeout=120,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("fasttb.writer" if patched else "torch.utils.tensorboard.writer")
    assert len(event_files(str(tmp_path / "run"))) == 1


@pytest.mark.slow
def test_environment_variable_reaches_torchrun_workers(tmp_path):
    pytest.importorskip("torch.distributed.run")
    script = _script(tmp_path, """
        import os, sys
        from torch.utils.tensorboard import SummaryWriter
        rank = os.environ["RANK"]
        w = SummaryWriter(os.path.join(sys.argv[1], "rank" + rank))
        w.add_scalar("rank", float(rank), 0)
        w.close()
        with open(os.path.join(sys.argv[1], "rank" + rank, "writer.txt"), "w") as f:
            f.write(type(w).__module__)
    """)
    env = dict(os.environ, FASTTB_PATCH="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "0",
         script, str(tmp_path / "logs")], env=env, timeout=180, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for rank in (0, 1):
        assert (tmp_path / "logs" / f"rank{rank}" / "writer.txt").read_text() == "fasttb.writer"
        values = [e.summary.value[0].simple_value for e in read_events(str(tmp_path / "logs" / f"rank{rank}"))
                  if e.summary.value]
        assert values == [float(rank)]
