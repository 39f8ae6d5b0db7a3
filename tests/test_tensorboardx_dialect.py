"""fasttb.tensorboardX against tensorboardX itself: the same calls through
``tensorboardX.SummaryWriter`` and ``fasttb.tensorboardX.SummaryWriter`` into two log dirs, read
back and compared record by record (wall_time aside; images and GIFs by decoded pixels; audio,
side files and projector_config.pbtxt byte for byte). See tbx_helpers.py."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import socket
import textwrap

import numpy as np
import pytest

tensorboardX = pytest.importorskip("tensorboardX")

from conftest import assert_same_runs, read_tree, run_child  # noqa: E402
from tbx_helpers import assert_same_tbx_runs, raised, run_both, same_records  # noqa: E402

import fasttb  # noqa: E402
import fasttb.tensorboardX as ftx  # noqa: E402
from fasttb.tensorboardX import SummaryWriter  # noqa: E402

RNG = np.random.default_rng(7)


def _data():
    """Every array the scenario logs, made once (both writers must get the same values)."""
    r = RNG
    return dict(
        img=r.uniform(-0.5, 1.7, (3, 5, 6)),
        img32=r.uniform(0, 1, (5, 6, 4)).astype(np.float32),
        img8=r.integers(0, 255, (5, 6), dtype=np.uint8),
        imgs=[r.uniform(-1, 2, (3, 4, 4)) for _ in range(3)],
        imgs_hwc=[r.uniform(0, 1, (4, 4, 1)).astype(np.float32) for _ in range(2)],
        rgba=r.uniform(0, 1, (3, 4, 4, 4)),
        batch=r.uniform(0, 1.2, (10, 1, 3, 3)),
        box_img=r.uniform(-0.2, 1.2, (3, 20, 20)),
        box_img2=r.uniform(0, 1, (20, 20, 3)),
        mono=r.uniform(-1, 1, 100),
        stereo=r.uniform(-1.5, 1.5, (100, 2)).astype(np.float32),
        video=(r.integers(0, 4, (2, 3, 3, 8, 8)) * 60).astype(np.uint8),
        video_f=r.choice([-0.3, 0.0, 0.5, 1.2], (3, 2, 1, 4, 4)),
        vertices=r.uniform(-1, 1, (1, 4, 3)),
        colors=r.integers(0, 255, (1, 4, 3)),
        mat=r.normal(size=(4, 3)),
        mat32=r.normal(size=(7, 2)).astype(np.float32),
        thumbs=r.uniform(0, 1, (4, 3, 5, 5)),
        grey_thumbs=r.uniform(-0.5, 1.5, (7, 1, 3, 3)).astype(np.float32),
        hist=r.normal(size=1000),
        labels=r.integers(0, 2, 50),
        preds=r.uniform(0, 1, 50),
    )


D = _data()


def scenario(w):
    """Every method of the writer, with tensorboardX's particular cases."""
    # scalars: values tensorboardX takes, tags it rewrites, metadata records
    w.add_scalar("loss", 1.5, 3)
    w.add_scalar("a b", 2, 4)
    w.add_scalar("/lead/x%y", np.float32(2.5), np.int64(5))
    w.add_scalar("é/ü", [3.0], 6, walltime=1_700_000_000)
    w.add_scalar("arr", np.array([[4.0]]), 7.9)
    w.add_scalar("flag", True)
    w.add_scalar(None, 1.0)
    w.add_scalar("named", 1.0, 1, display_name="Loss", summary_description="the **loss**")
    w.add_scalar("only_description", 1.0, 1, summary_description="d")
    w.add_scalar("none_name", 1.0, 1, None, None)
    w.add_scalar("positional", 1.0, 1, None, "Title")
    w.add_scalars("main tag/x", {"a": 1, "b c": np.float64(2.0)}, 2)
    w.add_scalars("main tag/x", {"a": 3}, 3)
    # text, histograms, PR curves, custom scalars
    w.add_text("t t", "hello **world** é", 2)
    w.add_histogram("h h", D["hist"], 1)
    w.add_histogram("h2", [1, 2, 3, 3], 1, bins="auto")
    w.add_histogram("h3", D["hist"], 2, bins=10, max_bins=4)
    w.add_histogram_raw("raw h", 0, 3, 4, 6, 14, [1, 2, 3], [1, 1, 2], 2)
    w.add_pr_curve("pr x", list(D["labels"]), D["preds"], 1, num_thresholds=20)
    w.add_pr_curve_raw("prr", [3, 2], [1, 0], [0, 1], [0, 1], [0.75, 1.0], [1.0, 0.66], 1, num_thresholds=2)
    w.add_custom_scalars({"cat": {"c1": ["Multiline", ["loss", "a_b"]], "c2": ["Margin", ["a", "b", "c"]]}})
    w.add_custom_scalars_multilinechart(["a", "b"])
    w.add_custom_scalars_marginchart(["a", "b", "c"], category="x", title="y")
    # images: unclipped float scaling, layouts, lists, RGBA batches, boxes, figures
    w.add_image("img x", D["img"], 0)
    w.add_image("img32", D["img32"], 0, dataformats="HWC")
    w.add_image("img8", D["img8"], 0, dataformats="HW")
    w.add_images("imgs", D["imgs"], 0, dataformats="CHW")
    w.add_images("imgs hwc", D["imgs_hwc"], 0, dataformats="hwc")
    w.add_images("imgs bad", D["imgs"], 0, dataformats="NCHW")  # a notice, nothing logged
    w.add_images("rgba", D["rgba"], 0, dataformats="NHWC")
    w.add_images("batch", D["batch"], 1)
    w.add_image_with_boxes("boxes x", D["box_img"], np.array([[1, 1, 10, 10], [5, 5, 15, 18]]), 1,
                           labels=["a", "b"])
    w.add_image_with_boxes("boxes2", D["box_img2"], np.array([[1.5, 1, 10, 10]]), 1, dataformats="HWC",
                           labels=["a", "b"], rescale=2)
    # audio, video, meshes
    w.add_audio("mono x", D["mono"], 0, sample_rate=8000)
    w.add_audio("stereo", D["stereo"], 1, sample_rate=16000)
    w.add_audio("column", D["mono"][:, None].astype(np.float32), 2)
    w.add_audio("ints", np.array([0, 1, -1, 20000, -32768], dtype=np.int16), 3)
    w.add_audio("ints32", np.array([0, 1 << 20, -(1 << 30)], dtype=np.int32), 4)
    w.add_video("vid x", D["video"], 0)
    w.add_video("vid float", D["video_f"], 1, fps=10)
    w.add_video("vid ncthw", D["video"].transpose(0, 2, 1, 3, 4), 2, dataformats="NCTHW")
    w.add_mesh("mesh", D["vertices"], colors=D["colors"], faces=np.array([[[0, 1, 2], [1, 2, 3]]]), global_step=1)
    w.add_mesh("mesh cfg", D["vertices"].tolist(), config_dict={"camera": {"fov": 75}})
    # hyperparameters and embeddings (their own files)
    w.add_hparams({"lr": 0.1, "bs": 16, "on": True, "opt": "adam", "fn": print, "n": None, "odd": [1]},
                  {"hp/acc x": 0.5, "hp/loss": [0.25]}, name="hp run", global_step=3)
    w.add_embedding(D["mat"], metadata=["a", "b", "c", "d"], label_img=D["thumbs"], global_step=2, tag="emb/x%")
    w.add_embedding(D["mat32"], metadata=[["a", 1]] * 7, metadata_header=["n", "v"], label_img=D["grey_thumbs"])
    w.add_embedding(D["mat"].astype(np.int64), tag="")
    # use_metadata: the main run's records take its step
    with w.use_metadata(global_step=7):
        w.add_scalar("um", 1.0)
        w.add_scalar("um explicit", 1.0, 2)
        w.add_text("um text", "x")
        w.add_image("um img", np.zeros((3, 2, 2)))
        w.add_histogram("um h", [1.0, 2.0])
        w.add_custom_scalars_multilinechart(["um"])
        w.add_scalars("um scalars", {"a": 1.0})  # its own run: not affected
    w.add_scalar("after", 2.0)


