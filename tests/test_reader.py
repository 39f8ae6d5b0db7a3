"""fasttb.SummaryReader against tbparse: the same logs (written by torch's writer, tensorboardX and
fasttb) give equal DataFrames for every event type, with pivot on and off and every extra column;
corrupt and truncated files never crash it and give the documented result; inspect and export."""

import csv
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import run_child
from every_kind import log_every_kind, onnx_model

pd = pytest.importorskip("pandas")
tbparse = pytest.importorskip("tbparse")

from fasttb.reader import CorruptRecordError, CorruptRecordWarning, SummaryReader  # noqa: E402
from fasttb import SummaryWriter  # noqa: E402

import fasttb  # noqa: E402

# tbparse reads images and audio only with TensorFlow, which is not installed here.
TYPES = ["scalars", "tensors", "histograms", "hparams", "text"]
EXTRAS = [set(), {"dir_name"}, {"file_name"}, {"wall_time"}, {"min", "max", "num", "sum", "sum_squares"},
          {"dir_name", "file_name", "wall_time", "min", "max", "num", "sum", "sum_squares", "width", "height",
           "content_type", "length_frames", "sample_rate"}]


def _scalars_and_restarts(make_writer, logdir):
    """Several tags and runs, duplicate steps, a restart with purge_step, new-style scalars."""
    w = make_writer(os.path.join(logdir, "train"))
    for step in range(30):
        w.add_scalar("loss", 1.0 / (step + 1), step)
        w.add_scalar("acc/top1", step / 30.0, step)
        if step % 10 == 0:
            w.add_scalar("loss", -1.0, step)  # a second value at the same step
    w.close()
    w = make_writer(os.path.join(logdir, "train"), purge_step=20)  # a restart: steps >= 20 of the
    for step in range(20, 25):                                      # first file are purged
        w.add_scalar("loss", 10.0 + step, step)
    w.close()
    w = make_writer(os.path.join(logdir, "eval"))
    for step in range(0, 30, 5):
        w.add_scalar("loss", 2.0 + step, step)
        w.add_histogram("weights", np.linspace(-1, 1, 50) * step, step)
        w.add_text("note", f"step {step}", step)
    w.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """{writer name: log dir}, each written by that writer."""
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    root = tmp_path_factory.mktemp("logs")
    model = str(root / "model.onnx")
    onnx_model(model)
    out = {}
    for name, cls in (("torch", TorchWriter), ("fasttb", fasttb.SummaryWriter)):
        logdir = str(root / name)
        with cls(os.path.join(logdir, "kinds")) as w:
            log_every_kind(w, model, tensor=_tensor)
            w.add_scalar("new", 2.5, 3, new_style=True)
        _scalars_and_restarts(lambda d, purge_step=None, cls=cls: cls(d, purge_step=purge_step), logdir)
        out[name] = logdir
    import tensorboardX

    logdir = str(root / "tensorboardX")
    with tensorboardX.SummaryWriter(os.path.join(logdir, "kinds")) as w:
        rng = np.random.default_rng(1)
        w.add_scalar("scalar", 0.5, 1, display_name="Scalar", summary_description="described")
        w.add_scalars("group", {"a": 1.0, "b": 2.0}, 2)
        w.add_histogram("histogram", rng.standard_normal(100), 3)
        w.add_text("text", "hello", 4)
        w.add_pr_curve("pr", rng.integers(0, 2, 100), rng.random(100), 5)
        w.add_hparams({"lr": 0.1, "name": "x", "flag": True}, {"hp/acc": 0.5}, name="hp")
        w.add_mesh("mesh", rng.random((1, 4, 3)), faces=np.array([[[0, 1, 2]]]))
    _scalars_and_restarts(lambda d, purge_step=None: tensorboardX.SummaryWriter(d, purge_step=purge_step), logdir)
    out["tensorboardX"] = logdir
    return out


def _tensor(a):
    import torch

    return torch.as_tensor(a)


@pytest.mark.parametrize("writer", ["torch", "tensorboardX", "fasttb"])
@pytest.mark.parametrize("pivot", [False, True])
def test_dataframes_equal_tbparse(logs, writer, pivot):
    for extra in EXTRAS:
        theirs = tbparse.SummaryReader(logs[writer], pivot=pivot, extra_columns=extra, event_types=set(TYPES))
        ours = SummaryReader(logs[writer], pivot=pivot, extra_columns=extra, event_types=set(TYPES))
        for event_type in TYPES:
            expected = theirs.get_events(event_type)
            with warnings.catch_warnings():  # (pandas 3.1 deprecated inplace=, and warned each read)
                warnings.simplefilter("error")
                got = ours.get_events(event_type)
            pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=f"{event_type} {extra}")
        assert ours.get_tags() == theirs.get_tags()
        assert ours.tags == theirs.tags


