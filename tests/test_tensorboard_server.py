"""The real TensorBoard serves what fasttb writes as it serves what torch's writer writes: both
write the same calls into two runs of one log dir, a `tensorboard` server (started here on
127.0.0.1, always stopped) loads them, and every plugin's HTTP data API answers the same for the
two runs, wall times aside. A few answers are also checked against the logged values."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch
from every_kind import log_every_kind, onnx_model
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from fasttb import SummaryWriter

RUNS = ("torch", "fasttb")


class Server:
    """`tensorboard --logdir` on a free port of 127.0.0.1, for a ``with`` block."""

    def __init__(self, logdir: str, load_fast: str):
        self.logdir, self.load_fast = logdir, load_fast

    def __enter__(self) -> Server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(os.path.dirname(self.logdir), "tensorboard.log"), "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", self.logdir, "--host", "127.0.0.1",
             "--port", str(port), f"--load_fast={self.load_fast}", "--reload_interval", "1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.wait_for_runs()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def get(self, route: str, body: dict | None = None, **args) -> bytes:
        url = f"{self.base}/data/{route}"
        if args:
            url += "?" + urllib.parse.urlencode(args, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def json(self, route: str, body: dict | None = None, **args):
        return json.loads(self.get(route, body, **args))

    def wait_for_runs(self, timeout: float = 90) -> None:
        """Until the server answers and has loaded both runs' audio (among the last records)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"tensorboard exited with {self.process.returncode}:\n{self.output()}")
            try:
                tags = self.json("plugin/audio/tags")
                if all(run in tags and "audio" in tags[run] for run in RUNS) and \
                        set(RUNS) <= set(self.json("plugin/projector/runs")):
                    return
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not load both runs in {timeout} s:\n{self.output()}")
            time.sleep(0.25)


# Keys of JSON answers that differ between two runs of the same records: wall times (under
# each plugin's spelling), and blob queries, which name the run (their blobs are compared).
UNCOMPARED = ("wall_time", "wallTime", "wallTimeSecs", "startTimeSecs", "endTimeSecs", "query")


def without_wall_time(value):
    """A JSON answer with the UNCOMPARED values set to 0."""
    if isinstance(value, dict):
        return {k: 0 if k in UNCOMPARED else without_wall_time(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_wall_time(v) for v in value]
    return value


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    model = str(root / "model.onnx")
    onnx_model(model)
    for cls, name in zip((TorchWriter, SummaryWriter), RUNS):
        w = cls(str(root / "logs" / name))
        log_every_kind(w, model, torch.from_numpy if name == "torch" else lambda a: a)
        w.close()
    return str(root / "logs")


@pytest.fixture(scope="module", params=["false", "true"], ids=["python loader", "data server"])
def server(request, logdir):
    with Server(logdir, request.param) as s:
        yield s


def same_for_both_runs(server, route, **args):
    """The answers of ``route`` for the two runs, asserted equal (wall times aside) and with the
    blobs their queries point at equal; returns fasttb's answer."""
    answers = [server.json(route, run=run, **args) for run in RUNS]
    assert without_wall_time(answers[0]) == without_wall_time(answers[1]), route
    assert answers[1], route
    plugin = route.split("/")[1]
    blob_route = {"audio": "individualAudio", "images": "individualImage"}.get(plugin)
    for a, b in zip(answers[0], answers[1]) if blob_route else ():
        blobs = [server.get(f"plugin/{plugin}/{blob_route}?" + x["query"]) for x in (a, b)]
        if plugin == "images":
            from conftest import decoded_frames

            frames = [decoded_frames(blob) for blob in blobs]
            assert frames[0].shape == frames[1].shape and (frames[0] == frames[1]).all(), args
        else:
            assert blobs[0] == blobs[1] and blobs[1], args
    return answers[1]


def test_every_plugin_lists_the_same_tags_for_both_runs(server):
    for plugin in ("scalars", "histograms", "images", "text", "pr_curves", "audio", "mesh"):
        tags = server.json(f"plugin/{plugin}/tags")
        assert tags["torch"] and tags["torch"] == tags["fasttb"], plugin


def test_text(server):
    [entry] = same_for_both_runs(server, "plugin/text/text", tag="text/text_summary")
    assert entry["step"] == 8 and "<strong>world</strong>" in entry["text"]


def test_pr_curves(server):
    for tag in ("pr", "pr_weighted", "pr_raw"):
        answer = server.json("plugin/pr_curves/pr_curves", run=list(RUNS), tag=tag)
        torch_curve, ours = (without_wall_time(answer[run]) for run in RUNS)
        assert torch_curve == ours and ours, tag
    [raw] = answer["fasttb"]
    # The plugin leaves out the trailing thresholds where nothing was predicted positive.
    assert raw["step"] == 10 and raw["true_positives"] == [10, 5] and raw["precision"] == np.float32([0.6, 0.7]).tolist()


def test_hparams(server):
    experiment = server.json("plugin/hparams/experiment", {"experimentName": ""})
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    assert set(hparams) == {"lr", "layers", "opt", "nesterov"}
    assert hparams["opt"]["domainDiscrete"] == ["adam", "sgd"]
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["hp/accuracy"]
    groups = server.json("plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 10,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": name} for name in hparams] + [{"metric": {"tag": "hp/accuracy"}}]})
    sessions = {s["name"]: s for g in groups["sessionGroups"] for s in g["sessions"]}
    assert set(sessions) == {"torch/trial", "fasttb/trial"}
    hparams_of = {s["name"]: g["hparams"] for g in groups["sessionGroups"] for s in g["sessions"]}
    assert hparams_of["fasttb/trial"] == hparams_of["torch/trial"] == {
        "lr": 0.01, "layers": 3, "opt": "adam", "nesterov": True}
    for session in sessions.values():
        [metric] = session["metricValues"]
        assert metric["value"] == 0.75 and metric["name"]["tag"] == "hp/accuracy"
        session.pop("name")
    assert without_wall_time(sessions["torch/trial"]) == without_wall_time(sessions["fasttb/trial"])