@pytest.mark.parametrize("kwargs", [{}, {"purge_step": 3, "filename_suffix": ".x", "flush_secs": 1},
                                    {"write_to_disk": False}],
                         ids=["defaults", "purge_suffix", "no_disk"])
def test_every_method_same_records(tmp_path, kwargs):
    theirs, ours, printed = run_both(tmp_path, scenario, **kwargs)
    runs = assert_same_tbx_runs(theirs, ours)
    assert printed[0] == printed[1] and "Nothing is written." in printed[1]
    if kwargs.get("write_to_disk") is False:
        # As in tensorboardX: no event file of the writer, but add_hparams' run and the
        # projector files are written all the same.
        assert sorted(runs) == ["hp run"]
        assert os.path.exists(os.path.join(ours, "projector_config.pbtxt"))
        return
    assert sorted(runs) == [".", "hp run", "main tag/x/a", "main tag/x/b c", "um scalars/a"]
    tags = [v.tag for e in runs["."] for v in e.summary.value]
    # Rewritten: scalars, histograms, images, videos; kept: text, audio, PR curves, boxes, meshes.
    for tag in ("a_b", "lead/x_y", "é/ü", "img_x", "h_h", "vid_x", "t t/text_summary", "mono x", "pr x",
                "boxes x", "raw h", "mesh cfg_1"):
        assert tag in tags, tag
    assert "a b" not in tags and "img x" not in tags
    steps = {v.tag: e.step for e in runs["."] for v in e.summary.value}
    assert steps["um"] == steps["um text/text_summary"] == steps["um_img"] == 7
    assert steps["um_explicit"] == 2 and steps["after"] == 0
    if "purge_step" in kwargs:
        assert runs["."][1].step == 3 and runs["."][1].file_version
        assert all(name.endswith(".x") for name in os.listdir(ours) if "tfevents" in name)


def test_torch_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.tensor(D["img"], dtype=torch.float32)

    def calls(w):
        w.add_scalar("s", torch.tensor(2.5), torch.tensor(3))
        w.add_scalar("g", torch.ones(1, requires_grad=True) * 2, 1)
        w.add_image("i", t, 1)
        w.add_images("l", [t, t * 0.5], 1)
        w.add_histogram("h", torch.from_numpy(D["hist"]), 1)
        w.add_audio("a", torch.from_numpy(D["stereo"]), 1)
        w.add_hparams({"lr": 0.1, "t": torch.tensor(1.0)}, {"m": torch.tensor(0.5)}, name="hp")

    same_records(tmp_path, calls)


