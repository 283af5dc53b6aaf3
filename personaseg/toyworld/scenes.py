"""Synthetic toy scenes: shapes on light backgrounds, with exact masks and captions.

A scene is drawn with hard (non anti-aliased) pixel masks, so the ground-truth mask of an object
is exactly the set of its visible pixels: later objects occlude earlier ones. Every object has a
shape (its category, the class word), a colour (named in captions) and a *pattern* (plain,
striped, dotted) that captions never name. A personal instance is one (shape, colour, pattern)
combination: the model draws such objects, yet the class word does not pin one down.

Everything is driven by a seed (or a ``numpy.random.Generator``) and is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHAPES = ("circle", "square", "triangle", "ring", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
}
PATTERNS = ("plain", "striped", "dotted")  # hidden attribute: never named in captions
SIZE_RANGE = (14, 28)  # object size (bounding box side) in px at 64 px
IMAGE_SIZE = 64


@dataclass(frozen=True)
class ToyObject:
    """One object of a scene: what it is and where."""

    shape: str  # category, e.g. "circle" (the class word)
    colour: str  # e.g. "red" (named in captions, sometimes dropped)
    pattern: str  # "plain" | "striped" | "dotted" (never named)
    cx: float  # centre x in px
    cy: float  # centre y in px
    size: int  # bounding-box side in px

    @property
    def phrase(self) -> str:
        """The caption phrase with colour, e.g. "red circle"."""
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    """A drawn scene: image, the visible mask of each object, objects and a caption."""

    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (K, H, W) bool, visible pixels of object k (after occlusion)
    objects: list[ToyObject] = field(default_factory=list)
    caption: str = ""


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def shape_mask(obj: ToyObject, size: int = IMAGE_SIZE) -> np.ndarray:
    """The full (unoccluded) pixel mask of ``obj``: (H, W) bool, tested at pixel centres."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy, r = xs - obj.cx, ys - obj.cy, obj.size / 2.0
    if obj.shape == "circle":
        return dx**2 + dy**2 <= r**2
    if obj.shape == "square":
        h = 0.86 * r  # a slightly smaller square so areas are comparable
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if obj.shape == "triangle":
        t = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    if obj.shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if obj.shape == "cross":
        w = 0.34 * r
        return ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {obj.shape!r}")


def pattern_mask(obj: ToyObject, size: int = IMAGE_SIZE) -> np.ndarray:
    """Pixels drawn in the lighter pattern colour (within the object's box): (H, W) bool."""
    ys, xs = np.mgrid[0:size, 0:size]
    if obj.pattern == "striped":  # diagonal stripes, period 6 px, 3 px wide
        return ((xs + ys) % 6) < 3
    if obj.pattern == "dotted":  # 2x2 dots on a 5 px grid anchored at the object
        ox, oy = int(obj.cx) % 5, int(obj.cy) % 5
        return (((xs - ox) % 5) < 2) & (((ys - oy) % 5) < 2)
    return np.zeros((size, size), bool)


def pattern_shade(rgb: np.ndarray) -> np.ndarray:
    """The lighter colour stripes and dots are drawn in: the base colour blended with white."""
    return rgb + 0.6 * (255 - rgb)


def background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A light, slightly tinted background with a soft gradient and mild noise: (H, W, 3) float."""
    base = rng.uniform(200, 245) + rng.uniform(-10, 10, size=3)  # (3,) light, tinted
    ys, xs = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * xs + np.sin(angle) * ys - 0.5) * rng.uniform(0, 20)  # (H, W)
    img = base[None, None, :] + grad[..., None] + rng.normal(0, 3.0, (size, size, 3))
    return np.clip(img, 150, 255)


def draw(
    objects: list[ToyObject], rng: np.random.Generator, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``objects`` in order on a fresh background: (image uint8, visible masks (K, H, W))."""
    img = background(rng, size)
    masks = np.zeros((len(objects), size, size), bool)
    for k, obj in enumerate(objects):
        full = shape_mask(obj, size)
        colour = np.asarray(COLOURS[obj.colour], np.float32) + rng.uniform(-12, 12, 3)
        light = pattern_shade(colour)
        pat = pattern_mask(obj, size) & full
        img[full] = colour
        img[pat] = light
        masks[:k] &= ~full[None]  # occlusion: earlier objects lose the covered pixels
        masks[k] = full
    return np.clip(img, 0, 255).round().astype(np.uint8), masks


