"""The summary kinds beyond scalars, histograms and images, against torch's writer: the same
calls through both, the records compared byte for byte (wall_time aside), side files byte for
byte, images and GIF frames by decoded pixels, hparams' session map and graphs parsed."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import accumulator, assert_same_runs, pil_decode, read_events, read_tree, run_child
from every_kind import log_every_kind, onnx_model
from tensorboard.compat.proto import event_pb2, graph_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from fasttb import SummaryWriter

T = 1_700_000_000.5
RNG = np.random.default_rng(11)


def both(tmp_path, calls, name="run"):
    """Runs ``calls(writer)`` through torch's writer and fasttb's; returns the two run trees
    ({directory relative to the log dir: events}) and the two log dirs."""
    out = []
    for cls in (TorchWriter, SummaryWriter):
        logdir = str(tmp_path / cls.__module__.split(".")[0] / name)
        w = cls(logdir)
        with warnings.catch_warnings():
            # numpy warns when torch casts a NaN prediction to a bucket index; fasttb doesn't.
            warnings.simplefilter("ignore", RuntimeWarning)
            calls(w)
        w.close()
        out.append((logdir, {os.path.relpath(os.path.dirname(p), logdir): e
                             for p, e in read_tree(logdir).items()}))
    return out


def comparable(events, drop_wall_time=True):
    out = []
    for e in events:
        e = event_pb2.Event.FromString(e.SerializeToString())
        if drop_wall_time:
            e.wall_time = 0
        out.append(e)
    return out


def assert_same_records(tmp_path, calls):
    (_, torch_tree), (_, ours_tree) = both(tmp_path, calls)
    assert sorted(torch_tree) == sorted(ours_tree)
    for run in torch_tree:
        theirs, ours = comparable(torch_tree[run]), comparable(ours_tree[run])
        assert len(theirs) == len(ours), run
        for a, b in zip(theirs, ours):
            assert a.SerializeToString() == b.SerializeToString(), f"{run}:\n{a}\n---\n{b}"
    return torch_tree, ours_tree


# -- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello **world** é", "", "x" * 100_000, "line\nbreak\ttab", "🎉"])
def test_text(tmp_path, text):
    assert_same_records(tmp_path, lambda w: [w.add_text("note", text, 3, walltime=T),
                                             w.add_text("a/b", text), w.add_text("", text, -5)])


def test_text_read_back_by_tensorboard(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        w.add_text("note", "hello", 3)
    [event] = accumulator(str(tmp_path)).Tensors("note/text_summary")
    assert event.step == 3 and event.tensor_proto.string_val == [b"hello"]


def test_text_needs_a_str(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(TypeError, match="text_string"):
            w.add_text("t", b"bytes")
    assert len(read_events(str(tmp_path))) == 1


# -- PR curves -------------------------------------------------------------------------------

N = 200_000  # more than one block of numpy.histogram's (65536), whose order the sums follow


@pytest.mark.parametrize("predictions", [
    RNG.random(N).astype(np.float32), RNG.random(N), RNG.random(1000).astype(np.float16),
    np.array([0.0, 1.0, 0.5, np.nan, -0.1, 1.1, 0.999999]), RNG.integers(0, 2, 100), np.zeros(0),
], ids=["f32", "f64", "f16", "edges", "int", "empty"])
@pytest.mark.parametrize("labels_kind", ["int", "bool", "float"])
def test_pr_curve(tmp_path, predictions, labels_kind):
    labels = RNG.integers(0, 2, predictions.shape[0])
    labels = {"int": labels, "bool": labels.astype(bool), "float": labels * 0.75}[labels_kind]
    weights = RNG.random(predictions.shape[0])

    def calls(w):
        w.add_pr_curve("pr", labels, predictions, 1, walltime=T)
        w.add_pr_curve("few", labels, predictions, 2, num_thresholds=5, walltime=T)
        w.add_pr_curve("one", labels, predictions, 3, num_thresholds=1, walltime=T)
        w.add_pr_curve("capped", labels, predictions, 4, num_thresholds=300, walltime=T)
        w.add_pr_curve("weighted", labels, predictions, 5, weights=weights, walltime=T)
        w.add_pr_curve("scalar_weight", labels, predictions, 6, weights=0.3, walltime=T)

    assert_same_records(tmp_path, calls)


def test_pr_curve_of_tensors_and_broadcast_weights(tmp_path):
    labels = torch.randint(0, 2, (10, 20), generator=torch.Generator().manual_seed(0))
    preds = torch.rand(10, 20, generator=torch.Generator().manual_seed(1))
    weights = np.linspace(0.1, 1, 20)
    assert_same_records(tmp_path, lambda w: w.add_pr_curve("pr", labels, preds, 1, weights=weights, walltime=T))


def test_pr_curve_errors(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="labels"):
            w.add_pr_curve("pr", np.ones(3), np.ones(4), 1)
        with pytest.raises(ValueError, match="num_thresholds"):
            w.add_pr_curve("pr", np.ones(3), np.ones(3), 1, num_thresholds=0)
        with pytest.raises(TypeError, match="num_thresholds"):
            w.add_pr_curve("pr", np.ones(3), np.ones(3), 1, num_thresholds=2.5)
        with pytest.raises(NotImplementedError):
            w.add_pr_curve("pr", [1, 0], [0.5, 0.2], 1)  # lists, as the stock writer refuses them
    assert len(read_events(str(tmp_path))) == 1


def test_pr_curve_raw(tmp_path):
    arrays = [RNG.random(7) for _ in range(6)]
    tensors = [torch.rand(4) for _ in range(6)]

    def calls(w):
        w.add_pr_curve_raw("raw", [10, 5, 0], [5, 2, 0], [0, 3, 5], [0, 5, 10], [0.6, 0.7, 1.0],
                           [1.0, 0.5, 0.0], 3, num_thresholds=3, walltime=T)
        w.add_pr_curve_raw("arrays", *arrays, 4, walltime=T)
        w.add_pr_curve_raw("tensors", *tensors, 5, num_thresholds=500, walltime=T)
    assert_same_records(tmp_path, calls)


# -- custom scalars --------------------------------------------------------------------------


def test_custom_scalars(tmp_path):
    def calls(w):
        w.add_custom_scalars_multilinechart(["x", "y"])
        w.add_custom_scalars_marginchart(["v", "lo", "hi"], category="c", title="m")
        w.add_custom_scalars({"cat": {"chart": ["Multiline", ["a", "b"]], "m": ["Margin", ["p", "q", "r"]]},
                              "other": {"any type": ["Custom", ["z"]]}})
    assert_same_records(tmp_path, calls)


def test_margin_chart_needs_three_tags(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="3 tags") as info:
            w.add_custom_scalars_marginchart(["a", "b"])
        with pytest.raises(ValueError):
            w.add_custom_scalars({"c": {"m": ["Margin", ["a"]]}})
    assert isinstance(info.value, AssertionError)  # what the stock writer raises


# -- hparams ---------------------------------------------------------------------------------


def session_map(event):
    data = plugin_data_pb2.HParamsPluginData.FromString(event.summary.value[0].metadata.plugin_data.content)
    return data


@pytest.mark.parametrize("hparams, metrics, domains", [
    ({"lr": 0.1, "bs": 32, "opt": "adam", "flag": True, "none": None, "np": np.float64(0.5)},
     {"acc": 0.9, "loss": torch.tensor(0.25)}, None),
    ({"lr": 0.1, "opt": "adam"}, {"m": 1}, {"lr": [0.1, 0.01], "opt": ["adam", "sgd"]}),
    ({"lr": 0.1, "opt": "adam"}, {"m": 1}, {"lr": [], "opt": []}),  # empty domains: set, and empty
    ({"t": torch.tensor([3.5])}, {}, None),
    ({}, {"m": 2.0}, None),
])
def test_hparams(tmp_path, hparams, metrics, domains):
    def calls(w):
        w.add_hparams(hparams, metrics, hparam_domain_discrete=domains, run_name="run1", global_step=7)
        w.add_hparams(hparams, metrics, hparam_domain_discrete=domains, run_name="run2")
    (_, theirs), (_, ours) = both(tmp_path, calls)
    assert sorted(theirs) == sorted(ours) == [".", "run1", "run2"]
    for run in ("run1", "run2"):
        a, b = comparable(theirs[run]), comparable(ours[run])
        assert len(a) == len(b)
        for x, y in zip(a, b):
            if x.summary.value and x.summary.value[0].tag == "_hparams_/session_start_info":
                assert session_map(x) == session_map(y)  # a map: its byte order is the runtime's
            else:
                assert x.SerializeToString() == y.SerializeToString(), f"{x}\n---\n{y}"


def test_hparams_runs_are_closed_once_written(tmp_path):
    """A sweep of many add_hparams calls holds no file open per run (the stock writer closes
    each run at once), and nothing is lost."""
    fds = len(os.listdir("/proc/self/fd"))
    with SummaryWriter(str(tmp_path)) as w:
        for i in range(300):
            w.add_hparams({"i": i}, {"m": i / 2}, run_name=f"r{i}")
        w.add_scalar("after", 1.0, 0)
        time.sleep(0.2)  # the worker writes and closes the runs' files meanwhile
        assert len(os.listdir("/proc/self/fd")) < fds + 10
    runs = read_tree(str(tmp_path))
    # each run: its file version, three hparams records and the metric; the main run: "after"
    assert sorted(len(e) for e in runs.values()) == [2] + [5] * 300


def test_hparams_run_failure_is_raised_by_flush(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        (tmp_path / "blocked").write_text("a file where the run's directory would go")
        w.add_hparams({"a": 1}, {"m": 1.0}, run_name="blocked")
        with pytest.raises(OSError, match="blocked"):
            w.flush()
        w.add_hparams({"a": 2}, {"m": 2.0}, run_name="fine")
        w.add_scalar("s", 1.0, 1)
        w.flush()  # the failure was raised once; the writer goes on
    assert len(read_tree(str(tmp_path / "fine"))) == 1
    assert [e.summary.value[0].tag for e in read_events(str(tmp_path))[1:]] == ["s"]


def test_hparams_errors(tmp_path):
    from collections import OrderedDict

    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(TypeError):
            w.add_hparams(OrderedDict(a=1), {})
        with pytest.raises(ValueError, match="value should be one of"):
            w.add_hparams({"a": np.float32(1)}, {})
        with pytest.raises(TypeError, match="hparam_domain_discrete"):
            w.add_hparams({"a": 1}, {}, hparam_domain_discrete={"a": ["x"]})
    assert os.listdir(str(tmp_path)) == [os.path.basename(p) for p in read_tree(str(tmp_path))]


# -- embeddings ------------------------------------------------------------------------------


def embedding_files(logdir):
    out = {}
    for root, _, names in os.walk(logdir):
        for name in names:
            if "tfevents" not in name:
                with open(os.path.join(root, name), "rb") as f:
                    out[os.path.relpath(os.path.join(root, name), logdir)] = f.read()
    return out


@pytest.mark.parametrize("case", ["plain", "metadata", "header", "sprite", "grey", "uint8", "float64",
                                  "ints", "two calls", "empty tag", "no rows"])
def test_embedding_files(tmp_path, case):
    mat = RNG.random((10, 4)).astype(np.float32)
    meta = [f"m{i}" for i in range(10)]
    images = torch.rand(10, 3, 4, 4)
    grey = torch.rand(10, 1, 6, 5)
    uint8 = torch.randint(0, 255, (10, 3, 4, 4), dtype=torch.uint8)
    big = RNG.standard_normal((5, 3)) * 1e20
    ints = RNG.integers(-10**12, 10**12, (5, 3))

    def calls(w):
        if case == "plain":
            w.add_embedding(mat)
        elif case == "metadata":
            w.add_embedding(mat, metadata=meta, tag="emb/x%y", global_step=3)
        elif case == "header":
            w.add_embedding(mat, metadata=[[i, f"n{i}"] for i in range(10)], metadata_header=["id", "name"])
        elif case == "sprite":
            w.add_embedding(mat, metadata=meta, label_img=images, global_step=12)
        elif case == "grey":
            w.add_embedding(torch.from_numpy(mat), label_img=grey)
        elif case == "uint8":
            w.add_embedding(mat, label_img=uint8)
        elif case == "float64":
            w.add_embedding(big)
        elif case == "ints":
            w.add_embedding(ints)
        elif case == "empty tag":  # the config's paths had "00000//tensors.tsv"
            w.add_embedding(mat, metadata=meta, label_img=images, tag="")
        elif case == "no rows":  # the stock writer's file is made by its first write
            w.add_embedding(mat[:0], metadata=[])
        else:
            w.add_embedding(mat, tag="a", global_step=1)
            w.add_embedding(mat[:5], metadata=meta[:5], tag="b", global_step=1)
    (theirs_dir, _), (ours_dir, _) = both(tmp_path, calls)
    theirs, ours = embedding_files(theirs_dir), embedding_files(ours_dir)
    assert sorted(theirs) == sorted(ours)
    for name in theirs:
        if name.endswith(".png"):
            assert (pil_decode(theirs[name]) == pil_decode(ours[name])).all(), name
        else:
            assert theirs[name] == ours[name], name


def test_embedding_label_images_may_be_numpy(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        w.add_embedding(np.ones((4, 2)), label_img=np.zeros((4, 3, 2, 2)))
    assert os.path.exists(tmp_path / "00000" / "default" / "sprite.png")


def test_embedding_errors(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="#labels"):
            w.add_embedding(np.ones((3, 2)), metadata=["a"])
        with pytest.raises(ValueError, match="mat should be 2D"):
            w.add_embedding(np.ones(3))
        with pytest.raises(ValueError, match="1 or 3 channels"):
            w.add_embedding(np.ones((2, 2)), label_img=np.ones((2, 2, 4, 4)))
        with pytest.raises(ValueError, match="too tall"):
            w.add_embedding(np.ones((2, 2)), label_img=np.ones((2, 3, 40, 4)))


# -- audio -----------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [
    np.sin(np.linspace(0, 100, 4410)).astype(np.float32), np.linspace(-1, 1, 999),
    np.linspace(-2, 2, 500).astype(np.float32), np.array([[0.0, 0.5, -0.5, 1.0]]),
    np.linspace(-1, 1, 300).astype(np.float16), np.array([-1, 0, 1, 2]), np.ones((100, 1)),
    np.array([2**64 - 1, 2**63, 1, 0], np.uint64), np.array([70000, 1, 0], np.uint32),
], ids=["f32", "f64", "clipped", "row", "f16", "int", "column", "uint64", "uint32"])
@pytest.mark.parametrize("rate", [44100, 8000, 22050.5])
def test_audio(tmp_path, samples, rate):
    assert_same_records(tmp_path, lambda w: w.add_audio("a", samples, 2, sample_rate=rate, walltime=T))


def test_audio_errors(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="1 dimensional"):
            w.add_audio("a", np.zeros((2, 3)))
        with pytest.raises(ValueError, match="sample_rate"):
            w.add_audio("a", np.zeros(3), sample_rate=0)
        with pytest.raises(ValueError, match="snd_tensor"):
            w.add_audio("a", np.zeros(0))


# -- video -----------------------------------------------------------------------------------


def frames_of(gif):
    from PIL import Image

    im = Image.open(io.BytesIO(gif))
    frames, durations = [], []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
        durations.append(im.info.get("duration", 0))
    return np.stack(frames), durations


def repeating(video: np.ndarray) -> np.ndarray:
    """`video` with its first frame shown three times and its second twice."""
    return video[:, [0, 0, 0, 1, 1] + list(range(2, video.shape[1]))]


@pytest.mark.parametrize("video", [
    (RNG.integers(0, 4, (1, 5, 3, 8, 10)) * 64).astype(np.uint8),
    (RNG.integers(0, 3, (3, 4, 3, 6, 5)) * 127).astype(np.uint8),
    RNG.integers(0, 3, (2, 2, 3, 8, 8)) / 2.0,
    (RNG.integers(0, 4, (1, 3, 4, 6, 7)) * 64).astype(np.uint8),
    (RNG.integers(0, 4, (2, 3, 2, 6, 7)) * 64).astype(np.uint8),
    (RNG.integers(0, 4, (1, 2, 5, 4, 4)) * 64).astype(np.uint8),
    repeating((RNG.integers(0, 4, (1, 4, 3, 6, 5)) * 64).astype(np.uint8)),
    repeating((RNG.integers(0, 4, (1, 4, 4, 6, 5)) * 64).astype(np.uint8)),
], ids=["uint8", "padded batch", "float", "rgba", "grey and alpha", "five channels", "repeated frames",
        "rgba repeated"])
def test_video(tmp_path, video):
    (_, theirs), (_, ours) = both(tmp_path, lambda w: w.add_video("v", video, 1, fps=5, walltime=T))
    [a], [b] = ([e for e in tree["."] if e.summary.value] for tree in (theirs, ours))
    ia, ib = a.summary.value[0].image, b.summary.value[0].image
    assert (ia.height, ia.width, ia.colorspace) == (ib.height, ib.width, ib.colorspace)
    fa, _ = frames_of(ia.encoded_image_string)
    fb, db = frames_of(ib.encoded_image_string)
    # At most 256 colours: exact, both; a repeated frame is merged into the one before, both.
    assert fa.shape == fb.shape and (fa == fb).all()
    # fasttb records 1/fps per input frame; moviepy 1.x through today's imageio records no delay.
    assert sum(db) == 200 * video.shape[1] and all(d % 200 == 0 for d in db)


def test_video_of_many_colours_and_grey_frames(tmp_path):
    many = RNG.integers(0, 255, (1, 2, 3, 64, 64), dtype=np.uint8)
    grey = RNG.integers(0, 255, (1, 3, 1, 16, 9), dtype=np.uint8)
    with SummaryWriter(str(tmp_path)) as w:
        w.add_video("many", many, 1, fps=10)
        w.add_video("grey", grey, 2)
    images = {v.tag: v.image for e in read_events(str(tmp_path)) for v in e.summary.value}
    frames, durations = frames_of(images["many"].encoded_image_string)
    assert frames.shape == (2, 64, 64, 3) and durations == [100, 100]
    assert np.abs(frames.astype(int) - many[0].transpose(0, 2, 3, 1)).mean() < 16  # median cut
    frames, _ = frames_of(images["grey"].encoded_image_string)
    assert (frames[..., 0] == grey[0, :, 0]).all() and images["grey"].colorspace == 1


def test_video_needs_no_moviepy():
    result = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys, tempfile, numpy as np, fasttb
        with fasttb.SummaryWriter(tempfile.mkdtemp()) as w:
            w.add_video("v", np.zeros((1, 2, 3, 4, 4), np.uint8))
        assert "moviepy" not in sys.modules and "imageio" not in sys.modules
        """)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- meshes and tensors ----------------------------------------------------------------------