# -- the constructor -------------------------------------------------------------------------------


def test_constructor_variants(tmp_path, monkeypatch):
    a = SummaryWriter(str(tmp_path / "a"))
    b = SummaryWriter(log_dir=tmp_path / "b")
    c = SummaryWriter(str(tmp_path / "c"), log_dir=str(tmp_path / "ignored"))
    for w, name in ((a, "a"), (b, "b"), (c, "c")):
        assert str(w.logdir) == str(w.log_dir) == str(w.get_logdir()) == str(tmp_path / name)
        assert w.file_writer.get_logdir() == str(tmp_path / name)
        w.add_scalar("x", 1.0)
        w.close()
    assert not (tmp_path / "ignored").exists()
    assert isinstance(b.logdir, os.PathLike)  # kept as given, as in tensorboardX
    a.logdir = str(tmp_path / "moved")
    assert a.log_dir == str(tmp_path / "moved")

    # The default directory: runs/<MonDD_HH-MM-SS>_<host><comment>, as tensorboardX names it.
    monkeypatch.chdir(tmp_path)
    theirs = tensorboardX.SummaryWriter(comment="_lr0.1")
    ours = SummaryWriter(comment="_lr0.1")
    pattern = r"runs/[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_" + re.escape(socket.gethostname()) + "_lr0.1"
    assert re.fullmatch(pattern, theirs.logdir) and re.fullmatch(pattern, ours.logdir)
    theirs.close()
    ours.close()
    assert os.path.isdir(ours.logdir)


def test_write_to_disk_false_writes_nothing(tmp_path):
    def calls(w):
        w.add_scalar("a", 1.0)
        w.add_scalar("b", 1.0, display_name="B")
        w.add_scalars("m", {"x": 1.0}, 1)
        w.add_image("i", D["img"])
        w.add_text("t", "x")
        w.add_audio("a", D["mono"])
        with w.use_metadata(global_step=3):
            w.add_scalar("c", 2.0)
        w.flush()
        if isinstance(w, SummaryWriter):
            assert w.get_logdir() == w.logdir
            assert w.stats()["records"] == 0

    theirs, ours, _ = run_both(tmp_path, calls, write_to_disk=False)
    assert not os.path.exists(theirs) and not os.path.exists(ours)
    # Bad input still raises, as tensorboardX's dummy writer sees the record built first.
    w = SummaryWriter(str(tmp_path / "none"), write_to_disk=False, anything="ignored")
    with pytest.raises(AssertionError):
        w.add_scalar("x", [1.0, 2.0])
    w.close()
    assert not (tmp_path / "none").exists()


def test_reopen_after_close_writes_purge_markers_again(tmp_path):
    # tensorboardX's writer keeps purge_step, so every file it opens hides the same steps.
    w = SummaryWriter(str(tmp_path), purge_step=5)
    w.add_scalar("x", 1.0, 5)
    w.close()
    w.close()  # again: nothing
    w.add_scalar("x", 2.0, 6)
    w.close()
    files = list(read_tree(str(tmp_path)).values())
    assert len(files) == 2
    for events in files:
        assert [e.step for e in events[:3]] == [0, 5, 5]
        assert events[1].file_version and events[2].session_log.status == 1


def test_a_closed_file_writer_drops_records_until_reopened(tmp_path):
    # tensorboardX's closed FileWriter ignores what it is given (fasttb raised "Writer is
    # closed"); reopen() makes it write again, which tensorboardX's own reopen cannot do.
    def calls(w):
        w.add_scalar("before", 1.0, 0)
        w._get_file_writer().close()
        w.add_scalar("dropped", 2.0, 1)
        w.add_text("dropped_text", "x", 1)
        w.add_histogram("dropped_histogram", np.arange(4.0), 1)
        w.flush()

    theirs, ours, _ = run_both(tmp_path, calls)
    assert_same_tbx_runs(theirs, ours)
    w = SummaryWriter(str(tmp_path / "reopened"))
    w._get_file_writer().close()
    w.add_scalar("dropped", 1.0, 1)
    w._get_file_writer().reopen()
    w.add_scalar("kept", 2.0, 2)
    w.close()
    tags = [v.tag for events in read_tree(str(tmp_path / "reopened")).values() for e in events
            for v in e.summary.value]
    assert tags == ["kept"]


@pytest.mark.parametrize("purge_step", [1.5, "3", True, 3.0])
def test_purge_step_that_is_no_integer_is_refused(tmp_path, purge_step):
    theirs = raised(lambda: tensorboardX.SummaryWriter(str(tmp_path / "tbx"), purge_step=purge_step))
    ours = raised(lambda: SummaryWriter(str(tmp_path / "ours"), purge_step=purge_step))
    assert isinstance(ours, type(theirs)) and "purge_step" in str(ours)
    SummaryWriter(str(tmp_path / "np"), purge_step=np.int64(3)).close()  # as tensorboardX takes it


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**400])
def test_ints_beyond_numpy_integers_are_refused(tmp_path, value):
    # numpy holds such an int as an object, which tensorboardX's isnan() refuses; the native
    # add_scalar took them as floats.
    def calls(w):
        w.add_scalar("before", 1.0, 0)
        w.add_scalar("big", 2**64 - 1, 1)  # uint64: logged
        return raised(lambda: w.add_scalar("big", value, 2))

    errors = []
    theirs, ours, _ = run_both(tmp_path, lambda w: errors.append(calls(w)))
    assert isinstance(errors[1], type(errors[0])) and "scalar_value" in str(errors[1])
    assert_same_tbx_runs(theirs, ours)


