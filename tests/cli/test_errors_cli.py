"""Errors reach the user as one line: unknown devices, offline models, hand-made tokenizers, bugs."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def fast(tiny_model_dir, tmp_path):
    recipe = tmp_path / "fast.toml"
    recipe.write_text("draws = 1\nlong_side = 64\n")
    return ["--model", tiny_model_dir, "--recipe", recipe]


def _one_line(err):
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_device_this_machine_lacks_is_one_line(run, fast, img, tmp_path):
    device = "cuda:99" if torch.cuda.is_available() else "cuda"  # was a traceback from torch's lazy init
    code, _, err = run("find", "mug", img, *fast, "--device", device, "--out", tmp_path / "o")
    assert code != 0 and f"--device {device} is not available" in err and "--device cpu" in err
    _one_line(err)
    assert not (tmp_path / "o").exists()


def test_unexpected_errors_are_one_line_with_where_to_look(run, fast, img, tmp_path, monkeypatch):
    from personaseg.segmenter import Segmenter

    def broken(self, *a, **k):
        raise RuntimeError("something inside broke\nsecond line of detail")

    monkeypatch.setattr(Segmenter, "find", broken)
    monkeypatch.delenv("PERSONASEG_DEBUG", raising=False)
    code, _, err = run("find", "mug", img, *fast, "--out", tmp_path / "o")
    assert code == 1 and "RuntimeError: something inside broke" in err and "PERSONASEG_DEBUG=1" in err
    _one_line(err)
    monkeypatch.setenv("PERSONASEG_DEBUG", "1")
    from personaseg.cli.app import main

    with pytest.raises(RuntimeError, match="something inside broke"):
        main(["find", "mug", str(img), *map(str, fast), "--out", str(tmp_path / "o")])


def test_tokenizer_without_model_max_length_uses_the_text_encoders(run, tiny_model_dir, img, tmp_path):
    """Hand-assembled folders often lack model_max_length (transformers then says 10**30)."""
    model = tmp_path / "handmade"
    shutil.copytree(tiny_model_dir, model)
    cfg_path = model / "tokenizer" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("model_max_length", None)
    cfg_path.write_text(json.dumps(cfg))
    recipe = tmp_path / "fast.toml"
    recipe.write_text("draws = 1\nlong_side = 64\n")
    code, _, err = run("find", "mug", img, "--model", model, "--recipe", recipe, "--out", tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "x.mask.png").exists()


def test_a_model_missing_offline_is_one_balanced_line(run, img, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run("find", "mug", img, "--model", "nobody-here/no-such-model-xyz", "--out", tmp_path / "o")
    assert code != 0 and "nobody-here/no-such-model-xyz" in err
    _one_line(err)
    assert err.count("(") == err.count(")"), err


def testload_reason_never_leaves_a_parenthesis_open():
    from personaseg.models import load_reason

    long = "Cannot load x: the model is not here (" + "very long detail " * 20 + ") and more"
    got = load_reason(OSError(long))
    assert got.count("(") == got.count(")") and len(got) <= 170, got
    assert load_reason(OSError("short (closed) reason")) == "short (closed) reason"
    assert load_reason(OSError("stray ) paren")).count(")") == 0
