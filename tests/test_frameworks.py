"""The frameworks' own TensorBoard integrations, switched to fasttb by fasttb.patch() and nothing
else: PyTorch Lightning's TensorBoardLogger, transformers' Trainer and accelerate's tracker.

Each run happens twice, in fresh interpreters: once with the stock writer and once patched. What
the two wrote is read back with tensorboard's EventAccumulator and compared series by series,
value for value (wall_time aside, and the frameworks' own timing metrics). The patched run also
reports every event file fasttb opened: every event file in its log tree must be one of them.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import event_files

pytest.importorskip("torch")

# The head of every script: argv is (logdir, "stock" or "fasttb", where to report fasttb's files).
# Patched runs record the path of every event file a fasttb FileWriter opens.
PRELUDE = """
import atexit, json, os, sys
LOGDIR, WRITER, REPORT = sys.argv[1:4]
if WRITER == "fasttb":
    import fasttb.writer
    opened = []
    _open = fasttb.writer.FileWriter._open
    def _recording_open(self):
        _open(self)
        opened.append(os.path.realpath(self.path))
    fasttb.writer.FileWriter._open = _recording_open
    atexit.register(lambda: json.dump(opened, open(REPORT, "w")))
"""

LIGHTNING = """
import torch
torch.set_num_threads(1)
import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
if WRITER == "fasttb":
    import fasttb
    fasttb.patch()  # after the framework's import: the class it holds is patched in place

class Tiny(pl.LightningModule):
    def __init__(self, lr=0.05, hidden=8):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        self.example_input_array = torch.zeros(2, 4)  # for log_graph

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        self.log_dict({"group/index": float(index), "double_loss": loss * 2})
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

pl.seed_everything(0)
x = torch.randn(160, 4)
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
logger = TensorBoardLogger(LOGDIR, name="tiny", log_graph=True)
trainer = pl.Trainer(max_steps=20, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
trainer.fit(Tiny(), data)
logger.log_hyperparams({"batch": 8, "note": "tiny"}, {"hp_metric": 0.5})
logger.finalize("success")
print(type(logger.experiment).__module__)
"""

TRANSFORMERS = """
if WRITER == "fasttb":
    import fasttb
    fasttb.patch()  # before the framework's import
import torch
torch.set_num_threads(1)
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_error()

class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        self.ids = torch.randint(0, 128, (n, 16), generator=torch.Generator().manual_seed(seed))
    def __len__(self):
        return len(self.ids)
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}

torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=32))
os.chdir(LOGDIR)  # relative paths, so that the arguments logged as text are the same in both runs
os.environ["TENSORBOARD_LOGGING_DIR"] = "logs"
args = TrainingArguments(output_dir="out", report_to=["tensorboard"], logging_steps=1, max_steps=20,
                         per_device_train_batch_size=4, per_device_eval_batch_size=4, save_strategy="no",
                         use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=Tokens(80, 1), eval_dataset=Tokens(16, 2))
trainer.train()
trainer.evaluate()  # after train() closed its writer: the callback makes a new one
"""

ACCELERATE = """
if WRITER == "fasttb":
    import fasttb
    fasttb.patch()
from accelerate import Accelerator
os.chdir(LOGDIR)
accelerator = Accelerator(log_with="tensorboard", project_dir="proj", cpu=True)
accelerator.init_trackers("exp", config={"lr": 0.01, "layers": 2, "opt": "adam", "flag": True})
for step in range(20):
    accelerator.log({"loss": 1.0 / (step + 1), "acc": step / 20.0}, step=step)
    if step % 5 == 0:
        accelerator.log({"pair": {"train": float(step), "val": step + 0.5}, "note": f"step {step}"}, step=step)