def test_comet_and_unknown_arguments(tmp_path):
    for config in ({"disabled": True}, None):
        SummaryWriter(str(tmp_path / "ok"), comet_config=config).close()
    # tensorboardX raises (a plain Exception) once comet is enabled without comet_ml installed;
    # fasttb never logs to comet and says so when the writer is made.
    theirs = raised(lambda: tensorboardX.SummaryWriter(str(tmp_path / "x"), comet_config={"disabled": False})
                    .add_scalar("a", 1.0))
    ours = raised(lambda: SummaryWriter(str(tmp_path / "f"), comet_config={"disabled": False}))
    assert isinstance(ours, type(theirs)) and isinstance(ours, NotImplementedError)
    assert "comet" in str(ours)
    with pytest.raises(NotImplementedError, match="comet_config"):
        SummaryWriter(str(tmp_path / "f"), comet_config={})
    theirs = raised(lambda: tensorboardX.SummaryWriter(str(tmp_path / "x2"), foo=1))
    ours = raised(lambda: SummaryWriter(str(tmp_path / "f2"), foo=1))
    assert type(theirs) is type(ours) is TypeError and "foo" in str(ours)
    with pytest.raises(NotImplementedError, match="logdir"):
        SummaryWriter("s3://bucket/run")
    with pytest.raises(ValueError, match="on_full"):
        SummaryWriter(str(tmp_path / "f3"), on_full="sometimes")
    w = SummaryWriter(str(tmp_path / "f4"), on_full="drop")  # fasttb's keyword passes through
    w.add_scalar("a", 1.0)
    w.close()


# -- scalars ---------------------------------------------------------------------------------------


def test_add_scalars_layout_and_export_scalars_to_json(tmp_path):
    def calls(w):
        w.add_scalars("run/14h", {"xsinx": 1.0, "x cos": np.float32(0.5)}, 1, walltime=1_700_000_000.25)
        w.add_scalars("run/14h", {"xsinx": [2.0]}, None, walltime=1_700_000_001)
        w.export_scalars_to_json(os.path.join(w.logdir, "..", os.path.basename(w.logdir) + ".json"))
        assert w.scalar_dict == {}
        w.add_scalars("again", {"a": 1}, 3)
        assert list(w.scalar_dict) == [os.path.join(str(w.logdir), "again", "a")]

    theirs, ours, _ = run_both(tmp_path, calls)
    runs = assert_same_tbx_runs(theirs, ours)
    # Nested directories, not torch's "<main_tag with / as _>_<key>".
    assert sorted(runs) == [".", "again/a", "run/14h/x cos", "run/14h/xsinx"]
    assert os.path.isdir(os.path.join(ours, "run", "14h", "xsinx"))
    with open(theirs + ".json") as f, open(ours + ".json") as g:
        a, b = f.read(), g.read()
    assert b.replace(ours, theirs) == a
    assert json.loads(b)[os.path.join(ours, "run/14h", "xsinx")] == [[1_700_000_000.25, 1, 1.0],
                                                                     [1_700_000_001, None, 2.0]]
    # A numpy step is kept as given, so JSON refuses it in both.
    for cls, d in ((tensorboardX.SummaryWriter, theirs), (SummaryWriter, ours)):
        w = cls(d + "_np")
        w.add_scalars("m", {"a": 1.0}, np.int64(1))
        with pytest.raises(TypeError):
            w.export_scalars_to_json(d + "_np.json")
        w.close()


def test_native_fast_path_and_its_fallbacks(tmp_path):
    general = []

    class Counting(SummaryWriter):
        def _add_scalar(self, *args, **kwargs):
            general.append(args)
            return super()._add_scalar(*args, **kwargs)

    w = Counting(str(tmp_path))
    w.add_scalar("loss", 1.0, 1)
    w.add_scalar("needs cleaning", 2.0, 2, None)  # cleaned in Python, queued natively
    w.add_scalar("loss", 3, True, 1_700_000_000.5)
    assert general == []
    w.add_scalar("loss", 1.0, np.int64(4))  # not plain: the Python path
    w.add_scalar("loss", 1.0, 5, display_name="L")
    assert len(general) == 2
    with w.use_metadata(global_step=9):
        w.add_scalar("meta", 1.0)  # the default step needs the Python path
        assert len(general) == 3
    w.add_scalar("loss", 1.0, 6)
    assert len(general) == 3  # native again
    w.close()
    w.add_scalar("loss", 1.0, 7)  # reopens through the Python path
    w.add_scalar("loss", 1.0, 8)
    assert len(general) == 4
    w.close()
    events = [e for evs in read_tree(str(tmp_path)).values() for e in evs if e.summary.value]
    assert [(e.summary.value[0].tag, e.step) for e in events] == [
        ("loss", 1), ("needs_cleaning", 2), ("loss", 1), ("loss", 4), ("loss", 5), ("meta", 9), ("loss", 6),
        ("loss", 7), ("loss", 8)]
    assert fasttb.SummaryWriter.add_scalar is fasttb._core.add_scalar  # torch's dialect untouched