def test_properties_and_the_log_tree_match_tbparse(logs):
    theirs = tbparse.SummaryReader(logs["fasttb"])
    ours = SummaryReader(logs["fasttb"], event_types=set(TYPES))
    pd.testing.assert_frame_equal(ours.scalars, theirs.scalars)
    pd.testing.assert_frame_equal(ours.tensors, theirs.tensors)
    pd.testing.assert_frame_equal(ours.histograms, theirs.histograms)
    pd.testing.assert_frame_equal(ours.hparams, theirs.hparams)
    pd.testing.assert_frame_equal(ours.text, theirs.text)
    assert sorted(ours.children) == sorted(theirs.children)
    assert repr(ours["train"]) == repr(theirs["train"])
    # A single file, as tbparse reads one.
    run = os.path.join(logs["fasttb"], "train")
    first = sorted(os.listdir(run))[0]
    pd.testing.assert_frame_equal(SummaryReader(os.path.join(run, first)).scalars,
                                  tbparse.SummaryReader(os.path.join(run, first)).scalars)
    # The restart's values are there; as in tbparse, which reads file by file, the restart
    # (purge_step, in a file of its own) leaves the first file's steps >= 20 in place.
    loss = ours.scalars[ours.scalars.tag == "loss"]
    train_values = set(loss[loss.step >= 20].value)
    assert {30.0, 31.0} <= train_values and float(np.float32(1.0 / 21)) in train_values


def test_out_of_order_steps_purge_as_in_event_accumulator(tmp_path):
    # Files without a file_version use the older rule: a step that goes back purges, for the tags
    # of that event, what came before at that step or later (an empty tag purges every tag).
    from tensorboard.compat.proto import event_pb2, summary_pb2

    path = tmp_path / "events.out.tfevents.0.old"
    records = []

    def event(step, **values):
        value = [summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values.items()]
        records.append(event_pb2.Event(wall_time=step, step=step, summary=summary_pb2.Summary(value=value)))

    for step in range(10):
        event(step, a=step, b=-step)
    event(5, a=50.0)        # purges a >= 5
    event(6, b=60.0)        # purges b >= 6
    event(7, **{"": 70.0})  # empty tag: purges every tag >= 7
    event(20, a=1.0)
    with open(path, "wb") as f:
        for r in records:
            f.write(fasttb._core.frame_record(r.SerializeToString()))
    for pivot in (False, True):
        pd.testing.assert_frame_equal(SummaryReader(str(tmp_path), pivot=pivot).scalars,
                                      tbparse.SummaryReader(str(tmp_path), pivot=pivot).scalars)
    steps = SummaryReader(str(tmp_path)).scalars.groupby("tag").step.apply(list).to_dict()
    assert steps["a"] == [0, 1, 2, 3, 4, 5, 20] and steps["b"] == [0, 1, 2, 3, 4, 5, 6]



@pytest.mark.parametrize("restart", ["session start", "step back"])
def test_restarts_purge_what_event_accumulator_purges(tmp_path, restart):
    # A restart purges scalars, histograms, images and audio at its step or later; EventAccumulator
    # (and so tbparse) keeps tensors, text among them. fasttb purged text and tensors too.
    from tensorboard.compat.proto import event_pb2
    from torch.utils.tensorboard import summary

    records = [] if restart == "step back" else [event_pb2.Event(wall_time=0, file_version="brain.Event:2")]

    def event(step):
        s = summary.text("note", f"at {step}")
        s.value.extend(summary.histogram("h", np.arange(step + 3.0), 4).value)
        s.value.add(tag="loss", simple_value=float(step))
        records.append(event_pb2.Event(wall_time=1 + step, step=step, summary=s))

    for step in range(6):
        event(step)
    if restart == "session start":
        records.append(event_pb2.Event(wall_time=10, step=3, session_log=event_pb2.SessionLog(
            status=event_pb2.SessionLog.START)))
    else:
        event(2)  # without a file_version, a step that goes back purges that step and later
    with open(tmp_path / "events.out.tfevents.0.host", "wb") as f:
        for r in records:
            f.write(fasttb._core.frame_record(r.SerializeToString()))
    kinds = ["scalars", "histograms", "text", "tensors"]  # (tbparse keeps one text row without tensors)
    ours = SummaryReader(str(tmp_path), event_types=set(kinds))
    theirs = tbparse.SummaryReader(str(tmp_path), event_types=set(kinds))
    for kind in kinds:
        pd.testing.assert_frame_equal(getattr(ours, kind), getattr(theirs, kind))
    assert list(ours.scalars.step) == list(ours.histograms.step) == [0, 1, 2]
    assert list(ours.text.step) == ([0, 1, 2, 3, 4, 5] if restart == "session start" else [0, 1, 2, 2, 3, 4, 5])


def test_many_text_tags(tmp_path):
    # 4000 text tags: each tag's rows were found by scanning every row (and every tag), so
    # this took 1.3 s for 5000 tags and 27 s for 20,000; it is now a grouping made once.
    with fasttb.SummaryWriter(str(tmp_path)) as w:
        for i in range(4000):
            w.add_text(f"t{i}", f"v{i}", i % 3)
    types = {"text", "tensors"}
    ours = SummaryReader(str(tmp_path), event_types=types).text
    pd.testing.assert_frame_equal(ours, tbparse.SummaryReader(str(tmp_path), event_types=types).text)
    assert len(ours) == 4000

