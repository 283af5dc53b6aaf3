"""Personal concepts: learn them (Textual Inversion, LoRA DreamBooth), store, load, export.

    >>> from personaseg.concepts import learn, LearnConfig, ConceptStore
    >>> concept = learn("photos/", "<mymug>", LearnConfig(class_word="mug"), model="toy")
    >>> subs = ConceptStore().get("<mymug>").apply(pipe)   # ["<mymug>"]

Files: ``config.py`` (LearnConfig), ``data.py`` (photos, templates), ``textual_inversion.py``
(token rows, embedding files), ``lora.py`` (peft adapter), ``trainer.py`` (one step, on a
pipeline's parts), ``checkpoint.py`` (resumable state), ``train.py`` (``learn``), ``concept.py``
(``Concept``), ``store.py`` (``ConceptStore``), ``prior.py`` (class images), ``progress.py``.
"""

from .concept import Concept
from .config import LearnConfig
from .data import LearnWarning
from .store import ConceptStore
from .train import LearnInterrupted, learn

__all__ = ["Concept", "ConceptStore", "LearnConfig", "LearnInterrupted", "LearnWarning", "learn"]