def test_mesh(tmp_path):
    vertices = RNG.random((1, 10, 3))
    colors = RNG.integers(0, 255, (1, 10, 3))
    faces = RNG.integers(0, 10, (1, 5, 3))

    def calls(w):
        w.add_mesh("all", vertices, colors=colors, faces=faces,
                   config_dict={"camera": {"cls": "PerspectiveCamera", "fov": 75}}, global_step=8, walltime=T)
        w.add_mesh("points", torch.from_numpy(vertices).float(), global_step=9, walltime=T)
        w.add_mesh("lists", [[[0.1, 0.2, 0.3]]], colors=[[[1, 2, 3]]], walltime=T)
    assert_same_records(tmp_path, calls)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
                                   torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool,
                                   torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 2)])
def test_tensor(tmp_path, dtype, shape):
    t = (torch.rand(shape) * 10).to(dtype) if not dtype.is_complex else torch.rand(shape, dtype=dtype)
    assert_same_records(tmp_path, lambda w: w.add_tensor("t", t, 1, walltime=T))


def test_tensor_of_numpy_arrays_is_the_tensor_of_the_same_values(tmp_path):
    a = RNG.random((3, 4)).astype(np.float32)
    for name, value in (("np", a), ("torch", torch.from_numpy(a))):
        with SummaryWriter(str(tmp_path / name)) as w:
            w.add_tensor("t", value, 1, walltime=T)
    assert read_events(str(tmp_path / "np"))[1] == read_events(str(tmp_path / "torch"))[1]