def test_images_and_audio_decoded(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (3, 6, 5), dtype=np.uint8)
    sound = np.sin(np.linspace(0, 20, 800)).astype(np.float32) * 0.5
    with fasttb.SummaryWriter(str(tmp_path)) as w:
        w.add_image("im", image, 1)
        w.add_image("im", image[:, ::-1], 2)
        w.add_audio("au", sound, 3, sample_rate=8000)
    reader = SummaryReader(str(tmp_path), extra_columns={"width", "height", "sample_rate", "length_frames",
                                                        "content_type"})
    images = reader.images
    assert list(images.columns) == ["step", "tag", "value", "height", "width"]
    assert (images.value[0] == image.transpose(1, 2, 0)).all() and (images.value[1] == image[:, ::-1].transpose(1, 2, 0)).all()
    assert list(images.height) == [6, 6] and list(images.width) == [5, 5]
    audio = reader.audio
    expected = np.round(np.clip(sound, -1, 1) * 32767).astype(np.int16) / 32768.0
    assert audio.value[0].shape == (800, 1) and np.allclose(audio.value[0][:, 0], expected, atol=1 / 32768)
    assert audio.sample_rate[0] == 8000 and audio.length_frames[0] == 800
    assert audio.content_type[0] == "audio/wav"
    assert reader.get_tags("images") == ["im"] and reader.get_tags("audio") == ["au"]


