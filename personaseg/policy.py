"""Find's rules for a learned concept: which regions to keep, how to outline it, when it is found.

Pure functions of scores, settings and a concept's ``concept.json`` (see docs/design.md, "One
object of mine"): ``keep`` keeps one region for a concept, ``outline="with-class"`` draws it with
its class word's map (and reads its presence with it), and the relative-presence rule compares a
find's presence with the one learn measured on the concept's own photos, when both were read the same way.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from . import t2m
from .errors import PersonasegWarning


class PresenceWarning(PersonasegWarning):
    """A concept's presence reference does not match this find's settings: not applied."""


def presence_settings(config, cross_blocks: list[str], prompt: str, with_class: bool = False) -> dict[str, Any]:
    """What the scale of the presence score depends on: a concept's ``presence_ref`` only
    compares with a presence read under the same settings (timestep, cross blocks, size, prompt,
    and ``read: "with-class"`` when read with the class word; absent for the token's own map, so
    references recorded before that reading existed still match the token's)."""
    settings = {"timestep": config.timestep, "cross": cross_blocks, "long_side": config.long_side, "prompt": prompt}
    return {**settings, "read": "with-class"} if with_class else settings


def keeps_one_region(keep: str, concept) -> bool:
    """Whether find keeps only the region holding the peak: ``"strongest"``, or ``"auto"`` for a
    learned concept (one object; a phrase may name several: "mug" is every mug)."""
    return keep == "strongest" or (keep == "auto" and concept is not None)


def with_class(scores: torch.Tensor, class_scores: torch.Tensor) -> torch.Tensor:
    """``outline="with-class"``: the geometric mean of the token's and its class word's maps,
    min-max normalised again: high only where the token (which object) and the class word (its
    shape) agree. ``(P, h, w)`` each."""
    return t2m.minmax((scores.clamp_min(0) * class_scores.clamp_min(0)).sqrt())


def reference(concept, settings: dict[str, Any], config, warned: set) -> float | None:
    """``concept``'s presence reference (learn's presence on its own photos) when it was measured
    as this find reads presence (``settings``: :func:`presence_settings`); None for a phrase, a
    concept without one, or one measured otherwise (then, with the rule on, warn once per concept).
    Concepts learned before the settings were recorded count as measured with the defaults."""
    ref = concept.meta.get("presence_ref") if concept is not None else None
    if ref and not _same_settings(concept, settings, config, warned):
        return None
    return ref


def _same_settings(concept, now: dict[str, Any], config, warned: set) -> bool:
    at = concept.meta.get("presence_ref_at")
    if at is None or at == now:
        return True
    if config.min_relative_presence is not None and concept.token not in warned:
        warned.add(concept.token)
        changed = ", ".join(k for k in dict.fromkeys([*now, *at]) if at.get(k) != now.get(k))
        warnings.warn(
            f"{concept.token}: its presence reference was measured with other find settings ({changed}); "
            "min_relative_presence is not applied (read it again: personaseg concepts calibrate "
            f"'{concept.token}' PHOTOS, with the photos it was learned from; or find with its settings)",
            PresenceWarning, stacklevel=4,  # the caller of find
        )
    return False


def verdict(presence: float, ref: float | None, config, read: float | None = None) -> tuple[float | None, bool]:
    """(relative presence, found): found unless presence is under ``min_presence`` or, for a concept
    with a reference, its share of the reference is under ``min_relative_presence``. ``read``: the
    presence the reference was measured as, when not the token's own (the joint presence)."""
    relative = (presence if read is None else read) / ref if ref else None
    return relative, clears(presence, relative, config)


def clears(presence: float, relative: float | None, config, factor: float = 1.0) -> bool:
    """Whether ``presence`` (and ``relative``, when known) pass ``config``'s presence thresholds, each
    scaled by ``factor`` (``track``'s hysteresis keeps a found object down to a share of them)."""
    if config.min_presence is not None and presence < factor * config.min_presence:
        return False
    if relative is not None and config.min_relative_presence is not None:
        return relative >= factor * config.min_relative_presence
    return True