def test_tag_rewriting():
    assert ftx.clean_tag("a b/c%d.e-f_g") == "a_b/c_d.e-f_g"
    assert ftx.clean_tag("//lead") == "lead"
    assert ftx.clean_tag("é/中") == "é/中"
    assert ftx.clean_tag(None) == ""
    with pytest.raises(TypeError, match="tag"):
        ftx.clean_tag(b"x")


# -- hyperparameters -------------------------------------------------------------------------------


def test_add_hparams_default_name_and_closed_writer(tmp_path):
    theirs = tensorboardX.SummaryWriter(str(tmp_path / "tbx"))
    theirs.close()
    # tensorboardX fails after close(); fasttb logs the run without opening the main file again.
    assert isinstance(raised(lambda: theirs.add_hparams({"a": 1}, {"m": 0.5})), AttributeError)
    w = SummaryWriter(str(tmp_path / "ours"))
    w.add_hparams({"a": 1}, {"m": 0.5})
    w.close()
    w.add_hparams({"b": "x"}, {"m": 1.0}, name="after close", global_step=4)
    w.close()
    runs = sorted(os.path.relpath(os.path.dirname(p), tmp_path / "ours") for p in read_tree(str(tmp_path / "ours")))
    assert len(runs) == 3 and runs[0] == "." and runs[2] == "after close"
    assert float(runs[1]) > 1e9  # named after time.time()


# -- images, audio, video --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64", "bool", "uint8", "nan"])
def test_image_scaling_without_clipping(tmp_path, dtype):
    if dtype == "nan":
        img = D["img"].copy()
        img[0, 0, :3] = [np.nan, np.inf, -np.inf]
    elif dtype == "int64":
        img = RNG.integers(-2, 3, (3, 4, 5))
    elif dtype == "bool":
        img = RNG.integers(0, 2, (3, 4, 5)).astype(bool)
    elif dtype == "uint8":
        img = RNG.integers(0, 256, (3, 4, 5)).astype(np.uint8)
    else:
        img = (D["img"] * 1.5).astype(dtype)
    runs = same_records(tmp_path, lambda w: [w.add_image("i", img, 1), w.add_images("b", img[None], 1),
                                             w.add_video("v", img[None, None, :1], 1)])
    assert len(runs["."]) == 4


def test_videos_with_alpha_and_repeated_frames(tmp_path):
    # tensorboardX (through moviepy) drops alpha, keeps the channel count as the colorspace and
    # merges a frame that repeats the one before; fasttb refused C = 2 and 4, and kept repeats.
    frames = (RNG.integers(0, 4, (2, 4, 5, 6, 5)) * 64).astype(np.uint8)
    repeated = frames[:, [0, 0, 1, 1, 1, 2, 3]]
    runs = same_records(tmp_path, lambda w: [w.add_video(f"c{c}", repeated[:, :, :c], 1) for c in (2, 3, 4, 5)])
    assert [v.image.colorspace for e in runs["."] for v in e.summary.value] == [2, 3, 4, 5]


def test_pcm_samples_match_soundfile():
    soundfile = pytest.importorskip("soundfile")
    x = np.concatenate([RNG.uniform(-1, 1, 20000), np.arange(-32768, 32769) / 32768,
                        (np.arange(-1024, 1025) + 0.5) / 1024, [1.0, -1.0, 0.0, -0.0, np.nan, 5.0, -5.0]])
    for samples in (x, x.astype(np.float32), (x[:-3] * 32767).astype(np.int16),
                    (x[:-3] * 2**31 - 0.5).clip(-2**31, 2**31 - 1).astype(np.int32)):
        with io.BytesIO() as f:
            soundfile.write(f, samples, samplerate=8000, format="wav")
            expected = f.getvalue()
        assert ftx._wav(ftx._pcm16(samples), 8000, 1) == expected, samples.dtype
    stereo = x[:1000].reshape(500, 2)
    with io.BytesIO() as f:
        soundfile.write(f, stereo, samplerate=44100, format="wav")
        assert ftx._wav(ftx._pcm16(stereo), 44100, 2) == f.getvalue()


# -- graphs ----------------------------------------------------------------------------------------


def test_graphs(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from every_kind import onnx_model

    onnx_path = str(tmp_path / "m.onnx")
    onnx_model(onnx_path, tensor_attribute=False)
    xml_path = tmp_path / "m.xml"
    xml_path.write_text(textwrap.dedent("""\
        <?xml version="1.0"?>
        <net name="m" version="10">
          <layers>
            <layer id="0" name="input" type="Parameter"/>
            <layer id="1" name="conv" type="Convolution"/>
            <layer id="2" name="out" type="Result"/>
          </layers>
          <edges>
            <edge from-layer="0" from-port="0" to-layer="1" to-port="0"/>
            <edge from-layer="1" from-port="1" to-layer="2" to-port="0"/>
          </edges>
        </net>
        """))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())

    def calls(w):
        with contextlib.redirect_stdout(io.StringIO()):  # both print the ONNX node names
            w.add_graph(model, torch.zeros(1, 3))
            w.add_onnx_graph(onnx_path)
            w.add_openvino_graph(str(xml_path))
            with w.use_metadata(global_step=4):
                w.add_openvino_graph(str(xml_path))

    runs = same_records(tmp_path, calls)
    events = runs["."]
    assert events[2].tagged_run_metadata.tag == "profiler"  # torch's writer says "step1"
    assert [e.step for e in events if e.graph_def] == [0, 0, 0, 4]


