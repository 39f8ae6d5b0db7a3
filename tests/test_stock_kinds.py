"""The rarely used kinds (built with torch's own summary functions): the same records and side
files as torch's writer, read back by tensorboard."""

import numpy as np
import pytest
import torch
from conftest import accumulator, read_events
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from fasttb import SummaryWriter

T = 1_700_000_000.5


def log(w):
    w.add_text("note", "hello **world** é", 1, walltime=T)
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 100), rng.random(100).astype(np.float32)
    w.add_pr_curve("pr", labels, preds, 2, num_thresholds=5, walltime=T)
    w.add_pr_curve_raw("prr", [10, 5, 0], [5, 2, 0], [0, 3, 5], [0, 5, 10], [0.6, 0.7, 1.0],
                       [1.0, 0.5, 0.0], 3, num_thresholds=3, walltime=T)
    w.add_audio("audio", torch.tensor([[0.0, 0.5, -0.5, 1.0]]), 4, sample_rate=8000, walltime=T)
    w.add_mesh("mesh", torch.rand(1, 5, 3, generator=torch.Generator().manual_seed(1)),
               colors=torch.randint(0, 255, (1, 5, 3), generator=torch.Generator().manual_seed(2)),
               config_dict={"camera": {"cls": "PerspectiveCamera"}}, global_step=5, walltime=T)
    w.add_tensor("tens", torch.tensor([[1, 2], [3, 4]], dtype=torch.int32), 6, walltime=T)
    w.add_scalar("between", 1.0, 7, walltime=T)  # order with the native kinds is kept
    w.add_custom_scalars_multilinechart(["x", "y"])
    w.add_custom_scalars_marginchart(["v", "lo", "hi"], category="c", title="m")
    w.add_custom_scalars({"cat": {"chart": ["Multiline", ["a", "b"]]}})


def normalized(directory):
    events = read_events(directory)
    for e in events:
        if not e.HasField("summary") or e.summary.value[0].tag.startswith("custom_scalars"):
            e.wall_time = 0  # the header and custom scalars take no walltime argument
    return [e.SerializeToString() for e in events]


def test_same_records_as_torch(tmp_path):
    with TorchWriter(str(tmp_path / "torch")) as w:
        log(w)
    with SummaryWriter(str(tmp_path / "fasttb")) as w:
        log(w)
    ours, theirs = normalized(tmp_path / "fasttb"), normalized(tmp_path / "torch")
    assert len(ours) == len(theirs) == 11
    assert ours == theirs
    acc = accumulator(str(tmp_path / "fasttb"))
    assert {"note/text_summary", "pr", "prr", "tens", "mesh_VERTEX", "mesh_COLOR"} <= set(acc.Tags()["tensors"])
    assert acc.Tags()["audio"] == ["audio"]


def test_hparams_match_torch(tmp_path):
    for cls, name in ((TorchWriter, "torch"), (SummaryWriter, "fasttb")):
        with cls(str(tmp_path / name)) as w:
            w.add_hparams({"lr": 0.2, "bs": 32, "opt": "adam", "flag": True, "skip": None},
                          {"m": 1.0, "acc": np.float32(0.5)},
                          hparam_domain_discrete={"opt": ["adam", "sgd"]}, run_name="run", global_step=3)
    runs = {}
    for name in ("torch", "fasttb"):
        events = read_events(tmp_path / name / "run")
        contents = {}
        for e in events[1:]:
            value = e.summary.value[0]
            if value.metadata.plugin_data.plugin_name == "hparams":
                contents[value.tag] = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            else:
                contents[value.tag] = (e.step, value.simple_value)
        runs[name] = contents
    assert runs["fasttb"] == runs["torch"]  # parsed: the hparams map's byte order is the runtime's
    assert set(runs["fasttb"]) == {"_hparams_/experiment", "_hparams_/session_start_info",
                                   "_hparams_/session_end_info", "m", "acc"}
    plugin = accumulator(str(tmp_path / "fasttb" / "run")).PluginTagToContent("hparams")
    assert set(plugin) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}


def test_hparams_type_check():
    w = SummaryWriter.__new__(SummaryWriter)
    from collections import OrderedDict

    with pytest.raises(TypeError, match="dictionary"):
        w.add_hparams(OrderedDict(lr=0.1), {"m": 1.0})


def test_embedding_files_match_torch(tmp_path):
    mat = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 10
    labels = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    for cls, name in ((TorchWriter, "torch"), (SummaryWriter, "fasttb")):
        with cls(str(tmp_path / name)) as w:
            w.add_embedding(mat, metadata=["a", "b", "c", "d"], label_img=labels, tag="my/emb%")
            w.add_embedding(mat, metadata=[["x", 1], ["y", 2], ["z", 3], ["w", 4]],
                            metadata_header=["name", "n"], global_step=12)
    for rel in ("projector_config.pbtxt", "00000/my%2femb%25/tensors.tsv",
                "00000/my%2femb%25/metadata.tsv", "00012/default/metadata.tsv", "00012/default/tensors.tsv"):
        with open(tmp_path / "fasttb" / rel, "rb") as a, open(tmp_path / "torch" / rel, "rb") as b:
            assert a.read() == b.read(), rel
    from PIL import Image

    sprites = [np.asarray(Image.open(tmp_path / n / "00000/my%2femb%25/sprite.png")) for n in ("fasttb", "torch")]
    np.testing.assert_array_equal(*sprites)


def test_graph_matches_torch(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    x = torch.zeros(2, 4)
    graphs = {}
    for cls, name in ((TorchWriter, "torch"), (SummaryWriter, "fasttb")):
        with cls(str(tmp_path / name)) as w:
            w.add_graph(model, x)
        events = read_events(tmp_path / name)[1:]
        assert [e.WhichOneof("what") for e in events] == ["graph_def", "tagged_run_metadata"]
        graphs[name] = events
    from tensorboard.compat.proto.graph_pb2 import GraphDef

    a, b = (GraphDef.FromString(graphs[n][0].graph_def) for n in ("fasttb", "torch"))
    assert a == b  # parsed: NodeDef.attr is a map
    assert graphs["fasttb"][1].tagged_run_metadata == graphs["torch"][1].tagged_run_metadata
    assert accumulator(str(tmp_path / "fasttb")).Graph() is not None


def test_video_without_moviepy_fails_loudly(logdir):
    try:
        import moviepy.editor  # noqa: F401
    except ImportError:
        pass
    else:  # with moviepy 1.x installed, the video is written like the stock writer's
        with SummaryWriter(logdir) as w:
            w.add_video("v", torch.rand(1, 2, 3, 8, 8), 1)
        assert len(read_events(logdir)) == 2
        return
    with SummaryWriter(logdir) as w:
        with pytest.raises(ImportError, match="moviepy"):
            w.add_video("v", torch.rand(1, 2, 3, 8, 8), 1)
    assert len(read_events(logdir)) == 1  # nothing half-written


def test_margin_chart_needs_three_tags(logdir):
    with SummaryWriter(logdir) as w:
        with pytest.raises(ValueError, match="3 tags") as info:
            w.add_custom_scalars_marginchart(["a", "b"])
    assert isinstance(info.value, AssertionError)
