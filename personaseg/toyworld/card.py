"""The toy model's card (``personaseg.json``): one definition, which ``toyworld train`` writes and which
ships in ``weights/`` (a test checks the shipped file is byte for byte :func:`json_text` of :func:`model_card`).
"""

from __future__ import annotations

import json

# Which transformer blocks personaseg reads (see docs/design.md, "personaseg.json").
LAYER_MAP = {
    # the 32x32 up blocks, which the shape classifiers teach shapes (linear probe 0.98; down_blocks.0,
    # before any downsampling, sees colour, not shape: 0.38). On seed 23 the shape model's TI scored
    # 71.0 with them, 69.2 adding down_blocks.0, 43.9 with all seven (benchmarks/RESULTS.md)
    "cross": [
        "up_blocks.2.attentions.0",  # 32x32
        "up_blocks.2.attentions.1",  # 32x32
    ],
    "self": "up_blocks.1.attentions.1",  # 16x16 (used when refine is turned on)
}
# FindConfig fields left None that the model decides (chosen on the seed-23 toy bench, see
# benchmarks/RESULTS.md): its native size; no self-attention refinement (it spread maps onto
# neighbours: TI 65.3 with, 76.2 without); a concept drawn with its class word (outline "with-class":
# fresh seed 707, TI 66.5 -> 79.4), which also reads its presence with it; "not found" for a concept
# below 0.85 of that presence on its own photos (picked on eleven seeds' records: 4.3 % of absent
# scenes misfire, 3.7 % of present ones are lost; the token's own presence at 0.7 misfired on 14 %)
FIND_DEFAULTS = {"long_side": 64, "min_relative_presence": 0.85, "refine": False, "outline": "with-class"}
# Rendered class images shipped in the model folder (toyworld.bench.write_class_images): the toy model
# cannot draw its classes, so these stand in for the class images SD would generate.
CLASS_IMAGES = "class-images"
# LearnConfig fields left None that the model decides: TI prompts in the captions' own grammar (the
# diffusers imagenet templates are mostly unknown words to the toy tokenizer, which spells them out
# letter by letter: "a rendering of" even yields the shape word "ring"); TI contrast against the
# rendered class images (a token started from its shape word otherwise matches every object of that
# shape: distractor mIoU 55.3 -> 85.5 on seed 23), reading 2 photos and 2 class images a step
# (benchmarks/RESULTS.md, "A cheaper contrast").
LEARN_DEFAULTS = {"templates": ["a {}", "a photo of a {}"], "contrast_weight": 1.0,
                  "class_images": CLASS_IMAGES + "/{class}", "contrast_pairs": 2}
# ... and its learning schedule and native size (64 px, not SD's 512), read from one shipped recipe, so
# `learn --model toy` without --recipe is the fast toy learn and the recipe and the card cannot drift
CARD_RECIPE = "ti-cpu"
CARD_FROM_RECIPE = ("steps", "guided_stop_when_stable", "lr", "batch_size", "grad_accum", "resolution")


def model_card() -> dict:
    """The toy model's ``personaseg.json``, as ``toyworld train`` writes it and as shipped."""
    from ..config import load_recipe

    recipe = load_recipe(CARD_RECIPE)
    learn = {**LEARN_DEFAULTS, **{k: recipe[k] for k in CARD_FROM_RECIPE}}
    return {"layer_map": LAYER_MAP, "find": FIND_DEFAULTS, "learn": learn}


def json_text(data) -> str:
    """How the model folder's JSON files are written (the shipped card's bytes)."""
    return json.dumps(data, indent=2) + "\n"
