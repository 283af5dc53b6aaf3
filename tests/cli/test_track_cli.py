"""`personaseg track` on a tiny random model: outputs per clip, --json, part of a clip, bad input."""

import json

import av
import numpy as np
import pytest
from PIL import Image

from personaseg.video import open_clip, write_video


def _images(n, size=(56, 40), seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")) for _ in range(n)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    write_video(d / "walk.mp4", _images(6), fps=10)
    (d / "frames").mkdir()
    for i, im in enumerate(_images(4, seed=1)):
        im.save(d / "frames" / f"f{i}.png")  # f0 .. f3
    return d


def test_outputs_json_and_frame_rate(run, tiny_model_dir, clips, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run("track", "mug", clips / "walk.mp4", clips / "frames", "--model", tiny_model_dir,
                            "--out", out, "--json", "--draws-per-frame", "2", "--fps", "5")
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["frame"] for r in records] == list(range(6)) + list(range(4))
    r = records[7]
    assert set(r) >= {"frame", "time", "found", "presence", "rle", "bbox"} and r["time"] == pytest.approx(0.2)
    assert r["rle"]["size"] == [40, 56] and r["video"].endswith("frames")
    assert sorted(p.name for p in (out / "walk" / "masks").iterdir()) == [f"{i:05d}.png" for i in range(6)]
    assert Image.open(out / "frames" / "masks" / "00003.png").size == (56, 40)
    video = open_clip(out / "walk.overlay.mp4")
    assert video.fps == pytest.approx(10) and len(list(video.frames())) == 6
    assert "frames/s" in err and not list(out.glob(".*"))  # no temp folders left


def test_json_writes_the_mask_as_find_does_and_names_show_as_they_are(run, tiny_model_dir, clips, tmp_path):
    """track --json wrote bbox as x0,y0,x1,y1 where find --json writes COCO's [x, y, w, h]; now both write
    masks.coco_summary's fields. A clip's name in the progress bar was read as rich markup ("[red]" vanished)."""
    from personaseg.masks import coco_summary, rle_decode

    named = tmp_path / "walk[red].mp4"
    named.write_bytes((clips / "walk.mp4").read_bytes())
    code, stdout, err = run("track", "mug", named, "--model", tiny_model_dir, "--out", tmp_path / "out", "--json",
                            "--draws-per-frame", "1")
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    drawn = [r for r in records if r["area"] > 0]
    assert drawn, "no frame has a mask: the bbox is not tested"
    for r in records:
        mask = np.asarray(Image.open(r["mask_path"])) > 0
        assert (rle_decode(r["rle"]) == mask).all()
        summary = coco_summary(mask)
        assert {k: r[k] for k in summary} == summary
        if r["area"]:
            ys, xs = mask.nonzero()
            assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert any("walk[red] " in line and "━" in line for line in err.splitlines()), err


def test_every_start_end(run, tiny_model_dir, clips, tmp_path):
    code, stdout, err = run("track", "mug", clips / "walk.mp4", "--model", tiny_model_dir, "--out", tmp_path,
                            "--json", "--draws", "1", "--every", "2", "--start", "0.1", "--end", "0.55",
                            "--no-temporal")
    assert code == 0, err
    assert [json.loads(line)["frame"] for line in stdout.splitlines()] == [1, 3, 5]
    assert open_clip(tmp_path / "walk.overlay.mp4").fps == pytest.approx(5)  # fps / every


def test_bad_clips_are_one_line_each_and_the_good_one_is_kept(run, tiny_model_dir, clips, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "junk.mp4").write_bytes(b"not a video" * 50)
    with av.open(str(bad / "sound.m4a"), "w", format="mp4") as o:  # audio only
        s = o.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode()]:
            o.mux(p)
    (bad / "empty").mkdir()
    (bad / "mixed").mkdir()
    _images(1, (56, 40))[0].save(bad / "mixed" / "0.png")
    _images(1, (40, 40))[0].save(bad / "mixed" / "1.png")
    with av.open(str(bad / "cut.mp4"), "w", format="mp4", options={"movflags": "faststart"}) as o:
        s = o.add_stream("mpeg4", rate=10)  # index first: a cut file opens, then ends early
        s.width, s.height, s.pix_fmt = 56, 40, "yuv420p"
        for im in _images(20):
            for p in s.encode(av.VideoFrame.from_image(im)):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    cut = (bad / "cut.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(cut[:int(len(cut) * 0.6)])
    out = tmp_path / "out"
    names = ["junk.mp4", "sound.m4a", "empty", "mixed", "cut.mp4"]
    code, _, err = run("track", "mug", *[bad / n for n in names], clips / "walk.mp4", "--model", tiny_model_dir,
                       "--out", out, "--draws-per-frame", "1")
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 5
    for line, why in zip(errors, ["not a readable video", "no video stream", "no frames", "1.png: frame is 40x40",
                                  "truncated"]):
        assert why in line, line
    assert len(list((out / "walk" / "masks").iterdir())) == 6 and (out / "walk.overlay.mp4").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["walk", "walk.overlay.mp4"]  # nothing half-written


@pytest.mark.parametrize("args, message", [
    (["--every", "0"], "--every 0 must be >= 1"),
    (["--start", "5"], "--start 5 s is past the end"),
    (["--start", "0.4", "--end", "0.2"], "is not after --start"),
    (["--draws", "3"], "--draws 3 sets the draws of per-frame find, and temporal mode is on"),  # not silently unused
    (["--no-temporal"], "--draws-per-frame and --window are temporal mode's"),
])
def test_bad_ranges(run, tiny_model_dir, clips, tmp_path, args, message):
    code, _, err = run("track", "mug", clips / "walk.mp4", "--model", tiny_model_dir, "--out", tmp_path / "o",
                       "--draws-per-frame", "1", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "walk").exists() and not (tmp_path / "o" / "walk.overlay.mp4").exists()


def test_an_earlier_run_is_not_replaced_without_force(run, tiny_model_dir, clips, tmp_path):
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk" / "mine.txt").write_text("keep")
    code, _, err = run("track", "mug", clips / "walk.mp4", "--model", tiny_model_dir, "--out", tmp_path)
    assert code == 2 and "--force" in err and (tmp_path / "walk" / "mine.txt").read_text() == "keep"


def test_a_recipes_draws_unused_by_temporal_mode_are_one_warning_line(run, tiny_model_dir, clips, tmp_path):
    recipe = tmp_path / "find.toml"
    recipe.write_text("draws = 3\n")
    base = ("track", "mug", clips / "frames", "--model", tiny_model_dir, "--recipe", recipe)
    code, _, err = run(*base, "--out", tmp_path / "a")
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warned) == 1, err
    assert "draws = 3 are per-frame find's" in warned[0] and "--draws-per-frame 3" in warned[0]
    for extra in (["--no-temporal"], ["--draws-per-frame", "1"]):  # used, or replaced on purpose: no warning
        code, _, err = run(*base, "--out", tmp_path / extra[0].strip("-"), *extra)
        assert code == 0 and "warning:" not in err, err
