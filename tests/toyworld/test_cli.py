"""`personaseg toyworld train | sample | make-bench` end to end (tiny recipe, in-process)."""

import json

from PIL import Image


TINY_RECIPE = """
n_scenes = 6
threads = 1
vae_steps = 2
vae_batch = 2
steps = 2
batch = 2
warmup = 1
log_every = 1
snapshot_every = 0
ground_loss = 0.1
pad_loss = 1.0
[model]
vae_channels = [16, 16]
unet_channels = [16, 16, 16]
unet_heads = [1, 1, 1]
text_hidden = 16
text_layers = 1
text_heads = 1
"""


def test_train_then_sample(run, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    model = tmp_path / "model"
    code, out, err = run("toyworld", "train", "--recipe", recipe, "--out", model, "--mixed-precision", "bf16")
    assert code == 0, err
    assert "wall time" in out and (model / "model_index.json").exists()
    log = json.loads((model / "train_log.json").read_text())
    assert log["report"]["steps"] == 2 and log["config"]["mixed_precision"] == "bf16"
    png = tmp_path / "s.png"
    code, out, err = run("toyworld", "sample", "a red circle", "--model", model, "--steps", 1, "--n", 2, "--out", png)
    assert code == 0, err
    assert Image.open(png).size == (2 * 2 * 64, 2 * 64)


def test_bad_recipe_is_one_line(run, tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text("stepz = 1\n")
    code, _, err = run("toyworld", "train", "--recipe", recipe, "--out", tmp_path / "m")
    assert code != 0 and "stepz" in err and "Traceback" not in err
    code, _, err = run("toyworld", "train", "--out", tmp_path / "m", "--mixed-precision", "fp16")
    assert code != 0 and "mixed_precision='fp16' is not no or bf16" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_make_bench(run, tmp_path):
    code, out, err = run("toyworld", "make-bench", "--seed", 1, "--out", tmp_path / "b", "--concepts", 2, "--scenes", 3)
    assert code == 0, err
    assert (tmp_path / "b" / "test" / "index.jsonl").exists() and "2 concepts" in out
    code, _, err = run("toyworld", "make-bench", "--seed", 1, "--out", tmp_path / "b")
    assert code != 0 and "not empty" in err
