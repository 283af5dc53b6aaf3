"""The segmenter: encode an image once, then find phrases and concepts in it cheaply.

>>> seg = Segmenter.from_pretrained("toy")
>>> seg.set_image("scene.png")          # VAE encode + noise draws, paid once
>>> r = seg.find("circle")              # one conditional UNet pass per draw, cut after the last read layer
>>> r.mask.shape, r.presence

:class:`Segmenter` is the find engine (:class:`personaseg.finder.Finder`) with model loading and
the user's concept store; results are in :mod:`personaseg.results`, find's rules for a learned
concept in :mod:`personaseg.policy`.
"""

from __future__ import annotations

from pathlib import Path

from .config import FindConfig, find_config
from .finder import Finder
from .models import ModelCard, load_pipeline
from .policy import PresenceWarning
from .results import ExplainResult, FindResult, SegmentResult
from .tokens import CONCEPT


def concept_model(texts: list[str | None], concepts_dir: Path | None = None) -> str | None:
    """The model the first learned concept named in ``texts`` (phrases, labels, prompts) was learned
    on, from its concept.json: what a command loads when no model is named. None when no concept
    is named or it records no model (imported); an unknown concept is a :class:`ConceptError`."""
    from .concepts.store import ConceptStore

    store = ConceptStore(concepts_dir)
    for text in texts:
        for name in CONCEPT.findall(text or ""):
            model = store.get(name).base_model  # an unknown concept: one line now, not after a model load
            if model:
                return model
    return None


class Segmenter(Finder):
    """T2M on one diffusers Stable Diffusion pipeline, caching the image and text encodings.

    Concepts named by ``<name>`` come from ``store`` (a ConceptStore or a function ``name ->
    Concept``), by default the store in ``concepts_dir`` (None: the user's).
    """

    def __init__(self, pipe, card: ModelCard | None = None, config: FindConfig | None = None,
                 concepts_dir: Path | None = None, *, store=None):
        if store is None:
            def store(name):  # the store is read at each lookup (its root may be made after this)
                from .concepts.store import ConceptStore

                return ConceptStore(concepts_dir).get(name)
        super().__init__(pipe, card, config, store=store)
        self.concepts_dir = concepts_dir

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, device=None, dtype=None,
                        config: FindConfig | None = None, preset: str | None = None,
                        recipe: str | Path | None = None, concepts_dir: Path | None = None,
                        store=None, **overrides) -> "Segmenter":
        """Load ``model`` (hub id, folder, .safetensors, "toy") and build a segmenter.

        ``config`` is used as given; otherwise it is built from the preset, recipe and keyword
        overrides (``draws=1``, ``tau=0.35``, ...).
        """
        if config is None:
            config = find_config(preset, recipe, **overrides)
        pipe, card = load_pipeline(model, device, dtype)
        return cls(pipe, card, config, concepts_dir, store=store)

    def track(self, frames, phrase: str, prompt: str | None = None, config=None):
        """Follow ``phrase`` through ``frames`` (images, paths or :class:`personaseg.video.Frame`s, e.g.
        ``open_clip(path).frames()``); yields a :class:`personaseg.track.FrameResult` per frame, streaming.

        ``config`` is a :class:`personaseg.track.TrackConfig` (default: temporal mode, see
        :mod:`personaseg.track`). Each frame is found by :meth:`find`; the image set before is dropped.
        """
        from .track import track

        return track(self, frames, phrase, prompt, config)


__all__ = ["ExplainResult", "FindResult", "PresenceWarning", "SegmentResult", "Segmenter", "concept_model"]
