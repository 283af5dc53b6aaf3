"""learn's stopping rule: it stops once the token's find map on its photos stops moving, and says so."""

import pytest
import torch

from personaseg.concepts import LearnConfig, learn
from personaseg.concepts.calibrate import find_spec
from personaseg.concepts.data import load_photos
from personaseg.concepts.stopping import StopWhenStable
from personaseg.concepts.trainer import Trainer
from personaseg.errors import ConfigError
from personaseg.models import load_pipeline
from personaseg.runtime import make_accelerator


def test_photo_maps_read_the_same_input_each_time(tiny_sd, photos, tiny_cfg):
    """Two reads with the token unchanged are equal (so a change is the token's), and a change of the
    token's vector moves them."""
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    cfg = tiny_cfg(stop_when_stable=0.5).resolved()
    photo_set = load_photos(photos, cfg.resolution)
    with Trainer(pipe, "<mymug>", cfg, make_accelerator("no"), photo_set, contrast=find_spec(pipe, card)) as tr:
        rule = StopWhenStable(tr, cfg.stop_when_stable)
        first = rule.photo_maps()
        assert first.shape[0] == len(photo_set) and 0.0 <= float(first.min()) and float(first.max()) <= 1.0
        assert torch.equal(first, rule.photo_maps())
        assert not rule.settled() and rule.changes == []  # the first check only takes the reference
        assert rule.settled() and rule.changes == [0.0]
        with torch.no_grad():
            tr.rows.rows.add_(torch.randn_like(tr.rows.rows) * 5)
        assert float((rule.photo_maps() - first).abs().mean()) > 0


def test_learn_stops_at_the_first_check_that_settles(tiny_sd, photos, tmp_path, tiny_cfg):
    """With a tolerance no change can reach (1.0: maps are in [0, 1], and they do not move by all of
    it), learn stops at the second check, and concept.json says where and what it read."""
    cfg = tiny_cfg(steps=12, stop_when_stable=1.0, stop_check_every=3)
    concept = learn(photos, "<mymug>", cfg, model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    assert concept.meta["steps_run"] == 6 and len(concept.meta["map_changes"]) == 1
    assert concept.meta["steps"] == 12  # the budget stays what was asked


def test_without_the_rule_every_step_runs(tiny_sd, photos, tmp_path, tiny_cfg):
    concept = learn(photos, "<mymug>", tiny_cfg(steps=3), model=str(tiny_sd), concepts_dir=tmp_path / "c",
                    progress=False)
    assert "steps_run" not in concept.meta and "map_changes" not in concept.meta


@pytest.mark.parametrize("bad", [{"stop_when_stable": -0.1}, {"stop_when_stable": 1.5},
                                 {"stop_when_stable": float("nan")}, {"guided_stop_when_stable": 2.0},
                                 {"stop_check_every": 0}])
def test_bad_stopping_settings(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        LearnConfig(**bad)


def test_the_cli_says_where_it_stopped_and_zero_turns_it_off(run, tiny_sd, photos, tmp_path):
    recipe = tmp_path / "checks.toml"
    recipe.write_text("stop_check_every = 3\n")
    common = ("learn", photos, "--token", "<mymug>", "--class-word", "mug", "--model", tiny_sd, "--steps", 12,
              "--resolution", 32, "--grad-accum", 1, "--checkpoint-every", 0, "--quiet", "--recipe", recipe)
    code, _, err = run(*common, "--stop-when-stable", 1.0, "--concepts-dir", tmp_path / "a")
    assert code == 0, err
    assert "6 of 12 steps: its maps on the photos had settled" in err
    code, _, err = run(*common, "--stop-when-stable", 0, "--concepts-dir", tmp_path / "b")
    assert code == 0 and "(ti, 12 steps" in err, err
