"""Tiny example datasets in each layout (``data/make_example.py``, the tests).

Scenes are flat-coloured shapes drawn with PIL, with exact masks: a concept is one shape in one
colour; distractors are the same shape in other colours. They exercise the readers and the
harness, not a model (the toy world's ``make-bench`` writes a benchmark its model can solve).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..io import save_png_atomic
from ..viz import voc_palette

COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 170, 60), "yellow": (230, 210, 40)}
CONCEPTS = [("redmug", "mug", "red"), ("bluebox", "box", "blue")]  # name, class word, colour
SHAPE = {"mug": "ellipse", "box": "rectangle"}


def _scene(rng: np.random.Generator, size: int, objects: list[tuple[str, str]]) -> tuple[Image.Image, list[np.ndarray]]:
    """Draw ``objects`` ((shape, colour) pairs) at random places; one exact mask per object."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 230, 3)))
    masks = []
    for shape, colour in objects:
        s = int(rng.integers(size // 5, size // 3))
        x, y = (int(v) for v in rng.integers(0, size - s, 2))
        layer = Image.new("L", (size, size), 0)
        getattr(ImageDraw.Draw(layer), shape)([x, y, x + s, y + s], fill=255)
        image.paste(COLOURS[colour], mask=layer)
        m = np.asarray(layer) > 0
        masks = [prev & ~m for prev in masks] + [m]  # later objects occlude earlier ones
    return image, masks


def make_mug19(out: str | Path, seed: int = 0, size: int = 64, photos: int = 2) -> Path:
    """Mug19-style layout: 2 concepts, each with photos and test scenes alone / distractor / absent."""
    out, rng = Path(out), np.random.default_rng(seed)
    lines = []
    for name, word, colour in CONCEPTS:
        folder = out / "concepts" / name
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        (folder / "concept.toml").write_text(f'class_word = "{word}"\n')
        for k in range(photos):
            image, masks = _scene(rng, size, [(SHAPE[word], colour)])
            save_png_atomic(folder / "photos" / f"{k:02d}.png", image)
            save_png_atomic(folder / "masks" / f"{k:02d}.png", masks[0])  # what --photo-masks reads
        other = next(c for c in COLOURS if c != colour)
        cases = [("alone", [(SHAPE[word], colour)], 0),
                 ("distractor", [(SHAPE[word], other), (SHAPE[word], colour)], 1),
                 ("absent", [(SHAPE[word], other)], None)]
        for tag, objects, index in cases:
            stem = f"{name}-{tag}"
            image, masks = _scene(rng, size, objects)
            mask = masks[index] if index is not None else np.zeros((size, size), bool)
            save_png_atomic(out / "test" / "images" / f"{stem}.png", image)
            save_png_atomic(out / "test" / "masks" / stem / f"{name}.png", mask)
            tags = [tag] + (["semantic-distractor"] if tag == "distractor" else [])
            lines.append({"image": f"images/{stem}.png", "concept": name,
                          "mask": f"masks/{stem}/{name}.png", "subset": tags})
    (out / "test" / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


def make_perseg(out: str | Path, seed: int = 0, size: int = 64, images: int = 3) -> Path:
    """PerSeg layout: Images/<obj>/NN.jpg and Annotations/<obj>/NN.png for 2 objects."""
    out, rng = Path(out), np.random.default_rng(seed)
    for name, word, colour in CONCEPTS:
        obj = f"{word}2"  # PerSeg-like folder name (class word + instance number)
        for k in range(images):
            image, masks = _scene(rng, size, [(SHAPE[word], colour)])
            (out / "Images" / obj).mkdir(parents=True, exist_ok=True)
            image.save(out / "Images" / obj / f"{k:02d}.jpg", quality=95)
            save_png_atomic(out / "Annotations" / obj / f"{k:02d}.png", masks[0])
    return out


def make_hf(out: str | Path, seed: int = 0, size: int = 64) -> Path:
    """A ``save_to_disk`` Hugging Face dataset (split ``test``) with the Mug19 example's content."""
    import datasets  # noqa: F401  (the optional dependency: fail before writing anything)

    from .mug19 import read_mug19

    with tempfile.TemporaryDirectory() as tmp:
        _save_hf(read_mug19(make_mug19(Path(tmp) / "src", seed=seed, size=size)), out)
    return Path(out)


def _save_hf(data, out: str | Path) -> None:
    import datasets

    rows: dict[str, list] = {"id": [], "image": [], "mask": [], "concept": [], "photos": [], "class_word": [], "subset": []}
    for s in data.samples:
        image, mask = s.load()
        rows["id"].append(s.image)
        rows["image"].append(image)
        rows["mask"].append(Image.fromarray(mask.astype(np.uint8) * 255))
        rows["concept"].append(s.concept)
        rows["photos"].append([Image.open(p).convert("RGB") for p in data.concepts[s.concept].photos])
        rows["class_word"].append(data.concepts[s.concept].class_word)
        rows["subset"].append(s.subset)
    features = datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(), "mask": datasets.Image(),
        "concept": datasets.Value("string"), "photos": datasets.Sequence(datasets.Image()),
        "class_word": datasets.Value("string"), "subset": datasets.Sequence(datasets.Value("string")),
    })
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(str(out))


def make_voc(out: str | Path, seed: int = 0, size: int = 64, images: int = 3, split: str = "train") -> Path:
    """VOC2012 layout: JPEGImages/, SegmentationClass/ palette PNGs (255 = void border), ImageSets."""
    out, rng = Path(out), np.random.default_rng(seed)
    ids = []
    classes = [(15, "ellipse", "red"), (9, "rectangle", "blue"), (5, "ellipse", "green")]  # person, chair, bottle
    for k in range(images):
        picked = [classes[k % 3], classes[(k + 1) % 3]][: 1 + k % 2]
        image, masks = _scene(rng, size, [(shape, colour) for _, shape, colour in picked])
        label = np.zeros((size, size), np.uint8)
        for (cls, _, _), m in zip(picked, masks):
            label[m] = cls
            edge = m & ~np.pad(m, 1)[2:, 1:-1]  # a 1-px void line at each object's lower edge
            label[edge] = 255
        image_id = f"2007_{k:06d}"
        ids.append(image_id)
        (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
        image.save(out / "JPEGImages" / f"{image_id}.jpg", quality=95)
        png = Image.fromarray(label, mode="P")
        png.putpalette(voc_palette())
        save_png_atomic(out / "SegmentationClass" / f"{image_id}.png", png)
    (out / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    return out