def test_bad_arguments_raise_as_tbparse(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        SummaryReader(str(tmp_path / "missing"))
    with pytest.raises(KeyError):
        SummaryReader(str(tmp_path), extra_columns={"nope"})
    with pytest.raises(KeyError):
        SummaryReader(str(tmp_path), event_types={"nope"})
    for not_a_set in (["wall_time"], ("wall_time",), "wall_time"):  # (tuples and str: AttributeError)
        with pytest.raises(ValueError, match="extra_columns: expected a set"):
            SummaryReader(str(tmp_path), extra_columns=not_a_set)
        with pytest.raises(ValueError, match="event_types: expected a set"):
            SummaryReader(str(tmp_path), event_types=not_a_set)
    reader = SummaryReader(str(tmp_path), event_types={"scalars"})
    with pytest.raises(ValueError, match="ignored"):
        reader.get_events("text")
    with pytest.raises(ValueError, match="Unknown"):
        reader.get_events("nope")
    assert reader.scalars.empty


def _small_file(tmp_path):
    path = str(tmp_path / "events.out.tfevents.1.small")
    w = fasttb.FileWriter(str(tmp_path))
    w.close()
    os.remove(w.path)
    with fasttb.SummaryWriter(str(tmp_path), filename_suffix=".small") as sw:
        for step in range(3):
            sw.add_scalar("x", float(step), step)
        path = sw.file_writer.path
    with open(path, "rb") as f:
        data = f.read()
    return path, data


def _record_starts(data):
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + int.from_bytes(data[pos:pos + 8], "little")
    return starts


def test_every_cut_and_every_flipped_byte(tmp_path):
    path, data = _small_file(tmp_path)
    starts = _record_starts(data)
    # Cuts: the records that are whole are read, the cut one is left out without an error.
    # Flips: the record holding the flipped byte raises, naming the file and its first byte;
    # with skip_corrupt the others are read.
    result = run_child(f"""
        import json, os, warnings
        from fasttb.reader import read_event_file, CorruptRecordError
        data = open({path!r}, "rb").read()
        starts = {starts!r}
        cut_path = {str(tmp_path / "cut" / "events.out.tfevents.cut")!r}
        os.makedirs(os.path.dirname(cut_path), exist_ok=True)
        out = {{"cuts": [], "flips": [], "skips": []}}
        for n in range(len(data)):
            open(cut_path, "wb").write(data[:n])
            f = read_event_file(cut_path)
            out["cuts"].append([f.events, f.truncated_at, list(map(float, f.scalar_value))])
        for i in range(len(data)):
            for bit in (0, 7):
                flipped = bytearray(data)
                flipped[i] ^= 1 << bit
                open(cut_path, "wb").write(flipped)
                try:
                    read_event_file(cut_path)
                    out["flips"].append(None)
                except CorruptRecordError as e:
                    out["flips"].append([e.offset, e.path == cut_path, str(e)])
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    f = read_event_file(cut_path, skip_corrupt=True)
                out["skips"].append([f.events, f.skipped, len(caught)])
        print(json.dumps(out))
    """, timeout=300)
    import json

    out = json.loads(result.stdout)
    for n, (events, truncated_at, values) in enumerate(out["cuts"]):
        whole = [s for s in starts + [len(data)] if s <= n]
        complete = len(whole) - 1 if n < len(data) else len(starts)
        assert events == complete, n
        assert truncated_at == (None if n in starts + [len(data)] else whole[-1]), n
        assert values == [0.0, 1.0, 2.0][:max(0, complete - 1)], n
    for k, flip in enumerate(out["flips"]):
        i = k // 2
        record = max(s for s in starts if s <= i)
        assert flip is not None and flip[1], i
        assert flip[0] == record, (i, flip)
        assert f"byte {record}" in flip[2] and "CRC32C" in flip[2] or "not a valid Event" in flip[2]
    for k, (events, skipped, warned) in enumerate(out["skips"]):
        i = k // 2
        record = max(s for s in starts if s <= i)
        assert skipped[0] == record and warned == len(skipped), i
        assert events >= len(starts) - 1 - (1 if i < 12 else 0), i  # a bad length may hide one more


def test_corrupt_record_through_the_reader(tmp_path):
    path, data = _small_file(tmp_path)
    starts = _record_starts(data)
    bad = bytearray(data)
    bad[starts[2] + 14] ^= 0xFF  # inside the data of the third record (the second scalar)
    with open(path, "wb") as f:
        f.write(bad)
    with pytest.raises(CorruptRecordError, match=f"byte {starts[2]}") as info:
        SummaryReader(str(tmp_path))
    assert info.value.path == path and info.value.offset == starts[2]
    with pytest.warns(CorruptRecordWarning, match=f"byte {starts[2]}"):
        reader = SummaryReader(str(tmp_path), skip_corrupt=True)
    assert list(reader.scalars.value) == [0.0, 2.0]



def test_a_file_cut_short_or_replaced_after_the_read_raises_instead_of_crashing(tmp_path):
    # Histograms, images and text are decoded when asked for, from the file read again: one
    # truncated in place meanwhile (tensorboardX reopening in the same second, a rerun) ended the
    # process with SIGBUS at .histograms when it was mapped. Cut short or replaced, it raises.
    result = run_child(f"""
        import os, numpy as np, fasttb
        from fasttb.reader import SummaryReader
        for how in ("replaced", "truncated"):
            d = os.path.join({str(tmp_path)!r}, how)
            with fasttb.SummaryWriter(d) as w:
                for s in range(300):
                    w.add_histogram("h", np.arange(1000.0), s)
                    w.add_text("t", "x" * 2000, s)
            path = os.path.join(d, os.listdir(d)[0])
            assert os.path.getsize(path) > 1 << 20
            reader = SummaryReader(d)
            if how == "replaced":
                os.rename(path, path + ".old")
                open(path, "wb").close()
            else:
                open(path, "wb").close()
            try:
                reader.histograms
            except OSError as exc:
                print(how, "OSError", ("replaced" if how == "replaced" else "cut short") in str(exc))
        """)
    assert result.stdout.split("\n")[:2] == ["replaced OSError True", "truncated OSError True"]


def test_a_file_cut_short_while_it_is_scanned_does_not_end_the_process(tmp_path):
    # A file of 1 MiB or more was mapped and scanned in place: cut short during the scan, the
    # scanner touched lost pages and the process died of SIGBUS (5 of 5 runs, 45 MB of scalars).
    result = run_child(f"""
        import os, threading, time
        import fasttb
        from fasttb.reader import SummaryReader
        d = {str(tmp_path)!r}
        with fasttb.SummaryWriter(d) as w:
            for i in range(1_000_000):
                w.add_scalar("loss", float(i), i)
        path = os.path.join(d, os.listdir(d)[0])
        size = os.path.getsize(path)
        threading.Thread(target=lambda: (time.sleep(0.005), os.truncate(path, 1000))).start()
        try:
            rows = len(SummaryReader(d).scalars)
        except OSError as exc:
            rows = str(exc)
        print(size > 30 << 20, rows)
    """, timeout=300)
    assert result.stdout.startswith("True ")


def test_a_reader_of_many_files_holds_neither_their_bytes_nor_descriptors(tmp_path):
    # Every file's bytes (under 1 MiB) or its mapping and a descriptor (1 MiB or more) were kept
    # as long as the reader lived: a sweep of 1000 runs ran out of descriptors (EMFILE at the
    # usual limit of 1024), and a tree of small runs held its whole size in memory.
    small, large = tmp_path / "small.tfevents", tmp_path / "large.tfevents"
    for path, images in ((small, 1), (large, 3)):
        with SummaryWriter(str(tmp_path / path.stem)) as w:
            for step in range(100):
                w.add_scalar("loss", 1.0 / (step + 1), step)
            for step in range(images):
                w.add_image("noise", np.random.default_rng(step).random((3, 300, 300)), step)
        (found,) = [f for f in os.listdir(str(tmp_path / path.stem))]
        os.rename(str(tmp_path / path.stem / found), str(path))
    result = run_child(f"""
        import os, resource, tracemalloc
        from fasttb.reader import SummaryReader
        root = {str(tmp_path)!r}
        sizes = {{}}
        for name, runs in (("small", 60), ("large", 150)):
            source = os.path.join(root, name + ".tfevents")
            sizes[name] = os.path.getsize(source)
            for i in range(runs):
                os.makedirs(os.path.join(root, name, str(i)))
                os.link(source, os.path.join(root, name, str(i), "events.out.tfevents.1.host"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        large = SummaryReader(os.path.join(root, "large"))
        print(len(large.scalars), len(large.images))
        tracemalloc.start()
        small = SummaryReader(os.path.join(root, "small"), event_types={{"scalars"}})
        print(len(small.scalars), tracemalloc.get_traced_memory()[0] < 60 * sizes["small"] / 10)
    """, timeout=300)
    assert result.stdout.split("\n")[:2] == ["15000 450", "6000 True"]


def test_a_tag_that_is_not_utf8_makes_its_record_corrupt(tmp_path):
    # b"o\xff" and b"o\xfe" were both read as "o\ufffd", one series of two tags' values, where
    # protobuf (so tbparse and TensorBoard) refuses a proto3 string that is not UTF-8.
    from tensorboard.compat.proto import event_pb2, summary_pb2

    def record(tag: bytes, step: int) -> bytes:
        value = summary_pb2.Summary.Value(simple_value=float(step)).SerializeToString()
        value = b"\x0a" + bytes([len(tag)]) + tag + value  # field 1 (tag), set by hand
        summary = b"\x0a" + bytes([len(value)]) + value
        event = event_pb2.Event(step=step, wall_time=1.0).SerializeToString()
        return fasttb._core.frame_record(event + b"\x2a" + bytes([len(summary)]) + summary)

    good = record("ok é".encode(), 0)
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(good + record(b"o\xff", 1) + record(b"o\xfe", 2) + record(b"o\xed\xa0\x80", 3))
    with pytest.raises(CorruptRecordError) as caught:
        SummaryReader(str(tmp_path))
    assert caught.value.offset == len(good)
    with pytest.raises(Exception):  # protobuf's DecodeError, through tbparse
        tbparse.SummaryReader(str(tmp_path)).scalars
    with pytest.warns(CorruptRecordWarning):
        scalars = SummaryReader(str(tmp_path), skip_corrupt=True).scalars
    assert list(scalars.tag) == ["ok é"] and list(scalars.step) == [0]

def test_random_bytes_never_crash(tmp_path):
    run_child(f"""
        import numpy as np
        import fasttb._core as core
        rng = np.random.default_rng(0)
        base = open({_small_file(tmp_path)[0]!r}, "rb").read()
        for i in range(3000):
            if i % 2:
                data = rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8).tobytes()
            else:  # a valid file with random bytes spliced in
                at = int(rng.integers(0, len(base)))
                data = base[:at] + rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8).tobytes() + base[at:]
            for skip in (False, True):
                core.scan_events(data, True, True, skip)
    """, timeout=300)


def test_numpy_columns_without_pandas(tmp_path):
    with fasttb.SummaryWriter(str(tmp_path / "a")) as w:
        for step in range(5):
            w.add_scalar("z", step * 2.0, step)
            w.add_scalar("b", step * 3.0, 4 - step)
    result = run_child(f"""
        import sys
        sys.modules["pandas"] = None
        from fasttb.reader import SummaryReader
        c = SummaryReader({str(tmp_path)!r}, extra_columns={{"dir_name", "wall_time"}}).columns()
        print(list(c), c["tag"].tolist(), c["step"].tolist(), c["value"].tolist(), set(c["dir_name"]))
    """)
    assert result.stdout.strip() == ("['step', 'tag', 'value', 'wall_time', 'dir_name'] "
                                     "['b', 'b', 'b', 'b', 'b', 'z', 'z', 'z', 'z', 'z'] "
                                     "[0, 1, 2, 3, 4, 0, 1, 2, 3, 4] "
                                     "[12.0, 9.0, 6.0, 3.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0] {'a'}")


def test_inspect_command(logs, tmp_path):
    result = subprocess.run([sys.executable, "-m", "fasttb", "inspect", logs["fasttb"]], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "run train" in out and "run eval" in out and "CRC OK" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("acc/top1"))
    assert "scalar" in line and "30 values" in line and "steps 0..29" in line
    assert "tensor (text)" in out and "histogram" in out
    # A corrupt file: the verdict names it and the exit status says so.
    path, data = _small_file(tmp_path)
    with open(path, "r+b") as f:
        f.seek(len(data) - 3)
        f.write(b"\x00\x00\x00")
    result = subprocess.run([sys.executable, "-m", "fasttb", "inspect", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "CORRUPT" in result.stdout
    # A file named as it is in the working directory (os.path.relpath raised on its empty dirname).
    # The run's first file: by time, then by the writer's count (numbers: ".100" sorts before ".99"
    # as text, which picked a later file when this process had opened a hundred writers).
    run = os.path.join(logs["fasttb"], "train")
    name = min(os.listdir(run), key=lambda n: (int(n.split(".")[3]), int(n.split(".")[-1])))
    result = subprocess.run([sys.executable, "-m", "fasttb", "inspect", name], capture_output=True, text=True,
                            timeout=120, cwd=run)
    assert result.returncode == 0 and "steps 0..29" in result.stdout, result.stderr


def test_export_csv_and_parquet(logs, tmp_path):
    out = str(tmp_path / "s.csv")
    result = subprocess.run([sys.executable, "-m", "fasttb", "export", logs["torch"], "-o", out, "--tags", "^loss$"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    expected = tbparse.SummaryReader(logs["torch"], extra_columns={"dir_name"}).scalars
    expected = expected[expected.tag == "loss"]
    assert [(r["run"], int(r["step"]), float(r["value"])) for r in rows] == \
        list(zip(expected.dir_name, expected.step, expected.value))
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    out = str(tmp_path / "s.parquet")
    subprocess.run([sys.executable, "-m", "fasttb", "export", logs["torch"], "-o", out, "--format", "parquet"],
                   check=True, capture_output=True, timeout=120)
    table = pq.read_table(out)
    assert table.column_names == ["run", "tag", "step", "value", "wall_time"]
    assert table.num_rows == len(tbparse.SummaryReader(logs["torch"]).scalars)



def test_export_format_follows_the_output_name_unless_given(tmp_path):
    # "-o s.parquet" without --format wrote CSV into a file named .parquet, which pyarrow then
    # refused ("magic bytes not found"). A run folder whose name is no UTF-8 keeps its bytes in
    # CSV and is escaped in Parquet, whose strings are UTF-8 (it failed with "surrogates not
    # allowed").
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = os.fsencode(str(tmp_path / "logs"))
    with fasttb.SummaryWriter(os.fsdecode(os.path.join(root, b"run\xff"))) as w:
        for step in range(3):
            w.add_scalar("loss", step / 2, step)

    def export(*args):
        result = subprocess.run([sys.executable, "-m", "fasttb", "export", os.fsdecode(root), *args],
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr

    for name in ("s.parquet", "s.PQ"):
        export("-o", str(tmp_path / name))
        table = pq.read_table(str(tmp_path / name))
        assert table.column("step").to_pylist() == [0, 1, 2]
        assert table.column("value").to_pylist() == [0.0, 0.5, 1.0]
        assert table.column("run").to_pylist() == ["run\\xff"] * 3
    export("-o", str(tmp_path / "plain.parquet"), "--format", "csv")
    with open(tmp_path / "plain.parquet", "rb") as f:
        rows = f.read().splitlines()
    assert rows[0] == b"run,tag,step,value,wall_time" and rows[1].startswith(b"run\xff,loss,0,0.0,")


def test_pivot_merges_as_tbparse_with_gaps_nan_and_repeated_steps(tmp_path):
    # pivot=True merged every column of every step with a Python call (4.6 s for 100k scalars);
    # numeric columns with at most one value a step now merge in pandas. Both ways must give
    # tbparse's frame: gaps (NaN), NaN values, a tag logged twice at a step (a list), two runs.
    import pandas as pd

    with fasttb.SummaryWriter(str(tmp_path / "one")) as w:
        for step in range(300):
            for tag in ("a", "b", "c"):
                if (step + len(tag)) % 7:
                    w.add_scalar(tag, float("nan") if step % 50 == 0 else step * 0.5, step)
    with fasttb.SummaryWriter(str(tmp_path / "two")) as w:
        for step in range(100):
            w.add_scalar("a", 1.0, step)
            if step % 3 == 0:
                w.add_scalar("a", 2.0, step)
            w.add_scalar("d", -1.0, step)
    for extra in (set(), {"dir_name"}, {"dir_name", "wall_time"}):
        for path in (str(tmp_path), str(tmp_path / "one")):
            pd.testing.assert_frame_equal(SummaryReader(path, pivot=True, extra_columns=extra).scalars,
                                          tbparse.SummaryReader(path, pivot=True, extra_columns=extra).scalars)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    import zlib

    return len(data).to_bytes(4, "big") + kind + data + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big")


def _png(pixels: np.ndarray, colour_type: int, bit_depth: int, extra: bytes = b"") -> bytes:
    """A PNG written by hand (rows unfiltered): ``pixels`` (height, width, samples) of the given
    colour type and bit depth, with ``extra`` chunks (PLTE, tRNS) before the image data."""
    import zlib

    chunk = _png_chunk
    height, width = pixels.shape[:2]
    rows = []
    for row in pixels.reshape(height, -1):
        if bit_depth == 16:
            data = row.astype(">u2").tobytes()
        elif bit_depth == 8:
            data = row.astype(np.uint8).tobytes()
        else:
            data = np.packbits(np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - bit_depth:]).tobytes()
        rows.append(b"\0" + data)
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, colour_type, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def test_pngs_of_every_colour_type_and_depth_decode_as_tensorflow_decodes_them():
    # tbparse decodes images with tf.image.decode_image; decode_image (Pillow) must give the
    # same pixels, shape and dtype for PNGs written by any tool, not only by the stock writers.
    # 16-bit grey and alpha came back as four channels (Pillow opens it as RGBA).
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is installed by .ci/run's last stage")
    from fasttb.reader import decode_image

    rng = np.random.default_rng(11)
    cases = {}
    for depth in (1, 2, 4, 8, 16):
        cases[f"grey {depth}-bit"] = _png(rng.integers(0, 1 << depth, (5, 7, 1)), 0, depth)
    for depth in (8, 16):
        cases[f"RGB {depth}-bit"] = _png(rng.integers(0, 1 << depth, (5, 7, 3)), 2, depth)
        cases[f"grey and alpha {depth}-bit"] = _png(rng.integers(0, 1 << depth, (5, 7, 2)), 4, depth)
        cases[f"RGBA {depth}-bit"] = _png(rng.integers(0, 1 << depth, (5, 7, 4)), 6, depth)

    chunk = _png_chunk
    palette = chunk(b"PLTE", rng.integers(0, 256, 16 * 3).astype(np.uint8).tobytes())
    cases["palette"] = _png(rng.integers(0, 16, (5, 7, 1)), 3, 8, palette)
    cases["palette with alpha"] = _png(rng.integers(0, 16, (5, 7, 1)), 3, 8,
                                       palette + chunk(b"tRNS", bytes(range(0, 160, 10))))
    # A transparent colour of grey or RGB: TensorFlow keeps the channels as they are.
    cases["grey with tRNS"] = _png(rng.integers(0, 256, (5, 7, 1)), 0, 8, chunk(b"tRNS", bytes([0, 7])))
    cases["RGB with tRNS"] = _png(rng.integers(0, 256, (5, 7, 3)), 2, 8, chunk(b"tRNS", bytes([0, 7] * 3)))
    for name, encoded in cases.items():
        theirs = tf.io.decode_image(encoded).numpy()
        ours = decode_image(encoded)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
        assert (ours == theirs).all(), name


def test_images_of_one_bit_and_sixteen_bit_grey_decode_as_tensorflow_decodes_them(tmp_path):
    # Not what torch's writer writes, but summaries built by hand: 1-bit grey came back as
    # booleans, 16-bit grey as three channels clipped to 255. TensorFlow's PNG decoder gives one
    # uint8 channel: 0 or 255, and each sample's high byte.
    import io

    from PIL import Image

    from fasttb.reader import decode_image

    def png(image):
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()

    grey16 = decode_image(png(Image.fromarray(np.array([[1000, 40000, 65535]], dtype=np.uint16))))
    assert grey16.dtype == np.uint8 and grey16.tolist() == [[[3], [156], [255]]]
    bits = decode_image(png(Image.fromarray(np.array([[0, 255, 255]], dtype=np.uint8)).convert("1")))
    assert bits.dtype == np.uint8 and bits.tolist() == [[[0], [255], [255]]]


def test_export_to_standard_output(logs):
    # "-o -" wrote a file named "-", and with -o /dev/stdout the status line ended the CSV as one
    # more row (step then read as float64): the data go to stdout, the status to stderr.
    import io

    import pandas as pd

    expected = tbparse.SummaryReader(logs["torch"], extra_columns={"dir_name"}).scalars
    for fmt in ("csv", "parquet"):
        result = subprocess.run([sys.executable, "-m", "fasttb", "export", logs["torch"], "-o", "-", "--format", fmt],
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert b"scalars written to standard output" in result.stderr
        got = pd.read_csv(io.BytesIO(result.stdout)) if fmt == "csv" else pd.read_parquet(io.BytesIO(result.stdout))
        assert list(got.step) == list(expected.step) and got.step.dtype == np.int64, fmt
        assert list(got.value) == list(expected.value), fmt


def test_export_errors_are_one_line(tmp_path):
    # Bad input ended in a traceback; now one line naming what is wrong, and exit status 2.
    path, data = _small_file(tmp_path)
    with open(path, "r+b") as f:
        f.seek(len(data) - 3)
        f.write(b"\x00\x00\x00")  # the last record's data CRC

    def export(*args):
        return subprocess.run([sys.executable, "-m", "fasttb", "export", *args], capture_output=True, text=True,
                              timeout=120)

    out, clean = str(tmp_path / "out.csv"), str(tmp_path / "clean")
    with fasttb.SummaryWriter(clean) as w:
        w.add_scalar("x", 1.0, 0)
    for args, says in [((str(tmp_path / "missing"), "-o", out), "not found"),
                       ((str(tmp_path), "-o", out, "--tags", "loss("), "--tags: not a regular expression"),
                       ((clean, "-o", str(tmp_path / "no" / "out.csv")), "No such file or directory"),
                       ((str(tmp_path), "-o", out), "--skip-corrupt skips")]:
        result = export(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
    result = export(os.path.dirname(path), "-o", out, "--skip-corrupt")
    assert result.returncode == 0 and "skipped a corrupt record" in result.stderr
    with open(out) as f:  # the corrupt file's records before the corrupt one, and the clean run's
        assert [(r["run"], r["step"]) for r in csv.DictReader(f)] == [("", "0"), ("", "1"), ("clean", "0")]

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="makes a FIFO")
def test_trees_with_links_and_fifos_and_the_inspect_command_errors(tmp_path):
    # A dangling link or a FIFO failed the whole read ("[Errno 2]"), a link to a folder above
    # made the tree endless (until ELOOP), and inspect printed a traceback for every error.
    run = tmp_path / "run"
    with fasttb.SummaryWriter(str(run)) as w:
        for step in range(3):
            w.add_scalar("x", float(step), step)
    os.symlink("/nonexistent", run / "dangling")
    os.mkfifo(str(run / "events.out.tfevents.fifo"))
    os.symlink("..", run / "up")
    os.symlink("run", tmp_path / "same")  # a link to a sibling is a run of its own, as in tbparse
    scalars = SummaryReader(str(tmp_path), extra_columns={"dir_name"}).scalars
    assert sorted(zip(scalars.dir_name, scalars.step)) == [("run", 0), ("run", 1), ("run", 2),
                                                           ("same", 0), ("same", 1), ("same", 2)]
    result = subprocess.run([sys.executable, "-m", "fasttb", "inspect", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("run ")] == ["run run", "run same"]
    for path in ("bogus://x/y", str(tmp_path / "missing")):
        result = subprocess.run([sys.executable, "-m", "fasttb", "inspect", path], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr


def test_sibling_folders_linking_to_each_other_are_read_once(tmp_path):
    # a/l1 -> b and b/l2 -> a: the walk went a, a/l1, a/l1/l2, ... until the path was too long,
    # and the same 3 scalars came back 41 times, as 41 runs.
    with fasttb.SummaryWriter(str(tmp_path / "a")) as w:
        for step in range(3):
            w.add_scalar("x", float(step), step)
    (tmp_path / "b").mkdir()
    os.symlink("../b", tmp_path / "a" / "l1")
    os.symlink("../a", tmp_path / "b" / "l2")
    scalars = SummaryReader(str(tmp_path), extra_columns={"dir_name"}).scalars
    assert sorted(zip(scalars.dir_name, scalars.step)) == [("a", 0), ("a", 1), ("a", 2),
                                                           ("b/l2", 0), ("b/l2", 1), ("b/l2", 2)]


def test_inspect_step_range_of_a_tag_purged_in_one_file(tmp_path):
    # A file whose values of a tag were all purged by a restart counted as steps 0..0.
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    with fasttb.SummaryWriter(str(tmp_path)) as w:
        for step in range(10, 20):
            w.add_scalar("x", float(step), step)
        w._get_file_writer().add_event(Event(step=5, session_log=SessionLog(status=SessionLog.START)))
    with fasttb.SummaryWriter(str(tmp_path)) as w:
        for step in range(20, 30):
            w.add_scalar("x", float(step), step)
    assert list(tbparse.SummaryReader(str(tmp_path)).scalars.step) == list(range(20, 30))
    result = subprocess.run([sys.executable, "-m", "fasttb", "inspect", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("x "))
    assert "10 values, steps 20..29" in line, result.stdout


def test_an_empty_parquet_export_keeps_its_column_types(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = str(tmp_path / "empty.parquet")
    (tmp_path / "logs").mkdir()
    subprocess.run([sys.executable, "-m", "fasttb", "export", str(tmp_path / "logs"), "-o", out, "--format",
                    "parquet"], check=True, capture_output=True, timeout=120)
    schema = pq.read_table(out).schema
    assert [schema.field(n).type for n in ("run", "tag", "step", "value", "wall_time")] == \
        [pa.string(), pa.string(), pa.int64(), pa.float64(), pa.float64()]


def test_remote_log_dir_through_fsspec(logs):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.put(logs["fasttb"], "/readertest/logs", recursive=True)
    try:
        for pivot in (False, True):
            extra = {"dir_name", "file_name", "wall_time"}
            local = SummaryReader(logs["fasttb"], pivot=pivot, extra_columns=extra, event_types=set(TYPES))
            remote = SummaryReader("memory://readertest/logs", pivot=pivot, extra_columns=extra,
                                   event_types=set(TYPES))
            for event_type in TYPES:
                pd.testing.assert_frame_equal(remote.get_events(event_type), local.get_events(event_type))
            assert remote.get_tags() == local.get_tags()
        assert sorted(remote.children) == sorted(local.children)
        with pytest.raises(ValueError, match="not found"):
            SummaryReader("memory://readertest/missing")
    finally:
        fs.rm("/readertest", recursive=True)
    with pytest.raises(ValueError, match="storage_options"):
        SummaryReader(logs["fasttb"], storage_options={"anon": True})


def test_numpy_columns_of_every_type_follow_the_dataframes(logs):
    extra = {"dir_name", "file_name", "wall_time", "min", "max"}
    reader = SummaryReader(logs["torch"], extra_columns=extra, event_types=set(TYPES))
    for event_type in TYPES:
        frame = reader.get_events(event_type)
        columns = reader.columns(event_type)
        assert list(columns) == list(frame.columns), event_type
        for name in columns:
            ours, theirs = list(columns[name]), list(frame[name])
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs):
                if isinstance(a, np.ndarray):
                    assert np.array_equal(a, b)
                else:
                    assert a == b or (a != a and b != b), (event_type, name, a, b)


@pytest.fixture(scope="module")
def media_logs(tmp_path_factory):
    """Images, videos and audio written by torch's writer and by fasttb."""
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(4)
    out = {}
    for name, cls in (("torch", TorchWriter), ("fasttb", fasttb.SummaryWriter)):
        with cls(str(root / name / "run")) as w:
            w.add_image("rgb", rng.integers(0, 256, (3, 9, 7), dtype=np.uint8), 1)
            w.add_image("grey", rng.random((1, 5, 6)), 2)
            w.add_images("batch", rng.integers(0, 256, (3, 3, 4, 5), dtype=np.uint8), 3)
            w.add_audio("clip", np.sin(np.linspace(0, 30, 1000)) * 0.5, 4, sample_rate=16000)
            w.add_scalar("loss", 0.5, 5)
        out[name] = str(root / name)
    return out


@pytest.mark.parametrize("writer", ["torch", "fasttb"])
@pytest.mark.parametrize("pivot", [False, True])
def test_images_and_audio_equal_tbparse_with_tensorflow(media_logs, writer, pivot):
    # tbparse decodes images and audio with TensorFlow. It is not in the test extra: with it
    # installed the stock writers write through tf.io.gfile, which changes what the fault tests
    # compare with. .ci/run runs the tests named *tensorflow* last, after installing it.
    pytest.importorskip("tensorflow", reason="TensorFlow is installed by .ci/run's last stage")
    extra = {"dir_name", "wall_time", "width", "height", "content_type", "length_frames", "sample_rate"}
    theirs = tbparse.SummaryReader(media_logs[writer], pivot=pivot, extra_columns=extra)
    ours = SummaryReader(media_logs[writer], pivot=pivot, extra_columns=extra)
    for event_type in ("images", "audio", "scalars"):
        pd.testing.assert_frame_equal(ours.get_events(event_type), theirs.get_events(event_type),
                                      obj=event_type)
    assert ours.tags == theirs.tags


def test_logs_written_by_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is installed by .ci/run's last stage")
    logdir = str(tmp_path / "tf")
    writer = tf.summary.create_file_writer(logdir)
    rng = np.random.default_rng(6)
    with writer.as_default():
        for step in range(5):
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
            tf.summary.histogram("weights", rng.standard_normal(100), step=step)
            tf.summary.text("note", f"step {step}", step=step)
        tf.summary.image("picture", rng.random((2, 6, 5, 3)), step=1, max_outputs=2)
        tf.summary.audio("sound", (rng.random((1, 800, 1)) - 0.5).astype(np.float32), 8000, step=2)
    writer.close()
    for pivot in (False, True):
        theirs = tbparse.SummaryReader(logdir, pivot=pivot, extra_columns={"wall_time", "dir_name"})
        ours = SummaryReader(logdir, pivot=pivot, extra_columns={"wall_time", "dir_name"})
        for event_type in ("scalars", "tensors", "histograms", "images", "audio", "hparams", "text"):
            pd.testing.assert_frame_equal(ours.get_events(event_type), theirs.get_events(event_type),
                                          obj=event_type)
        assert ours.tags == theirs.tags
    assert len(SummaryReader(logdir).tensors) == 5 + 5 + 1 + 1  # TF 2 writes everything as tensors
