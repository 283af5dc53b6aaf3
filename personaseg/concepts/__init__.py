"""Personal concepts: learn them (Textual Inversion, LoRA DreamBooth), store, load, export.

    >>> from personaseg.concepts import learn, LearnConfig, ConceptStore
    >>> concept = learn("photos/", "<mymug>", LearnConfig(class_word="mug"), model="toy")
    >>> subs = ConceptStore().get("<mymug>").apply(pipe)   # ["<mymug>"]

Files: ``config.py`` (LearnConfig), ``data.py`` (photos, templates), ``textual_inversion.py``
(token rows, embedding files), ``lora.py`` (peft adapter), ``trainer.py`` (the ``Trainer``: losses
and one step, on a pipeline's parts; ``parts.py`` the pieces it uses), ``checkpoint.py``
(resumable state), ``learning.py`` (``learn``: one learning run, photos in, a stored concept out),
``loop.py`` (the step loop, Ctrl-C), ``resume.py`` (interrupted runs),
``calibrate.py`` (where learn runs find: find's blocks and timestep, presence on the photos, the
class word's mask for boxes and clicks), ``masks.py`` (guidance masks), ``concept.py``
(``Concept``), ``store.py`` (``ConceptStore``), ``locks.py`` (one writer per concept),
``prior.py`` (class images), ``progress.py``.

The find engine (:mod:`personaseg.finder`) never imports this package: learn depends on find,
not the other way round.
"""

from .concept import Concept
from .config import LearnConfig
from .data import LearnWarning
from .store import ConceptStore
from .learning import LearnInterrupted, learn

__all__ = ["Concept", "ConceptStore", "LearnConfig", "LearnInterrupted", "LearnWarning", "learn"]
