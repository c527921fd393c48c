"""`python main.py predict RUN VIDEO [--every S] [--json]`: the frames of a video classified headless, with their
times, the same top-k as the frames saved as images; a video that cannot be read is one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from engine.data.video import iter_frames
from engine.infer.inference import Predictor
from engine.infer.live import FrameClassifier
from engine.train.runs import checkpoint_path
from tests.video_helpers import make_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", ("cat", "dog"), frames_per_class=5, fps=10)


@pytest.fixture(scope="module")
def run(trained_runs):
    return trained_runs.get("feature_extraction", epochs=1)


def test_every_frame_is_classified_with_its_time(cli, run, video):
    code, out, err = cli("predict", run, video, "--json", "--topk", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["frame"] for row in rows] == list(range(10))
    assert [round(row["time"], 2) for row in rows] == [round(0.1 * i, 2) for i in range(10)]
    assert all(len(row["top"]) == 2 and row["path"] == str(video) for row in rows)
    assert all(row["top"][0]["probability"] >= row["top"][1]["probability"] for row in rows)


def test_every_keeps_one_frame_per_interval(cli, run, video):
    code, out, _ = cli("predict", run, video, "--every", "0.25")
    assert code == 0
    times = [float(line.split(" @ ")[1].split(" s:")[0]) for line in out.splitlines()]
    assert times == [0.0, 0.3, 0.5, 0.8]  # 10 fps: the first frame at or after 0, 0.25, 0.5, 0.75


def test_a_frame_gets_the_answer_its_saved_image_gets(run, video, tmp_path):
    """Live and later agree: a frame classified as an array and the same frame saved as PNG and predicted."""
    predictor = Predictor.from_checkpoint(checkpoint_path(run, "best"))
    frame = next(iter_frames(video))
    Image.fromarray(frame.rgb).save(tmp_path / "frame.png")
    live = FrameClassifier(predictor, topk=3).classify(frame.rgb)
    saved = predictor.predict([tmp_path / "frame.png"], topk=3)[0]
    assert [name for name, _ in live.top] == [name for name, _ in saved.top]
    assert np.allclose([p for _, p in live.top], [p for _, p in saved.top], atol=1e-5)


@pytest.mark.parametrize("content, words", [(None, "no such video file"), (b"not a video", "cannot be read")])
def test_a_video_that_cannot_be_read_is_one_line(cli, run, tmp_path, content, words):
    path = tmp_path / "broken.mp4"
    if content is not None:
        path.write_bytes(content)
    code, out, err = cli("predict", run, path)
    assert code == 2 and out == "" and words in err and "Traceback" not in err


def test_a_negative_interval_is_refused(cli, run, video, image_folder):
    code, _, err = cli("predict", run, video, "--every", "-1")
    assert code == 2 and "--every must be 0 or more" in err and err.count("\n") == 1
    code, _, err = cli("predict", run, image_folder / "cat" / "cat_000.png", "--every", "1")
    assert code == 2 and "--every applies to video files" in err  # never silently ignored


def test_without_pyav_a_video_is_one_line_saying_what_to_install(cli, run, video, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as where it is not installed
    code, out, err = cli("predict", run, video, "--json")  # --json: without the note about the OOD calibration
    assert code == 2 and out == "" and err.count("\n") == 1 and "pip install av" in err


def test_an_exported_model_labels_the_frames_as_its_checkpoint_does(cli, run, video, tmp_path):
    out = tmp_path / "model.ts"  # TorchScript: the quickest export to make (ONNX's exporter takes ~8 s here)
    code, _, err = cli("export", run, "--format", "torchscript", "--out", out, "--latency-runs", "0",
                       "--max-images", "8")
    assert code == 0, err
    rows = {}
    for model in (run, out):
        code, text, err = cli("predict", model, video, "--json", "--every", "0.5")
        assert code == 0, err
        rows[model] = [json.loads(line) for line in text.splitlines()]
    assert [r["time"] for r in rows[out]] == [r["time"] for r in rows[run]] and len(rows[out]) == 2
    for exported, eager in zip(rows[out], rows[run]):
        assert [t["class"] for t in exported["top"]] == [t["class"] for t in eager["top"]]
        assert np.allclose([t["probability"] for t in exported["top"]], [t["probability"] for t in eager["top"]],
                           atol=1e-4)


def test_a_model_of_other_channels_is_refused_for_frames_in_words():
    from torch import nn

    from engine.data.preprocessing import Preprocessing
    from engine.errors import BadInputError

    four = Predictor(nn.Identity(), ["a", "b"], Preprocessing(mean=[0.5] * 4, std=[0.5] * 4))
    with pytest.raises(BadInputError, match="4-channel input"):
        FrameClassifier(four)
