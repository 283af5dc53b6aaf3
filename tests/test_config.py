"""FindConfig's bounds (issue 21 item 6): a flag, a recipe and the API are refused alike, in one
line that says what is allowed, before anything is allocated."""

import pytest

from personaseg.concepts import LearnConfig
from personaseg.config import FindConfig, build_config
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
