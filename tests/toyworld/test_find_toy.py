"""End to end on the shipped toy model: a phrase's mask lands on its object.

A broken capture, layer map or T2M step drops the IoU to the untrained level (~0.05-0.10), far
under the floors, which sit well below what the shipped model measures (see below).
"""

import numpy as np
import pytest
from PIL import Image

from personaseg.toyworld import TOY_MODEL_DIR
from personaseg.toyworld.scenes import make_scene

# Measured on these 8 objects (draws 2, prompt "a {}", the card's settings), shipped model
# (recipes/toyworld.toml, with look_loss, late 2026-11-26): colour + shape phrase ("red circle") mIoU
# 0.922, maximum inside the object 8 of 8; bare shape word mIoU 0.800, 8 of 8. The model shipped
# before it (no look_loss): 0.910 and 0.898, 8 of 8 each; the colour-only model before that: shape
# word 0.476, 5 of 8, so a model whose shape words do not localise fails here. An untrained toy model
# of the same architecture (class word, measured in an earlier session): mIoU 0.08, maximum inside 0 of 8.
PHRASE_FLOOR, PHRASE_HITS = 0.6, 0.875
WORD_FLOOR, WORD_HITS = 0.6, 0.875

pytestmark = pytest.mark.skipif(
    not (TOY_MODEL_DIR / "model_index.json").exists(),
    reason=f"no shipped toy weights in {TOY_MODEL_DIR}",
)

SCENES = [  # (seed, specs): one object per shape, so the class word names exactly one object
    (1, [("circle", "red", "plain"), ("square", "blue", "striped")]),
    (2, [("triangle", "green", "dotted"), ("ring", "yellow", "plain")]),
    (3, [("cross", "purple", "plain")]),
    (4, [("square", "orange", "plain"), ("circle", "blue", "dotted"), ("cross", "green", "striped")]),
]


def _scores(phrase_of):
    from personaseg.config import FindConfig
    from personaseg.segmenter import Segmenter

    seg = Segmenter.from_pretrained("toy", device="cpu", dtype="float32", config=FindConfig(draws=2, prompt="a {}"))
    ious, hits = [], []
    for seed, specs in SCENES:
        scene = make_scene(seed, specs=specs)
        seg.set_image(Image.fromarray(scene.image))
        for k, obj in enumerate(scene.objects):
            result = seg.find(phrase_of(obj))
            gt = scene.masks[k]
            ious.append((result.mask & gt).sum() / max((result.mask | gt).sum(), 1))
            hits.append(gt.flat[np.argmax(result.scores)])
    return float(np.mean(ious)), float(np.mean(hits))


def test_phrases_find_their_objects():
    miou, hits = _scores(lambda obj: f"{obj.colour} {obj.shape}")
    assert hits >= PHRASE_HITS, f"score maximum inside the object in {hits:.0%} of cases"
    assert miou >= PHRASE_FLOOR, f"phrase mIoU {miou:.3f} < {PHRASE_FLOOR}"


def test_class_word_masks_overlap_their_objects():
    miou, hits = _scores(lambda obj: obj.shape)
    assert hits >= WORD_HITS, f"score maximum inside the object in {hits:.0%} of cases"
    assert miou >= WORD_FLOOR, f"class-word mIoU {miou:.3f} < {WORD_FLOOR}"