accelerator.end_training()
"""

# Metrics that time the run: they differ between any two runs.
TIMING = re.compile(r"runtime|per_second")


def run_both(tmp_path, body):
    """Runs the script on the stock writer and patched; returns the two log dirs and the event
    files fasttb opened in the patched run."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONWARNINGS="ignore")
    env.pop("FASTTB_PATCH", None)
    dirs = {}
    for writer in ("stock", "fasttb"):
        logdir = tmp_path / writer
        logdir.mkdir()
        report = tmp_path / f"{writer}.json"
        try:
            result = subprocess.run([sys.executable, str(script), str(logdir), writer, str(report)],
                                    capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{writer} run hung\n{exc.stdout}\n{exc.stderr}")
        assert result.returncode == 0, f"{writer} run failed\n{result.stdout}\n{result.stderr}"
        dirs[writer] = str(logdir)
    with open(tmp_path / "fasttb.json") as f:
        opened = set(json.load(f))
    return dirs["stock"], dirs["fasttb"], opened


def all_event_files(logdir):
    return {os.path.realpath(os.path.join(root, name))
            for root, _, names in os.walk(logdir) for name in names if "tfevents" in name}


def series(logdir):
    """Everything TensorBoard shows of a log tree, by run: scalar series, tensor series (text,
    hparams), plugin metadata (hparams records compared as messages), graphs and run metadata.
    Runs named by a time stamp (add_hparams' default) are named <time>."""
    from google.protobuf import text_format
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2

    everything = {kind: 0 for kind in (ea.SCALARS, ea.TENSORS, ea.HISTOGRAMS, ea.IMAGES, ea.GRAPH, ea.RUN_METADATA)}
    out = {}
    for root, _, names in os.walk(logdir):
        if not any("tfevents" in name for name in names):
            continue
        parts = os.path.relpath(root, logdir).split(os.sep)
        run = "/".join("<time>" if re.fullmatch(r"\d+(\.\d+)?", p) else p for p in parts)
        acc = ea.EventAccumulator(root, size_guidance=everything)
        acc.Reload()
        tags = acc.Tags()
        got = out.setdefault(run, {})
        for tag in tags[ea.SCALARS]:
            if not TIMING.search(tag):
                got["scalar " + tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
        for tag in tags[ea.TENSORS]:
            got["tensor " + tag] = [(e.step, e.tensor_proto.SerializeToString()) for e in acc.Tensors(tag)]
        for tag in tags[ea.HISTOGRAMS]:
            got["histogram " + tag] = [(e.step, e.histogram_value) for e in acc.Histograms(tag)]
        if tags[ea.GRAPH]:
            got["graph"] = acc.Graph().SerializeToString(deterministic=True)
        for tag in tags[ea.RUN_METADATA]:
            got["run_metadata " + tag] = acc.RunMetadata(tag).SerializeToString(deterministic=True)
        for tag, meta in acc.summary_metadata.items():
            content = meta.plugin_data.content
            if meta.plugin_data.plugin_name == "hparams":
                content = text_format.MessageToString(plugin_data_pb2.HParamsPluginData.FromString(content))
            got["metadata " + tag] = (meta.plugin_data.plugin_name, content)
    return out


def assert_same_series(stock, fast):
    a, b = series(stock), series(fast)
    assert sorted(a) == sorted(b)
    for run in a:
        assert sorted(a[run]) == sorted(b[run]), run
        for key in a[run]:
            assert a[run][key] == b[run][key], f"{run}: {key}"
    return a


def check_all_files_fasttb(logdir, opened):
    files = all_event_files(logdir)
    assert files, "no event files"
    assert files <= opened, f"event files not written by fasttb: {sorted(files - opened)}"


@pytest.mark.slow
def test_lightning_trainer_fit_through_fasttb(tmp_path):
    pytest.importorskip("lightning")
    stock, fast, opened = run_both(tmp_path, LIGHTNING)
    check_all_files_fasttb(fast, opened)
    runs = assert_same_series(stock, fast)
    run = runs["tiny/version_0"]
    assert len(run["scalar train_loss"]) == 20 and len(run["scalar group/index"]) == 20
    assert "graph" in run  # log_graph=True
    assert "metadata _hparams_/session_start_info" in run
    assert any(key.startswith("scalar hp_metric") for key in run)


@pytest.mark.slow
def test_transformers_trainer_train_then_evaluate_through_fasttb(tmp_path):
    pytest.importorskip("transformers")
    stock, fast, opened = run_both(tmp_path, TRANSFORMERS)
    # train() closes its writer; evaluate() makes another one. Both are fasttb's.
    assert len(event_files(os.path.join(fast, "logs"))) == 2
    check_all_files_fasttb(fast, opened)
    runs = assert_same_series(stock, fast)
    run = runs["logs"]
    assert len(run["scalar train/loss"]) == 20
    assert [step for step, _ in run["scalar eval/loss"]] == [20]
    assert "tensor args/text_summary" in run


@pytest.mark.slow
def test_accelerate_tracker_through_fasttb(tmp_path):
    pytest.importorskip("accelerate")
    stock, fast, opened = run_both(tmp_path, ACCELERATE)
    check_all_files_fasttb(fast, opened)
    runs = assert_same_series(stock, fast)
    assert [v for _, v in runs["proj/exp"]["scalar loss"]] == [float(np.float32(1.0 / (s + 1))) for s in range(20)]
    assert len(runs["proj/exp/pair_val"]["scalar pair"]) == 4
    assert "tensor note/text_summary" in runs["proj/exp"]
    assert "metadata _hparams_/experiment" in runs["proj/exp/<time>"]
