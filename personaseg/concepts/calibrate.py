"""Where learn meets find: the settings find reads a model with, and finds on the photos learned from.

learn reads find's blocks and timestep (:func:`find_spec`, for TI contrast and the attention loss),
turns a box or click into a mask with the class word's find (:func:`class_finder`), and ends by
finding the new concept in its own photos (:func:`presence_on_photos`: ``presence_ref``, the
settings it was read with, ``class_presence_ref``; :func:`measure` reads them again on a concept
learned before find read presence so). Each runs the find engine
(:class:`personaseg.finder.Finder`) or the one settings function (:func:`personaseg.config.resolve_find`),
never a copy of them; the engine does not import this package, so the dependency runs one way.
"""

from __future__ import annotations

import json
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


def presence_on_photos(pipe, card, folder: Path, photos: list[Path]) -> dict[str, Any]:
    """The presence fields of ``concept.json`` for the concept in ``folder``, read on its own photos
    with the model's find defaults (:func:`measure`)."""
    concept = Concept.from_folder(folder)
    # presence is read before the refinement (skip it: the UNet can stop after the cross blocks)
    finder = Finder(pipe, card, FindConfig(refine=False))
    finder.load_concept(concept)
    return measure(finder, concept, photos)


def measure(finder: Finder, concept: Concept, photos: list[Path]) -> dict[str, Any]:
    """``concept``'s presence on its own ``photos`` as ``finder`` reads it: ``presence_ref`` (the mean,
    what ``FindConfig.min_relative_presence`` compares a new image's presence with; read with the class
    word when the finder draws the concept with it), ``presence_ref_at`` (the settings it was read with,
    :meth:`Finder.presence_settings`), ``class_presence_ref`` (the class word's own, None without one:
    it tells a dead token) and, when read with the class word, ``token_presence_ref`` (the token's own)."""
    own, joint, by_class = [], [], []
    with finder.with_config(min_presence=None, min_relative_presence=None):  # a stale reference is not read
        for path in photos:
            finder.set_image(path)
            result = finder.find(concept.token)
            own.append(result.presence)
            if result.joint_presence is not None:
                joint.append(result.joint_presence)
            if concept.class_word:
                by_class.append(finder.find(concept.class_word).presence)
    fields = {"presence_ref": _mean(joint or own),
              "presence_ref_at": finder.presence_settings(result.prompt, with_class=bool(joint)),
              "class_presence_ref": _mean(by_class) if by_class else None}
    if joint:
        fields["token_presence_ref"] = _mean(own)
    return fields


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


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


def recalibrate(name: str, photos, *, model: str | None = None, concepts_dir: Path | None = None,
                device=None) -> Concept:
    """Read ``name``'s presence reference again on ``photos`` (the ones it was learned from: their bytes
    must match ``concept.json``'s) with ``model``'s find defaults (default: the model it was learned
    on), and rewrite its ``concept.json`` in one rename. For a concept whose reference the find rule
    skips (learned before find read presence as it does now, e.g. with the class word): a find or two
    per photo, not a new learn."""
    import hashlib

    from ..errors import InputError
    from ..images import collect_images
    from ..models import load_pipeline
    from .store import ConceptStore

    store = ConceptStore(concepts_dir)
    concept = store.get(name)
    paths, _ = collect_images([photos] if isinstance(photos, (str, Path)) else list(photos))
    learned = {p["sha256"] for p in concept.meta.get("photos", [])}
    if not learned:
        raise InputError(f"{concept.token} records no photos it was learned from (imported from a file?)",
                         hint="learn it here (personaseg learn) to give it a presence reference")
    given = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in paths}
    if set(given) != learned:
        others = [p.name for h, p in given.items() if h not in learned]
        raise InputError(
            f"{concept.token} was learned from {len(learned)} photo(s): {len(learned - set(given))} of them not "
            "given" + (f"; {', '.join(others[:3])} {'is' if len(others) == 1 else 'are'} not one of them" if others else ""),
            hint="give exactly the photos it was learned from (concept.json lists their names)",
        )
    with store.lock(concept.name):
        pipe, card = load_pipeline(model or concept.base_model, device, None)
        write_meta(concept.path, with_reference(concept.meta, presence_on_photos(pipe, card, concept.path, paths)))
    return store.get(concept.name)


def with_reference(meta: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with :func:`measure`'s presence fields in place of its own."""
    meta = {**meta, **fields}
    if "read" not in fields["presence_ref_at"]:
        meta.pop("token_presence_ref", None)  # read on the token alone: no separate token reference
    return meta


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Replace a stored concept's ``concept.json`` in one rename (a reader sees the old or the new)."""
    from ..io import atomic_write
    from .concept import META_FILE

    with atomic_write(folder / META_FILE) as fh:
        fh.write((json.dumps(meta, indent=2) + "\n").encode())
