"""`personaseg find / segment / explain` end to end on the tiny model, and every bad input."""

import json
import sys

import numpy as np
import pytest
from PIL import Image



@pytest.fixture
def fast(tiny_model_dir, tmp_path):
    """Options for a fast run: the tiny model, 1 draw, 64 px (through a recipe file)."""
    recipe = tmp_path / "fast.toml"
    recipe.write_text("draws = 1\nlong_side = 64\n")
    return ["--model", tiny_model_dir, "--recipe", recipe]


def _rgb(path, w, h, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_find_writes_masks_and_json(run, fast, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _rgb(imgs / "a.png", 50, 30)
    _rgb(imgs / "b.jpg", 20, 44)
    (imgs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, _ = run("find", "mug", imgs, *fast, "--out", out, "--json", "--scores")
    assert code == 0
    records = [json.loads(x) for x in stdout.splitlines()]
    assert [r["path"].split("/")[-1] for r in records] == ["a.png", "b.jpg"]
    for r in records:
        assert set(r) >= {"phrase", "presence", "found", "area_fraction", "bbox", "rle", "instances", "timings"}
    mask = np.asarray(Image.open(out / "a.mask.png"))
    assert mask.shape == (30, 50) and set(np.unique(mask)) <= {0, 255}
    assert (out / "b.overlay.png").exists() and np.load(out / "a.scores.npy").dtype == np.float16
    from personaseg.masks import rle_decode

    assert np.array_equal(rle_decode(records[0]["rle"]), mask > 0)


def test_exif_rotated_photo_mask_follows_display(run, fast, tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 60, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: displayed as 20 wide, 60 high
    img.save(tmp_path / "rot.jpg", exif=exif)
    code, _, _ = run("find", "mug", tmp_path / "rot.jpg", *fast, "--out", tmp_path / "o")
    assert code == 0
    assert Image.open(tmp_path / "o" / "rot.mask.png").size == (20, 60)


@pytest.mark.parametrize("w, h", [(1, 1), (2000, 7)])
def test_tiny_and_very_wide_images(run, fast, tmp_path, w, h):
    path = _rgb(tmp_path / "odd.png", w, h)
    code, _, err = run("find", "mug", path, *fast, "--out", tmp_path / "o")
    assert code == 0, err
    assert Image.open(tmp_path / "o" / "odd.mask.png").size == (w, h)


def _bad_inputs(tmp_path):
    (tmp_path / "fake.jpg").write_text("hello")
    good = _rgb(tmp_path / "good.jpg", 64, 64)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty").mkdir()
    (tmp_path / "keep.toml").write_text('keep = "largest"\n')
    (tmp_path / "outline.toml").write_text('outline = "class"\n')
    return {
        "not an image": (["find", "mug", tmp_path / "fake.jpg"], "fake.jpg"),
        "truncated": (["find", "mug", tmp_path / "cut.jpg"], "cut.jpg"),
        "missing": (["find", "mug", tmp_path / "nope.png"], "nope.png"),
        "empty folder": (["find", "mug", tmp_path / "empty"], "no images"),
        "empty phrase": (["find", " ", good], "empty"),
        "unknown concept": (["find", "<nobody>", good, "--concepts-dir", tmp_path / "store"], "<nobody>"),
        "unwritable out": (["find", "mug", good, "--out", "/proc/personaseg"], "not writable"),
        "out inside a file": (["find", "mug", good, "--out", good / "masks"], "not writable"),
        "bad recipe key": (["find", "mug", good, "--recipe", tmp_path / "bad.toml"], "unknown setting"),
        "bad keep value": (["find", "mug", good, "--recipe", tmp_path / "keep.toml"], "keep='largest'"),
        "bad outline value": (["find", "mug", good, "--recipe", tmp_path / "outline.toml"], "outline='class'"),
    }


def test_bad_inputs_are_one_line_without_traceback(run, fast, tmp_path):
    (tmp_path / "bad.toml").write_text("drawz = 3\n")
    out = tmp_path / "out"
    for what, (args, needle) in _bad_inputs(tmp_path).items():
        extra = fast if "--recipe" not in args else fast[:2]
        code, stdout, err = run(*args, *extra, *([] if "--out" in args else ["--out", out]))
        assert code != 0, what
        assert needle in err and "Traceback" not in err, (what, err)
        assert len(err.strip().splitlines()) == 1, (what, err)
        assert not out.exists(), what  # nothing written, not even an empty output folder


def test_folder_run_skips_a_bad_file_and_goes_on(run, fast, tmp_path):
    imgs = tmp_path / "photos-of-a-long-named-folder-that-no-terminal-line-holds" / "imgs"
    imgs.mkdir(parents=True)
    _rgb(imgs / "ok.png", 30, 30)
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = run("find", "mug", imgs, *fast, "--out", tmp_path / "o")
    assert code == 0 and "skipped" in err
    # one line naming the whole path, however long, so it can be copied (a wrapped path cannot)
    assert any(str(imgs / "broken.png") in line for line in err.splitlines()), err
    assert (tmp_path / "o" / "ok.mask.png").exists() and not (tmp_path / "o" / "broken.mask.png").exists()


def test_segment_and_explain(run, fast, tmp_path):
    img = _rgb(tmp_path / "s.png", 40, 32)
    code, _, err = run("segment", img, "--labels", "cat,dog", *fast, "--out", tmp_path / "o")
    assert code == 0, err
    labels = Image.open(tmp_path / "o" / "s.labels.png")
    assert labels.mode == "P" and labels.size == (40, 32)
    legend = json.loads((tmp_path / "o" / "s.legend.json").read_text())
    assert legend["labels"] == {"0": "background", "1": "cat", "2": "dog"}
    code, _, err = run("explain", "red mug", img, *fast, "--out", tmp_path / "o")
    assert code == 0, err
    assert Image.open(tmp_path / "o" / "s.explain.png").width > 40


def test_help_lists_the_commands(run):
    code, out, _ = run("--help")
    for cmd in ("find", "segment", "explain", "learn", "concepts", "bench", "demo", "toyworld"):
        assert cmd in out


def test_brackets_print_as_written(run, fast, tmp_path, monkeypatch):
    """Rich markup ate "[crf]" in "pip install 'personaseg[crf]'" (and any bracketed word in a path)."""
    for name in ("pydensecrf", "pydensecrf.densecrf", "pydensecrf.utils"):
        monkeypatch.setitem(sys.modules, name, None)  # the crf extra is not installed
    img = _rgb(tmp_path / "shot[1].png", 16, 16)
    code, _, err = run("find", "mug", img, *fast, "--crf", "--out", tmp_path / "o")
    assert code != 0 and "pip install 'personaseg[crf]'" in err, err
    code, _, err = run("find", "mug", str(tmp_path / "gone[crf].png"), *fast, "--out", tmp_path / "o")
    assert code != 0 and "gone[crf].png" in err, err
    code, out, _ = run("find", "--help")
    assert "personaseg[crf]" in out
    code, out, _ = run("bench", "personal", "--help")
    assert "[learn] and [find]" in " ".join(out.replace("│", " ").split())  # rich's box, wrapped lines