# -- use_metadata ----------------------------------------------------------------------------------


def test_use_metadata(tmp_path):
    def calls(w):
        with w.use_metadata(walltime=1_600_000_000.5):
            w.add_scalar("a", 1.0, 1)
            w.add_text("t", "x", 2)
            w.add_pr_curve_raw("p", [1], [0], [0], [0], [1.0], [1.0], 3)
        with w.use_metadata(global_step=5, walltime=1_600_000_001):
            w.add_histogram_raw("h", 0, 1, 1, 1, 1, [1], [1])
            w.add_mesh("m", D["vertices"])
        with w.use_metadata(global_step=1):
            with pytest.raises(AssertionError, match="already"):
                with w.use_metadata(global_step=2):
                    pass

    theirs, ours, _ = run_both(tmp_path, calls)
    runs = assert_same_tbx_runs(theirs, ours)
    times = {(v.tag, e.step): e.wall_time for e in runs["."] for v in e.summary.value}
    assert times == {("a", 1): 1_600_000_000.5, ("t/text_summary", 2): 1_600_000_000.5, ("p", 3): 1_600_000_000.5,
                     ("h", 5): 1_600_000_001, ("m_1", 5): 1_600_000_001}
    w = SummaryWriter(str(tmp_path / "again"))
    with pytest.raises(AssertionError, match="global_step or walltime"):
        with w.use_metadata():
            pass
    with pytest.raises(KeyError):  # an error inside the block ends it (tensorboardX's stays set)
        with w.use_metadata(global_step=3):
            raise KeyError
    with w.use_metadata(global_step=4):
        w.add_scalar("x", 1.0)
    w.close()
    (x,) = [e for evs in read_tree(str(tmp_path / "again")).values() for e in evs if e.summary.value]
    assert x.step == 4 and x.wall_time > 1.6e9  # tensorboardX leaves wall_time 0 here


# -- bad input -------------------------------------------------------------------------------------

_IMG = np.zeros((3, 4, 4))

# (call, the argument the message must name)
BAD_CALLS = {
    "scalar None": (lambda w: w.add_scalar("t", None), "scalar_value"),
    "scalar tuple": (lambda w: w.add_scalar("t", (1.0,)), "scalar_value"),
    "scalar two values": (lambda w: w.add_scalar("t", [1.0, 2.0]), "scalar_value"),
    "scalar numeric str": (lambda w: w.add_scalar("t", "1.5"), "scalar_value"),
    "scalar complex": (lambda w: w.add_scalar("t", 1 + 2j), "scalar_value"),
    "scalar tag int": (lambda w: w.add_scalar(5, 1.0), "tag"),
    "scalar tag bytes": (lambda w: w.add_scalar(b"t", 1.0), "tag"),
    "scalar step": (lambda w: w.add_scalar("t", 1.0, "x"), "global_step"),
    "scalar walltime": (lambda w: w.add_scalar("t", 1.0, 1, "x"), "walltime"),
    "scalar display_name": (lambda w: w.add_scalar("t", 1.0, display_name=5), "display_name"),
    "scalars list": (lambda w: w.add_scalars("m", [1]), "tag_scalar_dict"),
    "scalars value": (lambda w: w.add_scalars("m", {"a": None}), "tag_scalar_dict"),
    "scalars main_tag": (lambda w: w.add_scalars(5, {"a": 1}), "main_tag"),
    "hparams list": (lambda w: w.add_hparams([], {}), "hparam_dict"),
    "hparams metric": (lambda w: w.add_hparams({"a": 1}, {"m": None}, name="z"), "metric_dict"),
    "histogram empty": (lambda w: w.add_histogram("h", []), "no element"),
    "histogram None": (lambda w: w.add_histogram("h", None), "values"),
    "histogram text": (lambda w: w.add_histogram("h", np.array(["a"])), "values"),
    "histogram_raw lengths": (lambda w: w.add_histogram_raw("h", 0, 1, 1, 1, 1, [1, 2], [1]), "bucket_limits"),
    "image layout": (lambda w: w.add_image("i", np.zeros((3, 4))), "img_tensor"),
    "image None": (lambda w: w.add_image("i", None), "img_tensor"),
    "image dataformats": (lambda w: w.add_image("i", _IMG, dataformats="CCW"), "dataformats"),
    "images ragged list": (lambda w: w.add_images("i", [_IMG, np.zeros((3, 5, 5))], dataformats="CHW"),
                           "img_tensor"),
    "images empty batch": (lambda w: w.add_images("i", np.zeros((0, 3, 4, 4))), "img_tensor"),
    "images two channels": (lambda w: w.add_images("i", np.zeros((2, 2, 4, 4))), "img_tensor"),
    "boxes keyword": (lambda w: w.add_image_with_boxes("b", _IMG, np.zeros((1, 4)), foo=1), "foo"),
    "audio channels": (lambda w: w.add_audio("a", np.zeros((10, 3))), "snd_tensor"),
    "audio dtype": (lambda w: w.add_audio("a", np.zeros(10, dtype=np.int64)), "snd_tensor"),
    "audio sample_rate": (lambda w: w.add_audio("a", np.zeros(10), sample_rate=44100.0), "sample_rate"),
    "audio dimensions": (lambda w: w.add_audio("a", np.zeros((10, 1, 1))), "snd_tensor"),
    "audio empty": (lambda w: w.add_audio("a", np.zeros(0)), "snd_tensor"),
    "video dimensions": (lambda w: w.add_video("v", np.zeros((2, 3, 4))), "vid_tensor"),
    "video dataformats": (lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), dataformats="NTCH"),
                          "dataformats"),
    "video fps": (lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps=0), "fps"),
    "video empty batch": (lambda w: w.add_video("v", np.zeros((0, 2, 3, 4, 4))), "vid_tensor"),
    "text int": (lambda w: w.add_text("t", 5), "text_string"),
    "text tag None": (lambda w: w.add_text(None, "x"), "tag"),
    "pr_curve shapes": (lambda w: w.add_pr_curve("p", np.array([0, 1]), np.array([0.5])), "labels"),
    "pr_curve None": (lambda w: w.add_pr_curve("p", None, np.array([0.5])), "labels"),
    "custom_scalars list": (lambda w: w.add_custom_scalars([1]), "layout"),
    "custom_scalars None chart": (lambda w: w.add_custom_scalars({"c": {"x": None}}), "layout"),
    "custom_scalars short chart": (lambda w: w.add_custom_scalars({"c": {"x": ["Multiline"]}}), "layout"),
    "marginchart tags": (lambda w: w.add_custom_scalars_marginchart(["a"]), "tags"),
    "mesh dimensions": (lambda w: w.add_mesh("m", np.zeros((4, 3))), "vertices"),
    "mesh colors": (lambda w: w.add_mesh("m", np.zeros((1, 4, 3)), colors=object()), "colors"),
    "embedding labels": (lambda w: w.add_embedding(np.zeros((3, 2)), metadata=["a"]), "metadata"),
    "embedding mat": (lambda w: w.add_embedding(np.zeros(3), global_step=11), "mat"),
    "embedding square": (lambda w: w.add_embedding(np.zeros((2, 2)), label_img=np.zeros((2, 3, 4, 5)),
                                                   global_step=12), "label_img"),
    "embedding header": (lambda w: w.add_embedding(np.zeros((2, 2)), metadata=[["a"], ["b"]],
                                                   metadata_header=["x", "y"], global_step=13), "metadata_header"),
    "embedding tag": (lambda w: w.add_embedding(np.zeros((2, 2)), tag=None, global_step=14), "tag"),
    "use_metadata empty": (lambda w: w.use_metadata().__enter__(), "global_step"),
    "summary of bytes": (lambda w: w.file_writer.add_summary(b"abc"), "summary"),
    "onnx file": (lambda w: w.add_onnx_graph("/nonexistent.onnx"), "nonexistent"),
    "openvino file": (lambda w: w.add_openvino_graph("/nonexistent.xml"), "nonexistent"),
}


