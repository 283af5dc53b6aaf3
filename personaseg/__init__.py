"""personaseg: personalized segmentation with the attention of text-to-image diffusion models.

Public API: :class:`Segmenter` (find / segment / explain), :func:`learn` and :class:`Concept`
(personal concepts), and the config classes.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Segmenter": ("segmenter", "Segmenter"),
    "FindResult": ("segmenter", "FindResult"),
    "FindConfig": ("config", "FindConfig"),
    "learn": ("concepts", "learn"),
    "Concept": ("concepts", "Concept"),
    "ConceptStore": ("concepts", "ConceptStore"),
    "LearnConfig": ("concepts", "LearnConfig"),
}


def __getattr__(name: str):
    """Import heavy modules (torch, diffusers) only when their names are used."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'personaseg' has no attribute {name!r}")


__all__ = ["Concept", "ConceptStore", "FindConfig", "FindResult", "LearnConfig", "Segmenter", "learn", "__version__"]
