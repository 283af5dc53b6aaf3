"""Where learn meets find: the settings find reads a model with, and finds on the photos learned from.

learn reads find's blocks and timestep (:func:`find_spec`, for TI contrast and the attention loss),
turns a box or click into a mask with the class word's find (:func:`class_finder`), and ends by
finding the new concept in its own photos (:func:`presence_on_photos`: ``presence_ref``, the
settings it was read with, ``class_presence_ref``). Each runs the find engine
(:class:`personaseg.finder.Finder`) or the one settings function (:func:`personaseg.config.resolve_find`),
never a copy of them; the engine does not import this package, so the dependency runs one way.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import FindConfig, resolve_find
from ..finder import Finder
from ..layers import layer_map_for
from .concept import Concept
from .config import LearnConfig
from .data import LearnWarning
from .trainer import ContrastSpec

# A learned token whose presence on its own photos is below this share of its class word's is
# "dead": on the toy benchmarks (seeds 202 and 303, 11 tokens) working TI tokens scored 2.5-5.4x
# their class word, the one that failed (mIoU 0.6, a plain red triangle started from "triangle") 0.10x.
WEAK_TOKEN_RATIO = 0.5


def find_spec(pipe, card) -> ContrastSpec:
    """The blocks and timestep ``find`` reads this model with (its card's, else the defaults)."""
    cfg = resolve_find(FindConfig(refine=False), card)
    layer_map = layer_map_for(pipe.unet, cfg.cross_layers, cfg.self_layer, card.layer_map if card else None)
    return ContrastSpec(layer_map.cross_modules_with_factor(pipe.unet), cfg.timestep)


def class_finder(pipe, card, class_word: str) -> Callable[[Path], np.ndarray]:
    """``path -> bool (H, W)``: the class word's mask on a photo, as ``find`` draws it with the
    model's defaults (every region), from which a box or click picks the object."""
    finder = Finder(pipe, card, FindConfig(keep="all"))

    def find_class(path: Path):
        finder.set_image(path)
        return finder.find(class_word).mask

    find_class.class_word = class_word
    return find_class


def presence_on_photos(pipe, card, folder: Path, photos: list[Path]) -> tuple[float, dict[str, Any], float | None]:
    """Mean presence score of the concept in ``folder`` on its own photos, with the model's find
    defaults: what ``FindConfig.min_relative_presence`` compares a new image's presence with;
    the settings it was read with (:meth:`Finder.presence_settings`); and the class word's
    mean presence on the same photos (None without a class word), to tell a dead token."""
    concept = Concept.from_folder(folder)
    # presence is read before the refinement (skip it: the UNet can stop after the cross blocks) and
    # from the token's own map, whatever outline the card sets
    finder = Finder(pipe, card, FindConfig(refine=False, outline="token"))
    finder.load_concept(concept)
    values, class_values = [], []
    for path in photos:
        finder.set_image(path)
        result = finder.find(concept.token)
        values.append(result.presence)
        if concept.class_word:
            class_values.append(finder.find(concept.class_word).presence)
    class_ref = float(sum(class_values) / len(class_values)) if class_values else None
    return float(sum(values) / len(values)), finder.presence_settings(result.prompt), class_ref


def warn_if_weak(token: str, cfg: LearnConfig, ref: float, class_ref: float | None) -> None:
    """Warn when the learned token draws far less attention on its photos than its class word."""
    if class_ref is None or class_ref <= 0 or ref >= WEAK_TOKEN_RATIO * class_ref:
        return
    warnings.warn(
        f"{token} barely draws attention on its own photos (presence {ref:.3f} vs {class_ref:.3f} for the class "
        f"word {cfg.class_word!r}): finds will miss it; learn it again from another word the model finds on "
        "these photos (--init-word, or init_word in a recipe)",
        LearnWarning, stacklevel=3,
    )
