"""`find` and `segment` outputs: one file per input, nothing replaced without --force, folders walked."""

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def fast(tiny_model_dir, tmp_path):
    recipe = tmp_path / "fast.toml"
    recipe.write_text("draws = 1\nlong_side = 64\n")
    return ["--model", tiny_model_dir, "--recipe", recipe]


def _rgb(path, w=24, h=20, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _records(stdout):
    return [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]


def test_same_names_in_two_folders_mirror_the_folders(run, fast, tmp_path):
    """a/x.png and b/x.png both went to x.mask.png: the second silently replaced the first."""
    a, b = _rgb(tmp_path / "in" / "a" / "x.png", 24, 20), _rgb(tmp_path / "in" / "b" / "x.png", 30, 16, seed=1)
    out = tmp_path / "out"
    code, stdout, err = run("find", "mug", a, b, *fast, "--out", out, "--json")
    assert code == 0, err
    assert Image.open(out / "a" / "x.mask.png").size == (24, 20)
    assert Image.open(out / "b" / "x.mask.png").size == (30, 16)
    paths = [r["mask_path"] for r in _records(stdout)]
    assert len(set(paths)) == 2 and all(Image.open(p) for p in paths)


def test_same_stem_other_suffix_keeps_both(run, fast, tmp_path):
    """good.jpg and good.png wrote one mask over the other ('9 written, 8 exist')."""
    folder = tmp_path / "in"
    _rgb(folder / "good.jpg", 24, 20)
    _rgb(folder / "good.png", 30, 16, seed=1)
    _rgb(folder / "other.png", 10, 10)
    out = tmp_path / "out"
    code, stdout, err = run("find", "mug", folder, *fast, "--out", out, "--json")
    assert code == 0, err
    assert Image.open(out / "good.jpg.mask.png").size == (24, 20)
    assert Image.open(out / "good.png.mask.png").size == (30, 16)
    assert (out / "other.mask.png").exists()  # no clash: its plain name
    assert len({r["mask_path"] for r in _records(stdout)}) == 3


def test_a_second_run_does_not_replace_files_without_force(run, fast, tmp_path):
    img = _rgb(tmp_path / "k.png")
    out = tmp_path / "out"
    assert run("find", "mug", img, *fast, "--out", out)[0] == 0
    before = (out / "k.mask.png").read_bytes()
    (out / "k.overlay.png").write_bytes(b"a file the user put here")
    code, _, err = run("find", "cup", img, *fast, "--out", out)
    assert code != 0 and "--force" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (out / "k.mask.png").read_bytes() == before  # nothing replaced
    assert (out / "k.overlay.png").read_bytes() == b"a file the user put here"
    code, stdout, err = run("find", "cup", img, *fast, "--out", out, "--force", "--json")
    assert code == 0, err
    assert (out / "k.overlay.png").read_bytes() != b"a file the user put here"
    assert _records(stdout)[0]["phrase"] == "cup"


def test_segment_refuses_to_replace_too(run, fast, tmp_path):
    img = _rgb(tmp_path / "s.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "s.legend.json").write_text("mine")
    code, _, err = run("segment", img, "--labels", "cat,dog", *fast, "--out", out)
    assert code != 0 and "--force" in err and (out / "s.legend.json").read_text() == "mine"
    assert not (out / "s.labels.png").exists()


def test_recursive_walks_subfolders_and_mirrors_them(run, fast, tmp_path):
    root = tmp_path / "album"
    _rgb(root / "top.png")
    _rgb(root / "2024" / "x.png")
    _rgb(root / "2025" / "deep" / "x.png")
    _rgb(root / ".hidden" / "h.png")
    out = root / "masks"  # inside the walked folder: its outputs are not read back as inputs
    code, _, err = run("find", "mug", root, *fast, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["top.mask.png", "top.overlay.png"]  # not recursive
    code, _, err = run("find", "mug", root, *fast, "--out", out, "--recursive", "--force")
    assert code == 0, err
    assert (out / "top.mask.png").exists() and (out / "2024" / "x.mask.png").exists()
    assert (out / "2025" / "deep" / "x.mask.png").exists()
    assert not list(out.rglob("h.mask.png")) and not list(out.rglob("*.mask.mask.png"))


def test_find_prints_a_line_per_image(run, fast, tmp_path):
    """Without --json, find printed only 'N image(s) written'."""
    folder = tmp_path / "in"
    _rgb(folder / "one.png")
    _rgb(folder / "two.png", seed=3)
    (folder / "bad.png").write_bytes(b"\x89PNG broken")
    code, stdout, err = run("find", "mug", folder, *fast, "--out", tmp_path / "o")
    assert code == 0, err
    for col in ("image", "found", "presence", "area"):
        assert col in stdout
    lines = {name: next(line for line in stdout.splitlines() if name in line) for name in ("one.png", "two.png", "bad.png")}
    assert "skipped" in lines["bad.png"]
    for name in ("one.png", "two.png"):
        assert ("yes" in lines[name] or "no" in lines[name]) and "%" in lines[name]


def test_json_records_follow_coco(run, fast, tmp_path):
    img = _rgb(tmp_path / "c.png", 40, 30)
    code, stdout, err = run("find", "mug", img, *fast, "--out", tmp_path / "o", "--json", "--recipe",
                            _recipe(tmp_path, "draws = 1\nlong_side = 64\nmin_presence = 0.0\n"))
    assert code == 0, err
    from personaseg.masks import rle_decode

    r = _records(stdout)[0]
    mask = rle_decode(r["rle"])
    if r["bbox"] is not None:
        x, y, w, h = r["bbox"]
        ys, xs = np.nonzero(mask)
        assert [x, y, x + w, y + h] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert r["area"] == mask.sum()
    for inst in r["instances"]:
        assert rle_decode(inst["rle"]).sum() == inst["area"]


def _recipe(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_segment_takes_many_images_and_says_what_it_adds(run, fast, tmp_path):
    _rgb(tmp_path / "in" / "a.png")
    _rgb(tmp_path / "in" / "b.jpg", seed=2)
    out = tmp_path / "out"
    code, _, err = run("segment", tmp_path / "in", "--labels", "cat,dog", *fast, "--out", out)
    assert code == 0, err
    assert (out / "a.labels.png").exists() and (out / "b.labels.png").exists()
    legend = json.loads((out / "a.legend.json").read_text())
    assert "river" in legend["prompt"] and legend["background_words"][:2] == ["tree", "river"]
    assert "background words" in err and "--no-background-words" in err
    code, _, err = run("segment", tmp_path / "in" / "a.png", "--labels", "cat,dog", *fast, "--out", out,
                       "--no-background-words", "--force")
    assert code == 0, err
    legend = json.loads((out / "a.legend.json").read_text())
    assert legend["prompt"] == "a photo including cat, and dog." and legend["background_words"] == []
    code, help_text, _ = run("segment", "--help")
    assert "background words" in " ".join(help_text.split()) and "--no-background-words" in help_text


def test_overlay_label_sits_above_the_image(run, fast, tmp_path):
    """The label covered the top of small images and cut long names."""
    img = _rgb(tmp_path / "small.png", 32, 32)
    code, _, err = run("find", "red mug on a table", img, *fast, "--out", tmp_path / "o")
    assert code == 0, err
    ov = Image.open(tmp_path / "o" / "small.overlay.png")
    assert ov.height > 32 and ov.width > 32  # a band above, widened for the whole text
