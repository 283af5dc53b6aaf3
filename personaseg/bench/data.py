"""What a benchmark dataset is, whatever its layout: concepts to learn and samples to score.

Every layout reader (:mod:`.mug19`, :mod:`.perseg`, :mod:`.hf`; :func:`.datasets.open_dataset` picks
one) returns a :class:`BenchData`: the concepts to learn (name, class word, photos) and the test
samples (image, concept, ground-truth mask, subset tags). Problems with the dataset as a whole (no
index, a concept without photos, an unknown subset filter, nothing to score) raise
:class:`~personaseg.errors.DatasetError` with one line naming the file. Problems with one sample
(missing mask, mask of another size than its image, unreadable file) are found when the sample is
loaded (:meth:`Sample.load`), also as a ``DatasetError``; the runners skip and count them, and say
so with a :class:`BenchWarning`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DatasetError, InputError, PersonasegError, PersonasegWarning
from ..images import IMAGE_SUFFIXES, load_image, read_mask


class BenchWarning(PersonasegWarning):
    """A bad sample or sequence was skipped; the run goes on (the CLI prints it as one line)."""


@dataclass
class ConceptSpec:
    """A personal concept of the dataset: its name, class word and the photos it is learned from."""

    name: str  # the dataset's name for it (folder name, PerSeg object, HF "concept" value)
    class_word: str  # its category ("mug"): the class-word baseline's prompt and learn's class_word
    photos: list[Any]  # Paths to image files, or PIL images (HF datasets)
    source: str  # where it was defined, for messages
    masks: list[Any] | None = None  # per photo: its object mask (a file), None where it has none; None: no masks at all


@dataclass
class Sample:
    """One test image-concept pair. ``image`` is the key written to samples.jsonl."""

    image: str  # image key (path relative to the test folder, or a row id for HF datasets)
    concept: str  # name of the concept to find
    subset: list[str]  # tags ("alone", "distractor", "semantic-distractor", "absent", ...)
    source: str  # where it was defined (index.jsonl:LINE, a folder, a dataset row), for messages
    image_path: Path | None = None  # on-disk layouts
    mask_path: Path | None = None  # on-disk layouts
    loader: Callable[[], tuple[Image.Image, Any]] | None = field(default=None, repr=False)  # in memory

    @property
    def key(self) -> tuple[str, str]:
        """(image, concept): unique within a dataset."""
        return self.image, self.concept

    @property
    def stem(self) -> str:
        """The image's file stem (for RUNDIR/masks/<method>/<stem>/<concept>.png)."""
        return Path(self.image).stem

    def load(self) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, bool mask (H, W)); a bad sample raises DatasetError naming the file."""
        if self.loader is not None:
            image, mask = self.loader()
            image, where = image.convert("RGB"), self.source
        else:
            assert self.image_path is not None and self.mask_path is not None
            try:
                image = load_image(self.image_path)
            except PersonasegError as err:
                raise DatasetError(f"{self.source}: {err}") from None
            try:
                has_mask = self.mask_path.is_file()
            except OSError:  # a name too long for the file system
                has_mask = False
            if not has_mask:
                raise DatasetError(
                    f"{self.source}: mask {self.mask_path} is missing",
                    hint="add it (an all-black PNG if the concept is absent) or remove the line",
                )
            mask, where = self.mask_path, str(self.mask_path)
        mask = mask_array(mask, where)
        if mask.shape != (image.height, image.width):
            raise DatasetError(
                f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.width}x{image.height}",
                hint="masks must have their image's size (in its displayed orientation)",
            )
        return image, mask


@dataclass
class BenchData:
    """A dataset read by one of the layouts."""

    layout: str  # "mug19" | "perseg" | "hf"
    root: str  # folder or hub id it was read from
    concepts: dict[str, ConceptSpec]  # by name
    samples: list[Sample]  # in a fixed order (index order, or sorted)

    @property
    def tags(self) -> list[str]:
        """Every subset tag used, sorted."""
        return sorted({t for s in self.samples for t in s.subset})


def mask_array(mask: Any, where: str) -> np.ndarray:
    """A mask (path, PIL image or array) -> bool (H, W): any non-zero pixel is the object."""
    try:
        return read_mask(mask, where)
    except InputError as err:
        raise DatasetError(err.message) from None


def photo_files(folder: Path) -> list[Path]:
    """The image files in ``folder``, sorted by name ([] when it is not a folder)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []


def photo_masks(photos: list[Path], folder: Path) -> list[Path | None] | None:
    """Each photo's ``folder/<stem>.png`` where it exists; None when no photo has one."""
    masks = [folder / f"{p.stem}.png" for p in photos]
    masks = [m if m.is_file() else None for m in masks]
    return masks if any(masks) else None


__all__ = ["BenchData", "BenchWarning", "ConceptSpec", "Sample", "mask_array", "photo_files", "photo_masks"]