def test_tensor_of_an_unsupported_dtype(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="unsupported tensor dtype"):
            w.add_tensor("t", np.zeros(3, np.uint16))


# -- graphs ----------------------------------------------------------------------------------


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = Block()
        self.b2 = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
        self.scale = 2.0

    def forward(self, x, y):
        h = self.b1(x) * self.scale
        return self.b2(h), y + 1


@pytest.mark.parametrize("model, args", [
    (Net(), (torch.rand(5, 4), torch.rand(2))),
    (torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 1)), torch.rand(1, 1, 4, 4)),
    (torch.nn.Linear(3, 3), torch.rand(2, 3)),
], ids=["nested", "conv", "single"])
def test_graph(tmp_path, model, args):
    (_, theirs), (_, ours) = both(tmp_path, lambda w: w.add_graph(model, args))
    a, b = theirs["."][1:], ours["."][1:]
    assert graph_pb2.GraphDef.FromString(a[0].graph_def) == graph_pb2.GraphDef.FromString(b[0].graph_def)
    assert a[1].tagged_run_metadata == b[1].tagged_run_metadata
    assert model.training  # put back in training mode after the trace


def test_graph_is_read_by_tensorboard(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        w.add_graph(Net(), (torch.rand(5, 4), torch.rand(2)))
    assert accumulator(str(tmp_path)).Graph() is not None


def test_onnx_graph(tmp_path):
    path = str(tmp_path / "model.onnx")
    onnx_model(path)
    (_, theirs), (_, ours) = both(tmp_path, lambda w: w.add_onnx_graph(path))
    a, b = theirs["."][1], ours["."][1]
    assert graph_pb2.GraphDef.FromString(a.graph_def) == graph_pb2.GraphDef.FromString(b.graph_def)


# -- order and dependencies ------------------------------------------------------------------


def test_kinds_keep_call_order_with_the_native_ones(tmp_path):
    def calls(w):
        w.add_scalar("s", 1.0, 1, walltime=T)
        w.add_text("t", "x", 2, walltime=T)
        w.add_scalar("s", 2.0, 3, walltime=T)
        w.add_audio("a", np.zeros(4), 4, walltime=T)
        w.add_histogram("h", np.arange(10.0), 5, walltime=T)
        w.add_pr_curve("p", np.ones(3), np.ones(3), 6, walltime=T)
    torch_tree, _ = assert_same_records(tmp_path, calls)
    assert [e.step for e in torch_tree["."][1:]] == [1, 2, 3, 4, 5, 6]


BLOCKED = ("torch", "tensorboard", "PIL", "moviepy", "onnx", "matplotlib", "tensorboardX")

EVERY_KIND = """
import sys, numpy as np, fasttb
w = fasttb.SummaryWriter(sys.argv[1])
w.add_text("t", "x", 1, walltime=1.5)
w.add_pr_curve("p", np.ones(4), np.linspace(0, 1, 4), 1, walltime=1.5)
w.add_pr_curve_raw("r", *[np.ones(3)] * 6, 1, walltime=1.5)
w.add_custom_scalars_multilinechart(["a"])
w.add_hparams({"lr": 0.1}, {"m": 1.0}, run_name="h")
w.add_embedding(np.ones((4, 2)), metadata=list("abcd"), label_img=np.zeros((4, 3, 2, 2)))
w.add_audio("a", np.zeros(100), walltime=1.5)
w.add_video("v", np.zeros((1, 2, 3, 4, 4), np.uint8), walltime=1.5)
w.add_mesh("m", np.ones((1, 3, 3)), walltime=1.5)
w.add_tensor("x", np.ones(3), walltime=1.5)
w.add_image_with_boxes("b", np.linspace(0, 1, 3 * 64 * 48).reshape(3, 64, 48), np.array([[1, 1, 30, 20]]),
                       rescale=0.7, walltime=1.5)
w.add_onnx_graph(sys.argv[2])
if len(sys.argv) > 3:
    try:
        w.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.array([[1, 1, 5, 5]]), labels=["x"])
    except ImportError as exc:
        assert "labels" in str(exc), exc
    else:
        raise AssertionError("labels without Pillow")
w.close()
print(sorted({m.split(".")[0] for m in sys.modules}))
"""

BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_every_kind_but_add_graph_needs_only_numpy_and_protobuf(tmp_path):
    """The same calls with torch, tensorboard, Pillow, moviepy and onnx made unimportable write
    what they write with all of them installed (boxes drawn and resized without Pillow)."""
    model = str(tmp_path / "m.onnx")
    onnx_model(model)
    trees = {}
    for name, prefix, extra in (("bare", BLOCKER, ["labels"]), ("full", "", [])):
        logdir = str(tmp_path / name)
        result = subprocess.run([sys.executable, "-c", prefix + EVERY_KIND, logdir, model, *extra],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        trees[name] = ({os.path.relpath(p, logdir).split("events.out")[0]: comparable(e)
                        for p, e in read_tree(logdir).items()}, embedding_files(logdir), result.stdout)
    (bare, bare_files, loaded), (full, full_files, _) = trees["bare"], trees["full"]
    assert not set(BLOCKED) & set(ast.literal_eval(loaded))
    assert sorted(bare) == sorted(full) == ["", "h/"]  # the main run and the hparams run
    for run in bare:
        assert [e.SerializeToString() for e in bare[run]] == [e.SerializeToString() for e in full[run]]
    assert bare_files == full_files


def test_every_kind_in_one_run_matches_torch(tmp_path):
    """The calls the bare-environment test (test_wheel.py) makes, here against torch's writer
    in one process."""
    model = str(tmp_path / "m.onnx")
    onnx_model(model)
    for cls, name in ((TorchWriter, "torch"), (SummaryWriter, "fasttb")):
        w = cls(str(tmp_path / name))
        log_every_kind(w, model, torch.from_numpy if name == "torch" else lambda a: a)
        w.close()
    assert_same_runs(str(tmp_path / "torch"), str(tmp_path / "fasttb"))


def test_import_loads_neither_torch_nor_tensorboard():
    result = subprocess.run([sys.executable, "-c", "import sys, fasttb; print(sorted(sys.modules))"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in ast.literal_eval(result.stdout)}
    assert not loaded & {"torch", "tensorboard", "tensorboardX", "PIL", "matplotlib", "onnx", "moviepy"}


def test_add_graph_needs_torch_but_not_tensorboard(tmp_path):
    """The same traced graph with tensorboard (and Pillow, onnx) unimportable."""
    blocker = BLOCKER.replace(repr(BLOCKED), repr(tuple(m for m in BLOCKED if m != "torch")))
    code = blocker + textwrap.dedent("""
        import torch, fasttb
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        with fasttb.SummaryWriter(sys.argv[1]) as w:
            w.add_graph(model, torch.zeros(2, 4))
        assert "tensorboard" not in sys.modules
        """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bare")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    with TorchWriter(str(tmp_path / "torch")) as w:
        w.add_graph(model, torch.zeros(2, 4))
    assert_same_runs(str(tmp_path / "torch"), str(tmp_path / "bare"))


# -- errors ----------------------------------------------------------------------------------------

# Bad input that torch's writer refuses, each with the exception it raises there; fasttb's error
# names the argument and is an instance of torch's type (before, these raised other types).
BAD_CALLS = {
    "text not a str": lambda w: w.add_text("t", 5),
    "main_tag not a str": lambda w: w.add_scalars(5, {"a": 1.0}),
    "not a mapping": lambda w: w.add_scalars("m", [("a", 1.0)]),
    "layout not a mapping": lambda w: w.add_custom_scalars([]),
    "embedding tag not a str": lambda w: w.add_embedding(np.ones((2, 2)), tag=5),
    "figure not a figure": lambda w: w.add_figure("f", 5),
    "5 channels": lambda w: w.add_image("i", np.zeros((5, 4, 4))),
    "empty batch": lambda w: w.add_images("i", np.zeros((0, 3, 4, 4))),
    "fps 0": lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps=0),
    "no frames": lambda w: w.add_video("v", np.zeros((1, 0, 3, 4, 4))),
    "no videos": lambda w: w.add_video("v", np.zeros((0, 2, 3, 4, 4))),
    "a summary of bytes": lambda w: w.file_writer.add_summary(b"abc"),
    "a None chart": lambda w: w.add_custom_scalars({"c": {"x": None}}),
    "a chart without tags": lambda w: w.add_custom_scalars({"c": {"x": ["Multiline"]}}),
    "no bins": lambda w: w.add_histogram("h", np.arange(5.0), bins=[]),
    "one box flat": lambda w: w.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.array([1, 2, 3, 4])),
    "boxes of 3": lambda w: w.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.zeros((1, 3))),
    "fps None": lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps=None),
    "values a str": lambda w: w.add_histogram("h", "x"),
    "rescale a str": lambda w: w.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.zeros((1, 4)), rescale="x"),
    "a datetime": lambda w: w.add_scalar("s", np.datetime64("2020-01-01")),
    "label_img a list": lambda w: w.add_embedding(np.ones((2, 2)), label_img=[np.zeros((3, 2, 2))] * 2),
    "sample rate 0": lambda w: w.add_audio("a", np.zeros(10), sample_rate=0),
    "sample rate a word": lambda w: w.add_audio("a", np.zeros(10), sample_rate="fast"),
    "sample rate None": lambda w: w.add_audio("a", np.zeros(10), sample_rate=None),
    "mesh of a str": lambda w: w.add_mesh("m", "x"),
    "raw PR counts as scalars": lambda w: w.add_pr_curve_raw("p", 1, 1, 1, 1, 1, 1),
    # Tags the stock writer joins to a str with "+", or puts in a repeated field: no None, no bytes.
    "a bytes key": lambda w: w.add_scalars("m", {b"a": 1.0}),
    "a None key": lambda w: w.add_scalars("m", {None: 1.0}),
    "a None text tag": lambda w: w.add_text(None, "x"),
    "a bytes text tag": lambda w: w.add_text(b"t", "x"),
    "a None multiline tag": lambda w: w.add_custom_scalars_multilinechart(["a", None]),
    "raw limits as text": lambda w: w.add_histogram_raw("h", 0, 2, 3, 3, 5, ["1", "2"], [1, 2]),
    "raw counts as a str array": lambda w: w.add_histogram_raw("h", 0, 2, 3, 3, 5, [1, 2], np.array(["1", "2"])),
    "raw limits 0-d": lambda w: w.add_histogram_raw("h", 0, 2, 2, 2, 2, np.array(1.0), [1.0]),
    "walltime of two": lambda w: w.add_scalar("s", 1.0, 0, walltime=np.zeros(2)),
    "walltime a list": lambda w: w.add_text("t", "x", 0, walltime=[1.0]),
}