def test_custom_scalars(server):
    # The route merges the runs' latest layouts; both runs' are the same, so the merge is it.
    layout = server.json("plugin/custom_scalars/layout")
    charts = {c["title"]: c for category in layout["category"] for c in category["chart"]}
    assert charts["loss"]["multiline"]["tag"] == ["loss/train", "loss/test"]
    assert charts["band"]["margin"]["series"] == [{"value": "m", "lower": "lo", "upper": "hi"}]
    assert charts["lines"]["multiline"]["tag"] == ["x", "y"]
    assert {c["title"] for c in layout["category"]} == {"Training", "c"}


def test_audio(server):
    [entry] = same_for_both_runs(server, "plugin/audio/audio", tag="audio")
    # (The data server answers application/octet-stream for the stock writer's audio too.)
    assert entry["contentType"] in ("audio/wav", "application/octet-stream") and entry["step"] == 11
    wav = server.get("plugin/audio/individualAudio?" + entry["query"])
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * 4410


def test_meshes(server):
    # One entry per component, in no set order under the data server.
    meta = [sorted(without_wall_time(server.json("plugin/mesh/meshes", run=run, tag="mesh")),
                   key=lambda m: m["content_type"]) for run in RUNS]
    assert meta[0] == meta[1]
    assert [(m["content_type"], m["data_shape"]) for m in meta[1]] == [(1, [1, 6, 3]), (2, [1, 4, 3]), (3, [1, 6, 3])]
    for content_type, dtype, shape in (("VERTEX", np.float32, (6, 3)), ("FACE", np.int32, (4, 3)),
                                       ("COLOR", np.uint8, (6, 3))):
        data = [server.get("plugin/mesh/data?" + urllib.parse.urlencode(
            {"run": run, "tag": "mesh", "sample": 0, "step": 13, "content_type": content_type})) for run in RUNS]
        assert data[0] == data[1], content_type
        assert np.frombuffer(data[1], dtype).size == np.prod(shape), content_type


def test_projector(server):
    configs = {run: server.json("plugin/projector/info", run=run) for run in RUNS}
    for config in configs.values():  # written paths differ (each run's own directory)
        for e in config["embeddings"]:
            for key in ("tensorPath", "metadataPath", "sprite"):
                if key in e:
                    e[key] = e[key] if key == "sprite" else os.path.basename(e[key])
            if "sprite" in e:
                e["sprite"]["imagePath"] = os.path.basename(e["sprite"]["imagePath"])
        config.pop("modelCheckpointPath", None)
    assert configs["torch"] == configs["fasttb"]
    names = sorted(e["tensorName"] for e in configs["fasttb"]["embeddings"])
    assert names == ["default:00016", "emb:00015"]
    for name in names:
        for route in ("tensor", "metadata"):
            a, b = (server.get(f"plugin/projector/{route}?" + urllib.parse.urlencode({"run": r, "name": name}))
                    for r in RUNS)
            assert a == b and a, (route, name)
    tensor = np.frombuffer(server.get("plugin/projector/tensor?run=fasttb&name=emb%3A00015"), np.float32)
    assert tensor.shape == (6 * 4,)
    sprite = [server.get("plugin/projector/sprite_image?" + urllib.parse.urlencode({"run": r, "name": "emb:00015"}))
              for r in RUNS]
    from conftest import decoded_frames

    assert (decoded_frames(sprite[0]) == decoded_frames(sprite[1])).all()


def test_scalars_histograms_images_and_graphs(server):
    same_for_both_runs(server, "plugin/scalars/scalars", tag="scalar")
    same_for_both_runs(server, "plugin/histograms/histograms", tag="histogram")
    for tag in ("image", "boxes", "video"):
        same_for_both_runs(server, "plugin/images/images", tag=tag)
    graphs = [server.get("plugin/graphs/graph?" + urllib.parse.urlencode({"run": r, "conceptual": "false"}))
              for r in RUNS]
    # The pbtxt of the graph lists each node's attrs in map order; compare line sets.
    assert sorted(re.split(rb"\n", graphs[0])) == sorted(re.split(rb"\n", graphs[1])) and graphs[1]
