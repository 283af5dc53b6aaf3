"""The Hugging Face ``datasets`` layout: a hub id or a ``save_to_disk`` folder (``datasets`` is optional:
imported only when such a benchmark is read).

Columns: ``image`` (Image), ``mask`` (Image or 2-D array; non-zero = the concept; all zero = the
concept is absent), ``concept`` (str), ``photos`` (list of Images: the concept's photos; given on
at least one row per concept, the first non-empty one is used). Optional: ``class_word`` (str;
default: the concept name without trailing digits), ``subset`` (list of str tags), ``id`` (str,
the sample's image key; default: the row number).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DatasetError, MissingExtraError
from .data import BenchData, ConceptSpec, Sample
from .perseg import perseg_class_word

REQUIRED = ("image", "mask", "concept", "photos")


def _load(root: str | Path, split: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise MissingExtraError("Hugging Face dataset benchmarks", "datasets") from None
    path = Path(root)
    try:
        if path.exists():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(str(root), split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        raise DatasetError(f"{root}: cannot load the dataset ({type(err).__name__}: {err})",
                           hint="give a save_to_disk folder or a hub id you can reach") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DatasetError(f"{root}: no split {split!r}", hint="splits: " + ", ".join(ds) + " (use --split)")
        ds = ds[split]
    return ds


def read_hf(root: str | Path, split: str = "test") -> BenchData:
    """Read a datasets dataset with image, mask, concept and photos columns (see module docstring)."""
    ds = _load(root, split)
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise DatasetError(f"{root}: dataset lacks column(s) {', '.join(missing)}",
                           hint="needs image, mask, concept, photos (see data/README.md)")
    names = [str(c) for c in ds["concept"]]
    ids = [str(i) for i in ds["id"]] if "id" in ds.column_names else [f"row-{i:06d}" for i in range(len(ds))]
    tags = list(ds["subset"]) if "subset" in ds.column_names else [[] for _ in names]
    words = list(ds["class_word"]) if "class_word" in ds.column_names else [None] * len(names)
    concepts: dict[str, ConceptSpec] = {}
    for name in dict.fromkeys(names):
        rows = [i for i, n in enumerate(names) if n == name]
        photos = next((ds[i]["photos"] for i in rows if ds[i]["photos"]), None)
        if not photos:
            raise DatasetError(f"{root}: concept {name!r} has no photos in any row",
                               hint="fill the photos column on at least one of its rows")
        word = next((words[i] for i in rows if words[i]), None) or perseg_class_word(name)
        concepts[name] = ConceptSpec(name, str(word), list(photos), f"{root} (concept {name!r})")
    samples = []
    for i, name in enumerate(names):
        tag = tags[i] or []
        samples.append(Sample(
            ids[i], name, [tag] if isinstance(tag, str) else list(tag), f"{root} row {i}",
            loader=lambda i=i: (ds[i]["image"], ds[i]["mask"]),
        ))
    return BenchData("hf", str(root), concepts, samples)
