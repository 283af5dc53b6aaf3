"""The learned concepts loaded onto one pipeline: looked up in a store, applied once, written into
prompts, and the LoRA adapter each UNet pass carries.

A *store* is anything that gives a concept by name: a :class:`personaseg.concepts.ConceptStore`
(its ``get``) or a function ``name -> Concept``. The segmenter is handed one; it never imports
the concepts package, which imports it (learn calibrates by finding).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Callable

from .errors import ConceptError, PhraseError
from .tokens import CONCEPT


class LoadedConcepts:
    """Concepts applied to ``pipe`` by name; ``on_change`` runs when one more is applied (the text
    encoder or UNet changed, so cached encodings are stale)."""

    def __init__(self, pipe, store=None, on_change: Callable[[], None] = lambda: None):
        self.pipe = pipe
        self._get = getattr(store, "get", store)  # a ConceptStore, a loader function, or None
        self._on_change = on_change
        self._loaded: dict[str, tuple[Any, list[str]]] = {}

    def __iter__(self):
        return (concept for concept, _ in self._loaded.values())

    def load(self, name_or_concept) -> tuple[Any, list[str]]:
        """Load a learned concept onto the model once; returns (concept, its sub-tokens)."""
        if isinstance(name_or_concept, str):
            loaded = self._loaded.get(name_or_concept.strip().strip("<>"))
            if loaded is not None:
                return loaded
            if self._get is None:
                token = f"<{name_or_concept.strip().strip('<>')}>"
                raise ConceptError(
                    f"unknown concept {name_or_concept}",
                    hint=f"learn one with `personaseg learn PHOTOS --token {shlex.quote(token)}`",
                )
            concept = self._get(name_or_concept)
        else:
            concept = name_or_concept
        if concept.name not in self._loaded:
            tokens = concept.apply(self.pipe)
            self._loaded[concept.name] = (concept, tokens)
            self._on_change()
        return self._loaded[concept.name]

    def expand(self, text: str) -> tuple[str, list[Any]]:
        """``text`` with each learned concept named in it (``<mymug>``) loaded and written as its K
        sub-tokens, as the text encoder reads it; and those concepts. Without this the tokenizer
        would spell an unknown ``<mymug>`` out letter by letter."""
        concepts = []

        def sub(match: re.Match) -> str:
            concept, tokens = self.load(match.group(0))
            concepts.append(concept)
            return " ".join(tokens)

        return CONCEPT.sub(sub, text), concepts

    def one_adapter(self, concepts: list[Any]) -> str | None:
        """The LoRA adapter of the LoRA concept among ``concepts`` (None: the base model); one UNet
        pass carries one adapter, so two LoRA concepts in one prompt are refused."""
        lora = {c.name: c for c in concepts if c is not None and c.method == "lora"}
        if len(lora) > 1:
            raise PhraseError(f"{len(lora)} LoRA concepts in one prompt ({', '.join(c.token for c in lora.values())})",
                              hint="use one LoRA concept at a time (Textual Inversion concepts mix freely)")
        concept = next(iter(lora.values()), None)
        return concept.name if concept is not None else None

    def switch(self, adapter: str | None) -> None:
        """Turn the UNet's LoRA adapter ``adapter`` on (None: all off) when a LoRA concept is loaded."""
        if not any(c.method == "lora" for c in self):
            return
        if adapter is None:
            self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()
            self.pipe.set_adapters(adapter)
