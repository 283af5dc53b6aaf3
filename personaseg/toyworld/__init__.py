"""The toy world: synthetic scenes with exact masks, and a small SD-shaped model trained on them.

Offline, CPU-only checks of the whole method with a really trained model:

    >>> from personaseg.toyworld import make_scene, TOY_MODEL_DIR
    >>> scene = make_scene(0)          # image, visible masks, objects, caption
    >>> make_bench("toybench", seed=1)  # a Mug19-style personal-RIS benchmark

``TOY_MODEL_DIR`` is the shipped diffusers folder (``--model toy``); ``recipes/toyworld.toml``
with ``personaseg toyworld train`` rebuilds it.
"""

from __future__ import annotations

from ..models import EMBEDDED
from .scenes import COLOURS, PATTERNS, SHAPES, Scene, ToyObject, make_scene

TOY_MODEL_DIR = EMBEDDED["toy"].folder  # the shipped model (diffusers folder, ``weights/`` here)


def make_bench(out, seed: int = 0, concepts: int = 4, scenes: int = 12, **kwargs):
    """Write a Mug19-style benchmark to ``out`` (see :func:`personaseg.toyworld.bench.make_bench`)."""
    from .bench import make_bench as _make_bench

    return _make_bench(out, seed=seed, concepts=concepts, scenes=scenes, **kwargs)


__all__ = [
    "COLOURS", "PATTERNS", "SHAPES", "Scene", "TOY_MODEL_DIR", "ToyObject", "make_bench", "make_scene",
]
