"""`bench video` bookkeeping with a fake learn and a fake tracker whose figures are known: the learned
token reads the ground truth (J = F = 1, absent frames reported absent); the class word marks every
coloured pixel (every object: wrong beside distractors and when the instance is out of view)."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personaseg.bench.davis import open_video_dataset
from personaseg.bench.video import VideoBenchConfig, run_video
from personaseg.errors import ConfigError, InputError

from .fakes import FakeSegmenter, assert_names_code_and_model, install


@dataclass
class _Frame:
    index: int
    time: float | None
    mask: np.ndarray
    found: bool
    presence: float = 1.0
    relative_presence: float | None = None
    unet_rows: int = 1


class FakeTracker(FakeSegmenter):
    tracks: list = []

    def track(self, frames, phrase, prompt=None, config=None):
        FakeTracker.tracks.append((phrase, config.temporal))
        for i, path in enumerate(frames):
            if phrase.startswith("<"):
                ann = Path(str(path).replace("JPEGImages", "Annotations")).with_suffix(".png")
                mask = np.asarray(Image.open(ann)) == 1
            else:
                a = np.asarray(Image.open(path).convert("RGB")).astype(int)
                mask = (a.max(-1) - a.min(-1)) > 100  # every coloured object
            yield _Frame(i, None, mask, bool(mask.any()), unet_rows=2 if config.temporal else 10)


@pytest.fixture
def fakes(monkeypatch):
    install(monkeypatch)
    import personaseg.segmenter as segmenter

    monkeypatch.setattr(segmenter, "Segmenter", FakeTracker)
    FakeTracker.tracks = []


def _cfg(tmp_path, **kw):
    return VideoBenchConfig(**{"model": "fake", "out": tmp_path / "run", "concepts_dir": tmp_path / "cc",
                               "modes": ["temporal", "per-frame"], **kw})


def test_report_figures_subsets_and_timing(fakes, toy_videos, tmp_path):
    rep = run_video(toy_videos, _cfg(tmp_path), progress=False)
    assert set(rep["results"]) == {"ti", "class-word"} and set(rep["modes"]) == {"temporal", "per-frame"}
    for mode in ("temporal", "per-frame"):
        ti, cw = rep["modes"][mode]["ti"], rep["modes"][mode]["class-word"]
        assert set(ti) == {"all", "alone", "distractor", "leaves", "learn_s", "learn_cpu_s"}
        assert ti["all"]["J"] == ti["all"]["F"] == ti["all"]["J&F"] == 1.0 and ti["all"]["n"] == 3
        assert ti["leaves"]["absent_reported"] == 1.0 and ti["leaves"]["absent_frames"] > 0
        assert cw["leaves"]["absent_reported"] == 0.0  # the class word always finds something
        assert cw["distractor"]["J&F"] < ti["distractor"]["J&F"] - 0.15
        assert rep["per_sequence"][mode]["ti"]  # "seq/obj" -> J, F, J&F
    t = rep["timing"]
    assert t["temporal"]["ti"]["unet_rows_per_frame"] == 2 and t["per-frame"]["ti"]["unet_rows_per_frame"] == 10
    assert t["temporal"]["ti"]["frames"] == 24 and t["temporal"]["ti"]["frames_per_s"] > 0
    assert rep["dataset"]["protocol"].startswith("photos")
    lines = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 2  # targets x modes x methods
    assert "## J&F (temporal)" in (tmp_path / "run" / "report.md").read_text()


def test_report_names_its_code_and_model_and_what_learning_cost(fakes, toy_videos, tmp_path):
    rep = run_video(toy_videos, _cfg(tmp_path), progress=False)
    assert_names_code_and_model(rep, tmp_path / "run")
    learned = [json.loads(line) for line in (tmp_path / "run" / "learn.jsonl").read_text().splitlines()]
    ti = sum(r["concept_learn_s"] for r in learned if r["method"] == "ti")
    assert ti > 0 and rep["results"]["ti"]["learn_s"] == rep["modes"]["per-frame"]["ti"]["learn_s"] == ti
    assert rep["results"]["class-word"]["learn_s"] == 0.0


def test_resume_skips_scored_targets_and_a_rerun_without_it_refuses(fakes, toy_videos, tmp_path):
    run_video(toy_videos, _cfg(tmp_path, limit=1), progress=False)
    n = len(FakeTracker.tracks)
    rep = run_video(toy_videos, _cfg(tmp_path, resume=True), progress=False)
    assert len(FakeTracker.tracks) - n == 2 * 2 * 2  # only the two targets not scored yet
    assert rep["dataset"]["n_targets"] == 3
    with pytest.raises(InputError, match="--resume"):
        run_video(toy_videos, _cfg(tmp_path), progress=False)


def test_save_masks_writes_one_png_per_frame(fakes, toy_videos, tmp_path):
    run_video(toy_videos, _cfg(tmp_path, limit=1, save_masks=True, modes=["temporal"]), progress=False)
    seq = open_video_dataset(toy_videos).targets[0].seq
    assert len(list((tmp_path / "run" / "masks" / "ti" / seq / "1").glob("*.png"))) == 8


def test_a_sequence_without_annotations_is_one_line_and_the_rest_is_scored(fakes, toy_videos, tmp_path, run):
    root = tmp_path / "toy"
    shutil.copytree(toy_videos, root)
    seq = sorted((root / "Annotations" / "480p").iterdir())[0]
    shutil.rmtree(seq)
    code, out, err = run("bench", "video", root, "--model", "fake", "--out", tmp_path / "run",
                         "--concepts-dir", tmp_path / "cc")
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if seq.name in line] == [
        next(line for line in err.splitlines() if "annotations" in line and seq.name in line)]
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["dataset"]["n_targets"] == 2 and rep["skipped"][0]["target"] == seq.name
    assert "report.md" in out


@pytest.mark.parametrize("args, message", [
    (["--draws", "3"], "--draws 3 sets per-frame find's draws, and --modes temporal has no per-frame"),
    (["--modes", "per-frame", "--window", "1"], "--draws-per-frame and --window are temporal mode's"),
])
def test_an_option_the_modes_would_not_read_is_one_line(run, tmp_path, args, message):
    code, _, err = run("bench", "video", tmp_path, "--model", "fake", "--out", tmp_path / "run", *args)
    assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "run").exists()


def test_config_checks():
    with pytest.raises(ConfigError):
        VideoBenchConfig(modes=["sometimes"])
    with pytest.raises(ConfigError):
        VideoBenchConfig(max_frames=0)
