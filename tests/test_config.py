"""Recipes found by name from the installed package, and settings defined once."""

import dataclasses

import pytest

from personaseg.config import RECIPES_DIR, FindConfig, find_config, load_recipe, read_toml, recipe_path
from personaseg.errors import ConfigError


def test_a_shipped_recipe_is_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the source tree: only the package's own files
    want = read_toml(RECIPES_DIR / "ti-cpu.toml")
    assert want["steps"] == 300
    for name in ("ti-cpu", "ti-cpu.toml", "recipes/ti-cpu.toml"):  # the last as the README writes it
        assert load_recipe(name) == want
    mine = tmp_path / "ti-cpu.toml"  # a file of that name here is the user's: it wins
    mine.write_text("steps = 7\n")
    assert load_recipe("ti-cpu.toml") == {"steps": 7} and recipe_path("ti-cpu") == RECIPES_DIR / "ti-cpu.toml"
    with pytest.raises(ConfigError, match="recipe nope not found.*lora-cpu.*ti-cpu"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing" / "ti-cpu.toml")  # a path names a file, never a shipped recipe


def test_find_config_reads_a_recipe_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.toml").write_text("tau = 0.3\n")
    assert find_config(recipe="f.toml").tau == 0.3


def test_mask_only_find_settings_come_from_find_config():
    from personaseg.models import MASK_ONLY_FIND

    fields = {f.name: f for f in dataclasses.fields(FindConfig)}
    assert MASK_ONLY_FIND == {name for name, f in fields.items() if f.metadata.get("mask_only")}
    # what the attention is read with is never mask-only (learned concepts depend on it)
    assert not MASK_ONLY_FIND & {"prompt", "timestep", "draws", "seed", "cross_layers", "long_side", "pad_rgb"}
    assert {"refine", "outline", "tau", "min_relative_presence"} <= MASK_ONLY_FIND
