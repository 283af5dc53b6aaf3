"""`personaseg bench` end to end with the real learn and Segmenter on a tiny random model."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from personaseg.bench import examples
from personaseg.cli.app import app


@pytest.fixture(scope="module")
def mug19(tmp_path_factory):
    return examples.make_mug19(tmp_path_factory.mktemp("mug19"))


def test_bench_personal_end_to_end(tiny_model_dir, mug19, tmp_path):
    recipe = tmp_path / "quick.toml"
    recipe.write_text("[learn]\ngrad_accum = 1\ncheckpoint_every = 0\n\n[find]\nlong_side = 64\n")
    out = tmp_path / "run"
    args = ["bench", "personal", str(mug19), "--model", str(tiny_model_dir), "--device", "cpu",
            "--recipe", str(recipe), "--steps", "1", "--resolution", "32", "--draws", "1", "--limit", "2",
            "--save-masks", "--out", str(out), "--concepts-dir", str(tmp_path / "concepts")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == ["ti", "class-word"]
    assert report["config"]["learn"]["ti"]["steps"] == 1 and report["config"]["find"]["draws"] == 1
    assert report["model"] == str(tiny_model_dir)
    for m in ("ti", "class-word"):
        assert 0.0 <= report["results"][m]["all"]["mIoU"] <= 1.0 and report["results"][m]["all"]["n"] == 2
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {x["method"] for x in lines} == {"ti", "class-word"}
    assert lines[0]["phrase"].startswith("<bench-redmug-ti-")
    with Image.open(out / "masks" / "ti" / "redmug-alone" / "redmug.png") as im:
        assert im.size == (64, 64)
    assert (out / "grid.png").exists() and (out / "report.md").exists()
    # resuming a finished run: nothing is redone or learned
    result = CliRunner().invoke(app, args + ["--resume"])
    assert result.exit_code == 0, result.output
    learned = [json.loads(x) for x in (out / "learn.jsonl").read_text().splitlines()]
    assert [x["cached"] for x in learned] == [False]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4
    # a new run with the same photos, settings and model takes the concept from the cache
    out2 = tmp_path / "run2"
    args2 = [a if a != str(out) else str(out2) for a in args]
    result = CliRunner().invoke(app, args2 + ["--limit", "1", "--no-grid"])
    assert result.exit_code == 0, result.output
    learned = [json.loads(x) for x in (out2 / "learn.jsonl").read_text().splitlines()]
    assert [x["cached"] for x in learned] == [True] and learned[0]["token"] == lines[0]["phrase"]


def test_bench_errors_are_one_line(mug19, tmp_path):
    result = CliRunner().invoke(app, ["bench", "personal", str(mug19), "--subset", "nope", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "unknown subset tag(s) nope" in str(result.exception)
    result = CliRunner().invoke(app, ["bench", "personal", str(tmp_path / "missing")])
    assert "not a benchmark folder" in str(result.exception)


def test_bench_voc_end_to_end(tiny_model_dir, tmp_path):
    voc = examples.make_voc(tmp_path / "voc", images=2)
    recipe = tmp_path / "find.toml"
    recipe.write_text("long_side = 64\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["bench", "voc", str(voc), "--model", str(tiny_model_dir), "--device", "cpu",
                                      "--recipe", str(recipe), "--draws", "1", "--out", str(out), "--save-masks"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    r = report["results"]["t2m"]
    assert r["n"] == 2 and 0.0 <= r["mIoU"] <= 1.0 and set(r["per_class"]) >= {"person", "chair"}
    assert report["config"]["find"]["tau_box"] == 0.2 and report["config"]["find"]["draws"] == 1  # voc preset
    with Image.open(out / "masks" / "t2m" / "2007_000001.png") as im:
        labels = np.asarray(im)
    assert im.size == (64, 64) and set(np.unique(labels)) <= {0, 5, 9}  # bottle, chair: the image's labels


def test_bench_photo_masks_end_to_end(tiny_model_dir, mug19, tmp_path):
    """--photo-masks with the real learn: a ti+masks row beside plain TI, each concept learned from
    its photos' masks (recorded in its concept.json), and what learning cost per method."""
    recipe = tmp_path / "quick.toml"
    recipe.write_text("[learn]\ngrad_accum = 1\ncheckpoint_every = 0\nguided_steps = 1\n\n[find]\nlong_side = 64\n")
    out, store = tmp_path / "run", tmp_path / "concepts"
    args = ["bench", "personal", str(mug19), "--model", str(tiny_model_dir), "--device", "cpu", "--recipe", str(recipe),
            "--steps", "2", "--resolution", "32", "--draws", "1", "--limit", "2", "--photo-masks", "--baselines", "ti",
            "--shots", "1", "--out", str(out), "--concepts-dir", str(store), "--no-grid"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == ["ti+masks", "ti"]
    token = report["concepts"]["redmug"]["tokens"]["ti+masks"]
    meta = json.loads((store / token.strip("<>") / "concept.json").read_text())
    assert meta["steps"] == 1 and meta["masks"][0]["source"].endswith("masks/00.png") and len(meta["photos"]) == 1
    assert all(report["results"][m]["learn_s"] > 0 and report["results"][m]["learn_cpu_s"] > 0 for m in ("ti+masks", "ti"))
