"""The toy model's card has one definition: toyworld train writes exactly the shipped file, its learn
settings are those of the shipped recipe ti-cpu, and the demo learns with that recipe."""

import dataclasses
import json

from personaseg.concepts import LearnConfig
from personaseg.config import build_config, load_recipe, to_dict
from personaseg.toyworld import TOY_MODEL_DIR
from personaseg.toyworld.card import CARD_RECIPE, json_text, model_card


def test_the_shipped_card_is_what_toyworld_train_writes():
    assert (TOY_MODEL_DIR / "personaseg.json").read_text() == json_text(model_card())


def test_the_card_learns_as_its_recipe_does():
    """`learn --model toy` without --recipe (the card fills what the user left None) and with the card's
    recipe give the same settings, but for checkpointing."""
    from personaseg.concepts.config import card_defaults
    from personaseg.models import read_card

    card = read_card("toy")
    by_card = card_defaults(LearnConfig(class_word="circle"), card).resolved()
    by_recipe = card_defaults(build_config(LearnConfig, load_recipe(CARD_RECIPE), {"class_word": "circle"}),
                               card).resolved()
    assert by_card.steps == 200 and by_card.guided_steps is None and by_card.batch_size == 4 and by_card.resolution == 64
    assert by_card.guided_stop_when_stable == 0.01 and by_card.stop_when_stable is None
    assert dataclasses.replace(by_card, checkpoint_every=0) == dataclasses.replace(by_recipe, checkpoint_every=0)
    # the card's contrast is Textual Inversion's: a LoRA run on the toy model does not take it
    lora = card_defaults(LearnConfig(method="lora"), card).resolved()
    assert lora.contrast_weight is None and lora.contrast_pairs is None and lora.steps == 200
    assert lora.guided_stop_when_stable is None


def test_the_demo_learns_with_the_cards_recipe():
    from personaseg.toyworld.demo import demo_learn_config

    cfg = demo_learn_config("circle", seed=3)
    want = build_config(LearnConfig, load_recipe(CARD_RECIPE), {"class_word": "circle", "seed": 3})
    assert to_dict(dataclasses.replace(cfg, checkpoint_every=0)) == to_dict(dataclasses.replace(want, checkpoint_every=0))
    assert cfg.checkpoint_every == 0 and json.loads(json_text(model_card()))["learn"]["steps"] == cfg.steps
