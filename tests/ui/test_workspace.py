"""What `personaseg ui` does without a browser: its checks before anything loads, and that its find is
`personaseg find` (same mask, same record) on the toy model. Needs no Gradio."""

from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest
from PIL import Image

from personaseg.errors import ConceptError, InputError
from personaseg.ui import is_loopback
from personaseg.ui.workspace import MAX_PHOTOS, Workspace


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.4.5.6", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.org", False),
])
def test_only_loopback_is_served_without_asking(host, loopback):
    assert is_loopback(host) is loopback


def test_other_hosts_need_allow_remote_and_a_busy_port_is_one_line(run, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code, _, err = run("ui", "--host", "0.0.0.0", "--model", "toy")
    assert code == 2 and "--allow-remote" in err and "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run("ui", "--port", busy.getsockname()[1], "--model", "toy")
    assert code == 2 and "cannot listen on 127.0.0.1" in err and "--port" in err
    # refused before making its temporary folder (torch may leave its own cache folder in tempdir)
    assert list(tmp_path.glob("personaseg-ui-*")) == []


def test_without_the_extra_it_says_how_to_install_it_and_leaves_nothing(run, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` fails as if not installed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run("ui", "--port", port, "--model", "toy")
    assert code != 0 and "pip install 'personaseg[ui]'" in err
    assert list(tmp_path.glob("personaseg-ui-*")) == []  # the temporary folder is removed on the way out


def test_a_learn_is_checked_before_the_model_loads(tmp_path):
    ws = Workspace("no-such-model", tmp_path / "scratch", tmp_path / "store")
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 32), "red").save(photo)
    with pytest.raises(InputError, match="no photos"):
        ws.plan_learn([], "<mymug>")
    with pytest.raises(InputError, match=f"at most {MAX_PHOTOS}"):
        ws.plan_learn([photo] * (MAX_PHOTOS + 1), "<mymug>")
    for bad in ("<../../etc>", "<a/b>", "<my mug>", ""):
        with pytest.raises(ConceptError):
            ws.plan_learn([photo], bad)
    (tmp_path / "store" / "mymug").mkdir(parents=True)
    (tmp_path / "store" / "mymug" / "concept.json").write_text("{}")
    with pytest.raises(ConceptError, match="already exists.*tick 'Replace'"):
        ws.plan_learn([photo], "<mymug>")
    job = ws.plan_learn([photo], "<mymug>", "mug", "lora", 7, replace=True)
    assert job.force and job.config.steps == 7 and job.config.method == "lora" and job.config.class_word == "mug"
    with pytest.raises(ConceptError, match="no interrupted run"):
        ws.plan_learn([photo], "<mymug>", resume=True)


@pytest.mark.slow  # two toy model loads: about 20 s on 2 busy cores
def test_find_in_the_app_is_personaseg_find(run, tmp_path):
    from personaseg.toyworld import make_scene

    scene = tmp_path / "scene.png"
    Image.fromarray(make_scene(3).image).save(scene)
    ws = Workspace("toy", tmp_path / "scratch", tmp_path / "store")
    with pytest.raises(InputError, match="notes.png"):  # no model needed to refuse a file that is no image
        (tmp_path / "notes.png").write_text("not a picture")
        ws.find(tmp_path / "notes.png", "circle")
    out, _ = ws.find(scene, "circle", draws=2, seed=1)
    code, stdout, _ = run("find", "circle", scene, "--model", "toy", "--draws", 2, "--seed", 1,
                          "--out", tmp_path / "cli", "--json")
    assert code == 0
    cli = json.loads(stdout)
    assert np.array_equal(np.asarray(Image.open(out.mask)), np.asarray(Image.open(tmp_path / "cli" / "scene.mask.png")))
    assert out.summary.keys() == cli.keys() and out.summary["rle"] == cli["rle"]
    assert json.loads(out.record.read_text())["presence"] == cli["presence"]
    assert Image.open(out.overlay).size == Image.open(scene).size and out.heatmap.exists()


def test_a_click_or_box_is_checked_as_learn_checks_it_before_the_model_loads(tmp_path):
    ws = Workspace("no-such-model", tmp_path / "scratch", tmp_path / "store")
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 24), "red").save(photo)
    for kind, value, match in [("clicks", ["p.png=32,5"], r"click p.png=32,5 is outside its photo \(32x24\)"),
                               ("clicks", {"p.png": (-1, 0)}, "outside its photo"),
                               ("clicks", ["q.png=1,1"], "names no photo"),
                               ("clicks", ["p.png=1"], "is not PHOTO=X,Y"),
                               ("boxes", ["p.png=10,10,5,20"], "has x1 <= x0"),
                               ("boxes", ["p.png=0,0,40,20"], "outside its photo")]:
        with pytest.raises(InputError, match=match):
            ws.plan_learn([photo], "<mymug>", "mug", **{kind: value})
    job = ws.plan_learn([photo], "<mymug>", "mug", clicks=["p.png=31,23"])
    assert job.clicks == ["p.png=31,23"] and job.boxes is None
    job = ws.plan_learn([photo], "<mymug>", "mug", boxes={"p": (0, 0, 32, 24)})
    assert job.boxes == {"p": (0, 0, 32, 24)} and job.clicks is None


@pytest.mark.slow  # two toy model loads, a find on the photo and its presence: about 80 s on 2 busy cores
def test_a_click_guided_learn_keeps_the_mask_the_model_drew(tmp_path):
    """Learn on the toy model from a click on the object: the concept keeps the derived mask, which
    holds the click and lies inside the object; a click beside it is learn's one line, nothing stored."""
    from personaseg.toyworld import make_bench

    bench = make_bench(tmp_path / "bench", seed=0, concepts=1, scenes=1)
    folder = bench.root / "concepts" / bench.concepts[0]
    class_word = (folder / "concept.toml").read_text().split('"')[1]
    photos = sorted((folder / "photos").iterdir())
    truth = np.asarray(Image.open(folder / "masks" / "00.png")) > 0
    ys, xs = np.nonzero(truth)
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)  # the object pixel nearest its centre
    x, y = int(xs[k]), int(ys[k])
    ws = Workspace("toy", tmp_path / "scratch", tmp_path / "store")
    far = np.argwhere(~truth)[0]  # background
    with pytest.raises(InputError, match=f"the model finds no '{class_word}' there"):
        ws.learn(ws.plan_learn(photos, "<mine>", class_word, steps=2, clicks={"00.png": (far[1], far[0])}))
    assert not ws.store.exists("mine")
    concept = ws.learn(ws.plan_learn(photos, "<mine>", class_word, steps=2, clicks={"00.png": (x, y)}))
    mask_path, = ws.derived_masks(concept)
    assert mask_path.name == "00.png" and mask_path.is_relative_to(tmp_path / "scratch")  # served from there
    derived = np.asarray(Image.open(mask_path)) > 0
    assert np.array_equal(derived, np.asarray(Image.open(concept.path / "masks" / "00.png")) > 0)
    assert derived.shape == truth.shape and derived[y, x]
    assert (derived & truth).sum() > 0.5 * derived.sum()


def test_track_in_the_app_is_personaseg_track(run, tiny_model_dir, tmp_path):
    """A clip in the app: track's overlay video and its --json lines, frame for frame (tiny model)."""
    pytest.importorskip("av")
    from personaseg.video import open_clip, write_video

    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")) for _ in range(4)]
    clip = tmp_path / "walk.mp4"
    write_video(clip, frames, fps=10)
    ws = Workspace(str(tiny_model_dir), tmp_path / "scratch", tmp_path / "store")
    with pytest.raises(InputError, match="the phrase is empty"):
        ws.track(clip, "  ")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(InputError, match="notes.mp4"):
        ws.track(tmp_path / "notes.mp4", "mug")
    out, _ = ws.track(clip, "mug", draws=2, seed=1, every=2)
    code, stdout, err = run("track", "mug", clip, "--model", tiny_model_dir, "--draws-per-frame", 2, "--seed", 1,
                            "--every", 2, "--out", tmp_path / "cli", "--json")
    assert code == 0, err
    cli = [json.loads(line) for line in stdout.splitlines()]
    ours = [json.loads(line) for line in out.records.read_text().splitlines()]
    assert [r["frame"] for r in ours] == [0, 2] and out.frames == 2
    strip = ("video", "mask_path")
    assert [{k: v for k, v in r.items() if k not in strip} for r in ours] == \
        [{k: v for k, v in r.items() if k not in strip} for r in cli]
    assert all((out.records.parent / r["mask_path"]).is_file() for r in ours)
    video = open_clip(out.video)
    assert video.fps == pytest.approx(5) and len(list(video.frames())) == 2


def test_the_clip_input_is_there_only_with_pyav(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    import importlib.util

    from personaseg.ui.app import build_app

    ws = Workspace("toy", tmp_path / "scratch", tmp_path / "store")  # nothing loads to build the page
    find_spec = importlib.util.find_spec
    for has_av in (True, False):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" and not has_av
                            else find_spec(name, *a))
        endpoints = build_app(ws).get_api_info()["named_endpoints"]
        assert ("/track" in endpoints) is has_av and "/find" in endpoints and "/learn" in endpoints
