"""A toy video benchmark in the DAVIS 2017 semi-supervised layout, with photos to learn from.

Each sequence follows one personal instance (a (shape, colour, pattern) combination) that moves
and grows or shrinks; other objects move too and occlude each other (later objects are drawn
on top). Tags, one per sequence, cycle through:

- ``alone``: the instance and 0-2 objects of other shapes;
- ``distractor``: the instance and 1-2 objects of its shape in other colours (and maybe another shape);
- ``leaves``: as ``distractor`` or ``alone``, but the instance leaves the frame and comes back.

Layout (``data/README.md``; what ``personaseg bench video`` reads)::

    JPEGImages/480p/<seq>/00000.png      frames (PNG: lossless at 64 px; the reader takes .jpg too)
    Annotations/480p/<seq>/00000.png     palette PNG, 0 = background, 1 = the instance (absent: all 0)
    ImageSets/2017/val.txt               the sequences, one a line
    photos/<seq>/1/*.png                 photos of object 1 alone, to learn it from
    meta.json                            {"fps", "sequences": {seq: {"tags", "objects": {"1": {"class_word", "concept"}}}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io import check_new_folder, new_folder
from .bench import other_object, instance_name, pick_concepts
from .scenes import IMAGE_SIZE, SIZE_RANGE, ToyObject, draw, place

TAGS = ("alone", "distractor", "leaves")
FPS = 10.0  # the frame rate written to meta.json


@dataclass
class VideoBenchSummary:
    """What :func:`make_video_bench` wrote."""

    root: Path
    sequences: dict[str, list[str]]  # name -> tags
    frames: int  # per sequence
    absent_frames: int  # frames (all sequences) where the instance is out of view


@dataclass
class _Path:
    """A straight path with a size ramp; ``leave`` sends it out of the frame and back."""

    obj: ToyObject
    vx: float  # px per frame
    vy: float
    size_to: int  # size at the last frame
    leave: bool = False

    def at(self, t: int, n: int) -> ToyObject:
        f = t / max(1, n - 1)  # 0 .. 1 over the clip
        size = round(self.obj.size + (self.size_to - self.obj.size) * f)
        if self.leave:  # out through the right edge in the middle third, back before the end
            dx = (IMAGE_SIZE + size) * np.sin(np.pi * f) ** 2
            return replace(self.obj, cx=self.obj.cx + dx, size=size)
        r = size / 2  # bounce off the edges
        cx = _bounce(self.obj.cx + self.vx * t, r, IMAGE_SIZE - r)
        cy = _bounce(self.obj.cy + self.vy * t, r, IMAGE_SIZE - r)
        return replace(self.obj, cx=cx, cy=cy, size=size)


def _bounce(x: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    k = (x - lo) % (2 * span)
    return lo + (k if k <= span else 2 * span - k)


def _paths(rng: np.random.Generator, spec, tag: str) -> tuple[list[_Path], int]:
    """The objects' paths (drawing order) and the instance's index among them."""
    if tag == "distractor" or (tag == "leaves" and rng.random() < 0.5):
        others = [other_object(rng, spec, True) for _ in range(rng.integers(1, 3))]
        others += [other_object(rng, spec, False) for _ in range(rng.integers(0, 2))]
    else:
        others = [other_object(rng, spec, False) for _ in range(rng.integers(0, 3))]
    specs = [spec, *others]
    order = rng.permutation(len(specs))
    placed = place([specs[i] for i in order], rng)
    paths = []
    for obj, i in zip(placed, order):
        v = rng.uniform(0.8, 2.0) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
        size_to = int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
        if i == 0 and tag == "leaves":
            obj = replace(obj, cx=float(rng.uniform(obj.size / 2, IMAGE_SIZE / 2)))
        paths.append(_Path(obj, float(v[0]), float(v[1]), size_to, leave=(i == 0 and tag == "leaves")))
    return paths, int(np.flatnonzero(order == 0)[0])


def _save(array: np.ndarray, path: Path, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if palette:  # DAVIS annotations: palette PNGs, index = object id
        im = im.convert("P")
        im.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)
    im.save(path)


def make_video_bench(out: str | Path, seed: int = 0, sequences: int = 6, frames: int = 24,
                     photos: int = 4) -> VideoBenchSummary:
    """Write ``sequences`` toy clips of ``frames`` frames (tags cycling alone, distractor, leaves).

    Built beside ``out`` and renamed into place; ``out`` must not exist yet (or be empty).
    """
    out = Path(out)
    check_new_folder(out)
    if sequences < 1 or frames < 3 or photos < 1:
        raise InputError("--sequences and photos must be >= 1, frames >= 3")
    rng = np.random.default_rng(seed)
    meta, absent = {}, 0
    with new_folder(out) as tmp:
        for k, spec in enumerate(pick_concepts(rng, sequences)):
            tag = TAGS[k % len(TAGS)]
            concept = instance_name(spec)
            seq = f"{concept}-{tag}"
            for p in range(photos):
                image, _ = draw(place([spec], rng), rng)
                _save(image, tmp / "photos" / seq / "1" / f"{p:02d}.png")
            paths, me = _paths(rng, spec, tag)
            look = int(rng.integers(2**31))  # one background and one set of colours for the whole clip
            for t in range(frames):
                image, masks = draw([p.at(t, frames) for p in paths], np.random.default_rng(look))
                gt = masks[me]
                absent += int(not gt.any())
                _save(image, tmp / "JPEGImages" / "480p" / seq / f"{t:05d}.png")
                _save(gt.astype(np.uint8), tmp / "Annotations" / "480p" / seq / f"{t:05d}.png", palette=True)
            meta[seq] = {"tags": [tag], "objects": {"1": {"class_word": spec[0], "concept": concept}}}
        (tmp / "ImageSets" / "2017").mkdir(parents=True)
        (tmp / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{s}\n" for s in meta))
        (tmp / "meta.json").write_text(json.dumps({"fps": FPS, "sequences": meta}, indent=1) + "\n")
    return VideoBenchSummary(root=out, sequences={s: m["tags"] for s, m in meta.items()}, frames=frames,
                             absent_frames=absent)


__all__ = ["TAGS", "VideoBenchSummary", "make_video_bench"]