def place(
    specs: list[tuple[str, str, str]],
    rng: np.random.Generator,
    size: int = IMAGE_SIZE,
    size_range: tuple[int, int] = SIZE_RANGE,
    max_overlap: float = 0.25,
) -> list[ToyObject]:
    """Give each (shape, colour, pattern) a position and size with limited overlap.

    An object is re-drawn (up to 60 tries) when it would hide more than ``max_overlap`` of an
    earlier object or of itself be mostly on top of others; after that it is placed anyway.
    """
    placed: list[ToyObject] = []
    occupied: list[np.ndarray] = []
    for shape, colour, pattern in specs:
        for _ in range(60):
            s = int(rng.integers(size_range[0], size_range[1] + 1))
            r = s / 2
            obj = ToyObject(shape, colour, pattern, float(rng.uniform(r, size - r)),
                            float(rng.uniform(r, size - r)), s)
            full = shape_mask(obj, size)
            if all((m & full).sum() <= max_overlap * m.sum() for m in occupied):
                break
        placed.append(obj)
        occupied.append(full)
    return placed


def random_specs(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    """``n`` random (shape, colour, pattern) triples."""
    colours = list(COLOURS)
    return [
        (SHAPES[rng.integers(len(SHAPES))], colours[rng.integers(len(colours))],
         PATTERNS[rng.integers(len(PATTERNS))])
        for _ in range(n)
    ]


def article(word: str) -> str:
    """ "a" or "an" before ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def caption_words(
    objects: list[ToyObject],
    rng: np.random.Generator,
    p_photo: float = 0.3,
    p_drop_colour: float = 0.2,
    p_partial: float = 0.0,
) -> tuple[str, list[list[int]]]:
    """A caption naming every object, and per object the indices of its colour/shape words.

    Objects are named in random order; each colour is dropped with ``p_drop_colour`` (so a bare
    class word is meaningful) and "a photo of" is prefixed with ``p_photo``. Patterns are never
    named. With ``p_partial`` only a random non-empty subset of the objects is named (as real
    captions leave things out; a prompt naming one thing in a busy scene is then familiar).
    Word indices count words and commas of the text, e.g. "a red circle, a square":
    a=0 red=1 circle=2 ,=3 a=4 square=5; an unnamed object gets none.
    """
    order = rng.permutation(len(objects))
    if p_partial and len(objects) > 1 and rng.random() < p_partial:
        order = order[: int(rng.integers(1, len(objects)))]
    words: list[str] = []
    where: list[list[int]] = [[] for _ in objects]
    named = [(k, [objects[k].shape] if rng.random() < p_drop_colour else [objects[k].colour, objects[k].shape])
             for k in order]
    for i, (k, phrase) in enumerate(named):
        if i > 0:
            words.append("and" if i == len(named) - 1 else ",")
        words.append(article(phrase[0]))
        where[k] = list(range(len(words), len(words) + len(phrase)))
        words += phrase
    if rng.random() < p_photo:
        words = ["a", "photo", "of"] + words
        where = [[j + 3 for j in w] for w in where]
    text = " ".join(words).replace(" ,", ",")
    return text, where


def caption(objects: list[ToyObject], rng: np.random.Generator, **kwargs) -> str:
    """The text of :func:`caption_words`, e.g. "a photo of a red circle and a square"."""
    return caption_words(objects, rng, **kwargs)[0]


def make_scene(
    seed: int | np.random.Generator,
    specs: list[tuple[str, str, str]] | None = None,
    n_objects: tuple[int, int] = (1, 4),
    size: int = IMAGE_SIZE,
) -> Scene:
    """A random scene (or one with the given ``specs``), drawn, masked and captioned."""
    rng = _rng(seed)
    if specs is None:
        specs = random_specs(rng, int(rng.integers(n_objects[0], n_objects[1] + 1)))
    objects = place(specs, rng, size=size)
    image, masks = draw(objects, rng, size)
    return Scene(image=image, masks=masks, objects=objects, caption=caption(objects, rng))
