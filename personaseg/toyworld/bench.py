"""A personal-RIS benchmark in the toy world, in the harness's Mug19-style layout.

Each concept is a personal instance, one (shape, colour, pattern) combination; its class word is
the shape. Layout (see data/README.md)::

    concepts/<name>/photos/*.png      the instance alone: varied position, size, background
    concepts/<name>/masks/*.png       each photo's 0/255 mask of the instance (same stem)
    concepts/<name>/concept.toml      class_word = "ring"
    test/images/<stem>.png
    test/masks/<stem>/<name>.png      0/255 visible pixels of the instance (empty when absent)
    test/index.jsonl                  {"image", "concept", "mask", "subset"} per line

Subsets: ``alone`` (the instance, no other object of its shape), ``distractor`` and
``semantic-distractor`` (the instance beside 1-2 objects of its shape in other colours) and
``absent`` (no instance; often an object of its shape in another colour).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io import check_new_folder, new_folder
from .scenes import COLOURS, PATTERNS, SHAPES, draw, place

Spec = tuple[str, str, str]  # (shape, colour, pattern)


@dataclass
class BenchSummary:
    """What :func:`make_bench` wrote."""

    root: Path  # the benchmark folder
    concepts: list[str]  # concept names
    counts: dict[str, int]  # test samples per subset tag


def instance_name(spec: Spec) -> str:
    """Folder name of a personal instance, e.g. ``ring-striped-yellow``."""
    shape, colour, pattern = spec
    return f"{shape}-{pattern}-{colour}"


def pick_concepts(rng: np.random.Generator, k: int) -> list[Spec]:
    """``k`` distinct instances, cycling through the shapes so categories differ first."""
    if k < 1 or k > len(SHAPES) * len(COLOURS) * len(PATTERNS):
        raise InputError(f"--concepts {k} out of range", hint="use 1..90")
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    specs: list[Spec] = []
    while len(specs) < k:
        shape = shapes[len(specs) % len(shapes)]
        spec = (shape, list(COLOURS)[rng.integers(len(COLOURS))], PATTERNS[rng.integers(len(PATTERNS))])
        if spec not in specs:
            specs.append(spec)
    return specs


def other_object(rng: np.random.Generator, spec: Spec, same_shape: bool) -> Spec:
    """A random object that is not the instance: same shape in another colour, or another shape."""
    shape, colour, _ = spec
    colours = [c for c in COLOURS if c != colour] if same_shape else list(COLOURS)
    shapes = [shape] if same_shape else [s for s in SHAPES if s != shape]
    return (shapes[rng.integers(len(shapes))], colours[rng.integers(len(colours))],
            PATTERNS[rng.integers(len(PATTERNS))])


def scene_specs(rng: np.random.Generator, spec: Spec, subset: str) -> tuple[list[Spec], int | None]:
    """Objects of one test scene and the instance's index among them (None when absent)."""
    if subset == "alone":
        others = [other_object(rng, spec, False) for _ in range(rng.integers(0, 3))]
    elif subset == "distractor":
        others = [other_object(rng, spec, True) for _ in range(rng.integers(1, 3))]
        others += [other_object(rng, spec, False) for _ in range(rng.integers(0, 2))]
    else:  # absent: others only, usually one of the instance's shape
        others = [other_object(rng, spec, True)] if rng.random() < 0.7 else []
        others += [other_object(rng, spec, False) for _ in range(rng.integers(1, 3))]
    order = rng.permutation(len(others) + (subset != "absent"))
    specs = [spec if i == len(others) else others[i] for i in order]
    where = None if subset == "absent" else int(np.flatnonzero(order == len(others))[0])
    return specs, where


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_class_images(out: str | Path, per_class: int = 32, seed: int = 0) -> Path:
    """``out/<shape>/class_NNNN.png``: photos of one object of each class in random looks (colour,
    pattern), drawn like a concept's photos. The toy model draws its classes badly (see
    ``benchmarks/toy_samples.py``), so these stand in for the class images SD would generate for
    Textual Inversion's contrast; they know nothing of any benchmark's instances."""
    out, rng = Path(out), np.random.default_rng(seed)
    for shape in SHAPES:
        for i in range(per_class):
            spec = (shape, list(COLOURS)[rng.integers(len(COLOURS))], PATTERNS[rng.integers(len(PATTERNS))])
            image, _ = draw(place([spec], rng), rng)
            _save_png(image, out / shape / f"class_{i:04d}.png")
    return out


def make_bench(
    out: str | Path, seed: int = 0, concepts: int = 4, scenes: int = 12, photos: int = 4
) -> BenchSummary:
    """Write a benchmark of ``concepts`` instances with ``scenes`` test images each.

    Test images per concept are split evenly between ``alone``, ``distractor`` and ``absent``.
    The folder is built beside ``out`` and renamed into place; ``out`` must not exist yet.
    """
    out = Path(out)
    check_new_folder(out)
    if scenes < 1 or photos < 1:
        raise InputError("--scenes and photos must be >= 1")
    rng = np.random.default_rng(seed)
    names, counts, lines = [], Counter(), []
    with new_folder(out) as tmp:
        for spec in pick_concepts(rng, concepts):
            name = instance_name(spec)
            names.append(name)
            folder = tmp / "concepts" / name
            for p in range(photos):
                image, masks = draw(place([spec], rng), rng)
                _save_png(image, folder / "photos" / f"{p:02d}.png")
                _save_png(masks[0].astype(np.uint8) * 255, folder / "masks" / f"{p:02d}.png")
            (folder / "concept.toml").write_text(f'class_word = "{spec[0]}"\n')
            for i in range(scenes):
                subset = ("alone", "distractor", "absent")[i % 3]
                specs, where = scene_specs(rng, spec, subset)
                image, masks = draw(place(specs, rng), rng)
                mask = masks[where] if where is not None else np.zeros(image.shape[:2], bool)
                stem = f"{name}-{i:03d}"
                _save_png(image, tmp / "test" / "images" / f"{stem}.png")
                _save_png(mask.astype(np.uint8) * 255, tmp / "test" / "masks" / stem / f"{name}.png")
                tags = [subset, "semantic-distractor"] if subset == "distractor" else [subset]
                counts.update(tags)
                lines.append({"image": f"images/{stem}.png", "concept": name,
                              "mask": f"masks/{stem}/{name}.png", "subset": tags})
        (tmp / "test" / "index.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return BenchSummary(root=out, concepts=names, counts=dict(counts))
