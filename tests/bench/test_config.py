"""BenchConfig checks and bench recipes (flat learn recipe, or [learn] / [find] tables)."""

import pytest

from personaseg.bench.config import BenchConfig, read_recipe
from personaseg.bench.learning import learn_config
from personaseg.errors import ConfigError


def test_bench_config_checks():
    assert BenchConfig(method="lora", baselines=["class-word", "lora", "ti"]).methods == ["lora", "class-word", "ti"]
    for bad in ({"method": "dreambooth"}, {"baselines": ["clip"]}, {"layout": "coco"}, {"limit": 0}, {"shots": 0}):
        with pytest.raises(ConfigError):
            BenchConfig(**bad)


def test_recipes(tmp_path):
    flat = tmp_path / "ti.toml"
    flat.write_text('steps = 5\nresolution = 64\n')
    assert read_recipe(flat) == ({"steps": 5, "resolution": 64}, {})
    tables = tmp_path / "both.toml"
    tables.write_text("[learn]\nsteps = 7\n\n[find]\ndraws = 2\n")
    assert read_recipe(tables) == ({"steps": 7}, {"draws": 2})
    mixed = tmp_path / "mixed.toml"
    mixed.write_text("steps = 1\n[find]\ndraws = 2\n")
    with pytest.raises(ConfigError, match="outside the"):
        read_recipe(mixed)
    assert read_recipe(None) == ({}, {})


def test_learn_config_layers():
    cfg = learn_config("lora", {"steps": 3, "method": "ti", "class_word": "cup"}, "mug", seed=4)
    assert (cfg.method, cfg.steps, cfg.class_word, cfg.seed) == ("lora", 3, "mug", 4)  # dataset wins
    assert learn_config("ti", {"seed": 9}, "mug", seed=None).seed == 9
    with pytest.raises(ConfigError, match="unknown setting 'stepz'"):
        learn_config("ti", {"stepz": 3}, "mug", seed=None)
