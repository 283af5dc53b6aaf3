"""LearnConfig: per-method defaults, validation, recipes."""

from pathlib import Path

import pytest

from personaseg.concepts import LearnConfig
from personaseg.concepts.config import fill_template
from personaseg.config import build_config, read_toml
from personaseg.errors import ConfigError

RECIPES = Path(__file__).parents[2] / "recipes"


def test_method_defaults_fill_only_unset_fields():
    ti = LearnConfig().resolved()
    assert (ti.lr, ti.steps, ti.grad_accum) == (5e-4, 3000, 4)
    assert ti.resolution is None  # the model card's, else 512: filled by learn once the model is known
    lora = LearnConfig(method="lora", steps=10).resolved()
    assert (lora.lr, lora.steps, lora.grad_accum, lora.max_grad_norm) == (1e-4, 10, 1, 1.0)
    assert lora.find_prompt == "a photo of a {} {class}"


@pytest.mark.parametrize("bad", [
    {"method": "dreambooth"}, {"mixed_precision": "fp8"}, {"vectors": 0}, {"resolution": 30},
    {"lr": -1.0}, {"find_prompt": "a photo"}, {"steps": 0}, {"templates": []}, {"templates": ["a photo"]},
])
def test_bad_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        LearnConfig(**bad)


def test_unknown_method_names_the_fix():
    with pytest.raises(ConfigError, match="--method ti or --method lora"):
        build_config(LearnConfig, {"method": "xyz"})


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.toml") if not p.name.startswith("toyworld")))
def test_shipped_recipes_are_valid(recipe):
    from personaseg.bench.config import read_recipe
    from personaseg.config import FindConfig

    learn, find = read_recipe(RECIPES / recipe)  # a flat learn recipe, or [learn] and [find] tables
    cfg = build_config(LearnConfig, learn, source=recipe).resolved()
    assert cfg.method in ("ti", "lora") and cfg.steps >= 1
    build_config(FindConfig, find, source=recipe)


def test_recipe_unknown_key_fails(tmp_path):
    (tmp_path / "r.toml").write_text('method = "ti"\nlearning_rate = 1e-3\n')
    with pytest.raises(ConfigError, match="learning_rate"):
        build_config(LearnConfig, read_toml(tmp_path / "r.toml"), source="r.toml")


def test_flags_override_recipe(tmp_path):
    (tmp_path / "r.toml").write_text("steps = 7\nresolution = 64\n")
    cfg = build_config(LearnConfig, read_toml(tmp_path / "r.toml"), {"steps": 3, "lr": None})
    assert (cfg.steps, cfg.resolution) == (3, 64)


def test_fill_template():
    assert fill_template("a photo of a {} {class}", "<a> <a>_1", "mug") == "a photo of a <a> <a>_1 mug"
    assert fill_template("a photo of a {} {class}", "<a>", None) == "a photo of a <a>"
    assert fill_template("a photo of a {} {class}", "{}", "red mug") == "a photo of a {} red mug"


@pytest.mark.parametrize("line, match", [
    ("init_word = 3", "init_word=3 in r.toml is not text"),
    ("class_word = true", "class_word=True in r.toml is not text"),
    ('steps = "ten"', "steps='ten' in r.toml is not a number"),
])
def test_recipe_value_of_the_wrong_type_is_one_line(tmp_path, line, match):
    (tmp_path / "r.toml").write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        build_config(LearnConfig, read_toml(tmp_path / "r.toml"), source="r.toml")
    assert build_config(LearnConfig, {"init_word": " cup  "}).init_word == "cup"
