"""The end-to-end demo on the shipped toy model: learn a personal object, find it among look-alikes.

Offline and on a CPU in a few minutes: make photos of one personal instance (a toy-world object
with a colour and pattern of its own), learn it with Textual Inversion, then outline it in scenes
where other objects of the same category stand beside it, next to what the plain class word
outlines. Writes ``demo.png`` (a row per scored scene: a photo learned from | scene | class-word
mask | personal mask, each mask with its IoU) and returns IoUs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .card import CARD_RECIPE


def demo_learn_config(class_word: str, seed: int, steps: int | None = None):
    """The demo's LearnConfig: the recipe the toy card's learn settings come from (Textual Inversion on
    the 64 px toy model), the object's class word, no checkpoints."""
    from ..concepts import LearnConfig
    from ..config import build_config, load_recipe

    return build_config(LearnConfig, load_recipe(CARD_RECIPE),
                        {"class_word": class_word, "seed": seed, "steps": steps, "checkpoint_every": 0},
                        source=CARD_RECIPE)


@dataclass
class DemoResult:
    concept: str  # the learned token
    class_word: str
    iou: dict[str, dict[str, float]] = field(default_factory=dict)  # subset -> {class-word, personal}
    picture: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(out: str | Path, seed: int = 0, scenes: int = 6, steps: int | None = None,
             model: str = "toy", progress: bool = True) -> DemoResult:
    """Run the demo into ``out`` (a new folder); see the module docstring."""
    from ..bench import open_dataset
    from ..bench.metrics import iou
    from ..concepts import learn
    from ..images import load_image
    from ..segmenter import Segmenter
    from ..viz import image_grid, overlay
    from .bench import make_bench

    out = Path(out)
    t0 = time.perf_counter()
    bench = make_bench(out / "data", seed=seed, concepts=1, scenes=scenes)
    data = open_dataset(bench.root, "mug19")  # the benchmark as `bench personal` reads it
    spec = data.concepts[bench.concepts[0]]
    class_word = spec.class_word
    token = f"<{spec.name}>"
    photos = bench.root / "concepts" / spec.name / "photos"
    t1 = time.perf_counter()
    config = demo_learn_config(class_word, seed, steps)
    learn(photos, token, config, model=model, concepts_dir=out / "concepts", force=True, progress=progress)
    t2 = time.perf_counter()
    seg = Segmenter.from_pretrained(model, concepts_dir=out / "concepts")
    rows, captions, ious = [], [], {}
    photo_list = [load_image(p) for p in spec.photos]
    for k, sample in enumerate(data.samples):
        image, gt = sample.load()  # RGB, bool (H, W)
        seg.set_image(image)
        by_class, personal = seg.find(class_word), seg.find(token)
        tag = sample.subset[0]  # the scene's kind; a distractor scene is also tagged semantic-distractor (Mug19's name)
        ious.setdefault(tag, {"class-word": [], "personal": []})
        ious[tag]["class-word"].append(iou(by_class.mask, gt))
        ious[tag]["personal"].append(iou(personal.mask, gt))
        # every scored scene, each row with one of the photos learned from (in turn)
        shown = dict(color=(255, 255, 255), alpha=0.0, dim=0.6)  # the object keeps its colour, the rest darkens
        rows.append([photo_list[k % len(photo_list)], image, overlay(image, by_class.mask, **shown),
                     overlay(image, personal.mask, **shown)])
        kind = "absent: not in the scene" if tag == "absent" else "with look-alikes" if tag == "distractor" else tag
        captions.append([f"photo {k % len(photo_list) + 1}", kind, *(
            f"IoU {ious[tag][m][-1]:.2f}" + ("" if r.found else ", not found")
            for m, r in (("class-word", by_class), ("personal", personal)))])
    picture = out / "demo.png"
    image_grid(rows, titles=["photo learned from", "scene", f'"{class_word}"', token], tile=160,
               captions=captions).save(picture)
    t3 = time.perf_counter()
    return DemoResult(
        concept=token, class_word=class_word,
        iou={tag: {k: float(np.mean(v)) for k, v in d.items()} | {"n": len(d["personal"])} for tag, d in ious.items()},
        picture=picture,
        seconds={"data": t1 - t0, "learn": t2 - t1, "find": t3 - t2, "total": t3 - t0},
    )
