"""End to end on the shipped toy model: the class word's mask lands on its object.

A broken capture, layer map or T2M step drops the IoU to the untrained level (~0.05-0.10), far
under the floor, which sits well below what the shipped model measures (see FLOOR).
"""

import numpy as np
import pytest
from PIL import Image

from personaseg.toyworld import TOY_MODEL_DIR
from personaseg.toyworld.scenes import make_scene

# Measured on these 8 objects (draws 2, prompt "a {}"): shipped model mIoU 0.261, maximum inside
# the object 50 %; an untrained toy model of the same architecture: mIoU 0.082, 0 %.
FLOOR = 0.18  # mean IoU floor, between the two
HITS = 0.375  # at least 3 of the 8 score maxima inside their object

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


def test_class_word_masks_find_their_objects():
    from personaseg.config import FindConfig
    from personaseg.segmenter import Segmenter

    seg = Segmenter.from_pretrained("toy", device="cpu", dtype="float32", config=FindConfig(draws=2, prompt="a {}"))
    ious, hits = [], []
    for seed, specs in SCENES:
        scene = make_scene(seed, specs=specs)
        seg.set_image(Image.fromarray(scene.image))
        for k, obj in enumerate(scene.objects):
            result = seg.find(obj.shape)
            gt = scene.masks[k]
            ious.append((result.mask & gt).sum() / max((result.mask | gt).sum(), 1))
            hits.append(gt.flat[np.argmax(result.scores)])
    assert np.mean(hits) >= HITS, f"score maximum inside the object in {np.mean(hits):.0%} of cases"
    assert np.mean(ious) >= FLOOR, f"class-word mIoU {np.mean(ious):.3f} < {FLOOR}"
