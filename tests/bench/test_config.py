"""BenchConfig checks and bench recipes (flat learn recipe, or [learn] / [find] tables)."""

import pytest

from personaseg.bench.config import BenchConfig, read_recipe
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