@pytest.mark.parametrize("call", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_input_raises_what_torch_raises(tmp_path, call):
    errors = []
    for writer in (TorchWriter, SummaryWriter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = writer(str(tmp_path / writer.__module__))
            w.add_scalar("before", 1.0, 0)
            with pytest.raises(Exception) as caught:
                BAD_CALLS[call](w)
            w.close()
        errors.append(caught.value)
    theirs, ours = errors
    assert isinstance(ours, type(theirs)), f"{ours!r} is not a {type(theirs).__name__}"
    assert isinstance(ours, (TypeError, ValueError))  # and the type Python's convention asks
    assert str(ours)  # a message, naming what was wrong
    tags = [v.tag for e in read_events(str(tmp_path / "fasttb.writer")) for v in e.summary.value]
    assert tags == ["before"]  # kept


def test_a_missing_optional_package_is_named_with_what_to_install(tmp_path):
    # The stock writers raise a bare "No module named ..."; fasttb says what needed it.
    result = run_child(f"""
        import sys
        for name in ("torch", "matplotlib", "pandas"):
            sys.modules[name] = None
        from fasttb import SummaryWriter
        from fasttb.reader import SummaryReader
        with SummaryWriter({str(tmp_path)!r}) as w:
            w.add_scalar("s", 1.0, 0)
            for call in (lambda: w.add_graph(object()), lambda: w.add_figure("f", object()),
                         lambda: SummaryReader({str(tmp_path)!r}).scalars):
                try:
                    call()
                except ModuleNotFoundError as exc:
                    print(exc.name, "|", exc)
    """)
    assert result.stdout.splitlines() == [
        "torch | add_graph needs torch (pip install torch)",
        "matplotlib | add_figure needs matplotlib (pip install matplotlib)",
        "pandas | a SummaryReader's DataFrame needs pandas (pip install pandas)",
    ]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # numpy's, for np.matrix
@pytest.mark.parametrize("dialect", ["torch", "tensorboardX"])
def test_numpy_matrices_are_logged_as_the_plain_arrays_they_hold(tmp_path, dialect):
    # np.matrix stays 2-D through ravel() and squeeze(), which the stock writers' reshapes rely
    # on: they fail on it (ValueError, AssertionError), and fasttb did too, with messages about
    # the wrong dimensions ("values: must be a 1-D array"). It now logs what np.asarray holds,
    # which this test compares with what the stock writer logs for those plain arrays.
    import tensorboardX

    import fasttb.tensorboardX

    stock, ours = ((TorchWriter, SummaryWriter) if dialect == "torch"
                   else (tensorboardX.SummaryWriter, fasttb.tensorboardX.SummaryWriter))
    m = np.matrix(np.random.default_rng(3).random((6, 5)))

    def log(writer, to_array):
        with writer(str(tmp_path / writer.__module__)) as w:
            w.add_scalar("s", to_array(m[:1, :1]), 0, walltime=1.0)
            w.add_histogram("h", to_array(m), 0, walltime=2.0)
            w.add_histogram("h3", to_array(m), 0, walltime=3.0, bins=3)
            w.add_image("i", to_array(m), 0, walltime=4.0, dataformats="HW")
            w.add_pr_curve("p", to_array(m > 0.5), to_array(m), 0, walltime=5.0)
            w.add_embedding(to_array(m), global_step=0)

    log(stock, np.asarray)
    log(ours, lambda x: x)
    assert_same_runs(str(tmp_path / stock.__module__), str(tmp_path / ours.__module__))
    [histogram] = accumulator(str(tmp_path / ours.__module__)).Histograms("h")
    assert histogram.histogram_value.num == 30