def test_bad_input_raises_what_tensorboardx_raises(tmp_path):
    theirs = tensorboardX.SummaryWriter(str(tmp_path / "tbx"))
    ours = SummaryWriter(str(tmp_path / "fasttb"))
    for name, (call, argument) in BAD_CALLS.items():
        expected = raised(lambda: call(theirs))
        got = raised(lambda: call(ours))
        assert isinstance(got, type(expected)), f"{name}: {got!r} is not a {type(expected).__name__}"
        assert argument in str(got), f"{name}: {got!r} does not name {argument}"
    theirs.close()
    ours.close()


# -- the combined class, signatures, dependencies --------------------------------------------------


class Patched(SummaryWriter, tensorboardX.SummaryWriter):
    """What a patch of tensorboardX makes: isinstance checks against tensorboardX's class hold."""


def test_combined_class_logs_like_tensorboardx(tmp_path):
    for name, attribute in vars(tensorboardX.SummaryWriter).items():
        if callable(attribute) or isinstance(attribute, (staticmethod, property)):
            owner = next(c for c in Patched.__mro__ if name in vars(c))
            assert owner is not tensorboardX.SummaryWriter, f"{name} falls through to tensorboardX"
    theirs = str(tmp_path / "tbx" / "run")
    ours = str(tmp_path / "fasttb" / "run")
    w = tensorboardX.SummaryWriter(theirs)
    p = Patched(ours)
    assert isinstance(p, tensorboardX.SummaryWriter) and isinstance(p, fasttb.SummaryWriter)
    for writer in (w, p):
        with warnings_ignored(), contextlib.redirect_stdout(io.StringIO()):
            scenario(writer)
        writer.close()
    assert_same_tbx_runs(theirs, ours)


@contextlib.contextmanager
def warnings_ignored():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def test_signatures_are_tensorboardx(tmp_path):
    public = [n for n, a in vars(tensorboardX.SummaryWriter).items()
              if callable(a) and (not n.startswith("_") or n in ("__init__", "__enter__", "__exit__"))]
    assert len(public) > 25
    for name in public:
        theirs = inspect.signature(getattr(tensorboardX.SummaryWriter, name))
        ours = inspect.signature(getattr(SummaryWriter, name))
        assert [(p.name, p.kind) for p in ours.parameters.values()][1:] == \
               [(p.name, p.kind) for p in theirs.parameters.values()][1:], name
        for p in theirs.parameters.values():
            if p.default is not inspect.Parameter.empty:
                assert ours.parameters[p.name].default == p.default, (name, p.name)
    w = SummaryWriter(str(tmp_path))
    assert not hasattr(w, "add_tensor") and not hasattr(tensorboardX.SummaryWriter, "add_tensor")
    assert w.default_bins == tensorboardX.SummaryWriter(str(tmp_path / "x"), write_to_disk=False).default_bins
    w.close()


