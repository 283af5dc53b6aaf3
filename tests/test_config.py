"""Settings: their bounds (a flag, a recipe and the API are refused alike, in one line that says what
is allowed, before anything is allocated), recipes found by name from the installed package, and
settings defined once."""

import dataclasses

import pytest

from personaseg.concepts import LearnConfig
from personaseg.config import RECIPES_DIR, FindConfig, build_config, find_config, load_recipe, read_toml, recipe_path
from personaseg.errors import ConfigError

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("field, value, allowed", [
    ("draws", 1_000_000, "1..1000"), ("draws", 0, "1..1000"), ("draw_batch", 5000, "1..1000"),
    ("min_presence", NAN, "0..1"), ("min_presence", -0.1, "0..1"), ("min_presence", INF, "0..1"),
    ("min_relative_presence", NAN, "0..100"), ("min_relative_presence", -1.0, "0..100"),
    ("tau", NAN, "0..1"), ("tau_box", NAN, "0..1"), ("seed", -1, "0 .."), ("seed", 2**64, "0 .."),
    ("long_side", 32, "64..4096"), ("long_side", 100_000, "64..4096"), ("pad_rgb", (0, 0, 300), "three integers"),
])
def test_find_settings_out_of_bounds_say_what_is_allowed(field, value, allowed):
    with pytest.raises(ConfigError, match=f"{field}=") as err:
        FindConfig(**{field: value})
    assert allowed in str(err.value)
    with pytest.raises(ConfigError, match=f"{field}="):  # the same from a recipe or a flag
        build_config(FindConfig, {field: list(value) if isinstance(value, tuple) else value}, source="r.toml")


def test_find_bounds_keep_the_papers_settings():
    FindConfig(draws=10, min_presence=0.0, min_relative_presence=0.5, seed=0, long_side=1024)
    FindConfig(draws=1000, draw_batch=1000, min_presence=1.0)


@pytest.mark.parametrize("field, value", [
    ("steps", 10**9), ("vectors", 76), ("resolution", 4096), ("batch_size", 10_000), ("grad_accum", 0),
    ("contrast_weight", NAN), ("prior_weight", NAN), ("adam_weight_decay", -1.0), ("token_lr", 0.0),
    ("max_grad_norm", INF), ("lr", INF), ("seed", -3), ("lr_warmup_steps", -1), ("class_image_steps", 0),
])
def test_learn_settings_out_of_bounds_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"{field}="):
        LearnConfig(**{field: value})


def test_a_shipped_recipe_is_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the source tree: only the package's own files
    want = read_toml(RECIPES_DIR / "ti-cpu.toml")
    assert want["steps"] == 200
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


def test_resolve_find_fills_what_the_user_left_to_the_card_then_the_papers_defaults():
    """One function merges a model card into find's settings (the segmenter, learn's contrast and
    its presence calibration all read it): the user's fields win, None fields take the card's,
    and what neither sets takes the paper's (default prompt, refinement on, the token's outline)."""
    from types import SimpleNamespace

    from personaseg.config import DEFAULT_PROMPT, resolve_find

    card = SimpleNamespace(find_defaults={"long_side": 64, "refine": False, "outline": "with-class", "timestep": 300})
    got = resolve_find(FindConfig(outline="token"), card)
    assert (got.long_side, got.refine, got.outline, got.timestep) == (64, False, "token", 150)  # timestep is set: 150 wins
    plain = resolve_find(None, None)
    assert (plain.prompt, plain.refine, plain.outline, plain.long_side) == (DEFAULT_PROMPT, True, "token", None)
