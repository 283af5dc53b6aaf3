"""The PerSeg layout: ``Images/<obj>/NN.jpg`` and ``Annotations/<obj>/NN.png``."""

from __future__ import annotations

import re
from pathlib import Path

from ..config import read_toml
from ..errors import DatasetError
from .data import BenchData, ConceptSpec, Sample, photo_files, photo_masks


def perseg_class_word(obj: str) -> str:
    """PerSeg object folder -> class word: ``dog2`` -> ``dog``, ``bear_plushie`` -> ``bear plushie``."""
    return re.sub(r"\d+$", "", obj).replace("_", " ").strip() or obj


def read_perseg(root: str | Path, shots: int = 1) -> BenchData:
    """``Images/<obj>/NN.jpg`` + ``Annotations/<obj>/NN.png``: the first ``shots`` images (sorted)
    of each object are its photos, the rest are test samples tagged ``perseg``.
    An optional ``class_words.toml`` at the root maps object -> class word."""
    root = Path(root)
    images_dir, masks_dir = root / "Images", root / "Annotations"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"{root}: PerSeg needs Images/ and Annotations/ folders", hint="see data/README.md")
    overrides_path = root / "class_words.toml"
    overrides = read_toml(overrides_path) if overrides_path.is_file() else {}
    concepts: dict[str, ConceptSpec] = {}
    samples: list[Sample] = []
    for obj_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        obj = obj_dir.name
        files = photo_files(obj_dir)
        if len(files) <= shots:
            raise DatasetError(
                f"{obj_dir}: {len(files)} image(s), need more than --shots {shots}",
                hint="lower --shots or add images",
            )
        concepts[obj] = ConceptSpec(obj, str(overrides.get(obj, perseg_class_word(obj))), files[:shots], str(obj_dir),
                                    photo_masks(files[:shots], masks_dir / obj))
        for img in files[shots:]:
            samples.append(Sample(
                f"{obj}/{img.name}", obj, ["perseg"], str(img), img, masks_dir / obj / (img.stem + ".png"),
            ))
    if not concepts:
        raise DatasetError(f"{images_dir}: no object folders", hint="PerSeg has Images/<object>/NN.jpg")
    return BenchData("perseg", str(root), concepts, samples)


__all__ = ["perseg_class_word", "read_perseg"]