def test_custom_default_bins(tmp_path):
    def calls(w):
        w.default_bins = [-1.0, 0.0, 0.5, 1.0, 2.0]
        w.add_histogram("h", D["hist"].clip(-1, 2), 1)

    same_records(tmp_path, calls)


def test_works_with_numpy_and_protobuf_only(tmp_path):
    logdir = str(tmp_path)
    run_child(f"""
        import sys
        for name in ("torch", "tensorboardX", "tensorboard", "PIL", "matplotlib", "soundfile", "moviepy",
                     "onnx", "imageio"):
            sys.modules[name] = None  # importing them fails
        import numpy as np
        from fasttb.tensorboardX import SummaryWriter
        with SummaryWriter({logdir!r}) as w:
            w.add_scalar("a b", 1.0, 1)
            w.add_scalar("m", [2.0], 1, display_name="M")
            w.add_scalars("s", {{"x": 1.0}}, 1)
            w.add_image("i", np.full((3, 4, 4), 1.5), 1)
            w.add_images("l", [np.zeros((3, 2, 2)), np.ones((3, 2, 2))], 1, dataformats="CHW")
            w.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.array([[1, 1, 5, 5]]), 1)
            w.add_histogram("h", [1.0, 2.0], 1)
            w.add_audio("au", np.zeros((10, 2)), 1)
            w.add_video("v", np.zeros((1, 2, 3, 4, 4)), 1)
            w.add_text("t", "x", 1)
            w.add_pr_curve("p", [0, 1], [0.2, 0.8], 1)
            w.add_mesh("me", np.zeros((1, 3, 3)))
            w.add_hparams({{"lr": 0.1}}, {{"acc": 1.0}}, name="hp")
            w.add_embedding(np.zeros((4, 2)), metadata=list("abcd"), label_img=np.zeros((4, 3, 2, 2)))
            with w.use_metadata(global_step=3):
                w.add_scalar("u", 1.0)
        assert all(sys.modules[n] is None for n in ("torch", "tensorboardX", "PIL", "soundfile"))
        """)
    runs = read_tree(logdir)
    assert len(runs) == 3  # the main run, s/x, hp
    main = [events for path, events in runs.items() if os.path.dirname(path) == logdir][0]
    assert main[0].file_version == "brain.Event:2" and not main[0].HasField("source_metadata")
    assert len([e for e in main if e.summary.value]) == 12


@pytest.mark.parametrize("call", [
    lambda w: w.add_scalar("s", __import__("decimal").Decimal("1.5"), 1),
    lambda w: w.add_scalars("m", {"a": __import__("fractions").Fraction(1, 3)}, 1),
    lambda w: w.add_histogram("h", np.array([None, 1]), 1),
    lambda w: w.add_histogram("h", np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), 1),
], ids=["decimal", "fraction", "none in an array", "dates"])
def test_values_numpy_holds_as_objects_are_refused_as_there(tmp_path, call):
    # tensorboardX looks for NaN in every array, which fails with TypeError on object and date
    # arrays; fasttb's dialect converted them and wrote records (None as NaN, dates as days).
    # (A plain int past 64 bits still goes through add_scalar's native call, as in torch's dialect.)
    import tensorboardX

    for writer in (tensorboardX.SummaryWriter, SummaryWriter):
        w = writer(str(tmp_path / writer.__module__))
        with pytest.raises(TypeError):
            call(w)
        w.close()
    assert not any(e.summary.value for events in read_tree(str(tmp_path / "fasttb.tensorboardX")).values()
                   for e in events)


def test_object_arrays_of_numbers_are_written_as_there(tmp_path):
    # pandas' .values of a frame with mixed columns is an object array of floats and ints;
    # tensorboardX writes it (the sum it checks for NaN is a number), fasttb's dialect refused it.
    import tensorboardX

    def objects(*values):
        return np.array(list(values), dtype=object)

    for writer in (tensorboardX.SummaryWriter, SummaryWriter):
        with writer(str(tmp_path / writer.__module__)) as w:
            w.add_scalar("s", objects(1.5), 1)
            w.add_scalar("i", objects(3), 2)
            w.add_scalars("m", {"a": objects(0.25), "b": objects(7)}, 1)
            w.add_histogram("h", objects(1.0, 2, 3.5, -4), 1)
            w.add_image("img", np.full((3, 2, 2), 0.5, dtype=object), 1)
            w.add_images("imgs", np.full((2, 3, 2, 2), 0.25, dtype=object), 1)
            w.add_pr_curve("pr", objects(1, 0, 1, 1), objects(0.2, 0.4, 0.9, 0.6), 1)
            w.add_video("v", np.full((1, 2, 3, 4, 4), 0.5, dtype=object), 1)
            w.add_mesh("mesh", vertices=np.full((1, 3, 3), 0.5, dtype=object))
            w.add_hparams({"lr": 0.1}, {"acc": objects(0.5)}, name="hp")
    assert_same_runs(str(tmp_path / "tensorboardX.writer"), str(tmp_path / "fasttb.tensorboardX"))
