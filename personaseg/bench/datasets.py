"""Opening a benchmark dataset: pick its layout (documented in ``data/README.md``), read it, filter it.

The layouts are one module each: :mod:`.mug19` (Mug19-style), :mod:`.perseg` (PerSeg), :mod:`.hf`
(Hugging Face datasets); what they return is :mod:`.data`'s.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError, DatasetError
from .data import BenchData
from .hf import read_hf
from .mug19 import read_mug19
from .perseg import read_perseg


def open_dataset(root: str | Path, layout: str = "auto", *, shots: int | None = None, split: str = "test",
                 subsets: list[str] | None = None) -> BenchData:
    """Read a benchmark in ``layout`` (``auto`` guesses from the files), filter it by subset tags.
    ``shots``: each concept learns from its first k photos (PerSeg: of its images; default 1 there,
    all photos elsewhere)."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "mug19":
        data = read_mug19(root, shots=shots)
    elif layout == "perseg":
        data = read_perseg(root, shots=shots or 1)
    elif layout == "hf":
        data = read_hf(root, split=split)
    else:
        raise ConfigError(f"unknown dataset layout {layout!r}", hint="use mug19, perseg or hf")
    return filter_subsets(data, subsets)


def detect_layout(root: str | Path) -> str:
    """mug19 (test/index.jsonl), perseg (Images/ + Annotations/), hf (a saved dataset or hub id)."""
    path = Path(root)
    if (path / "test" / "index.jsonl").is_file():
        return "mug19"
    if (path / "Images").is_dir() and (path / "Annotations").is_dir():
        return "perseg"
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        return "hf"
    if not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(root)):
        return "hf"  # looks like a hub id
    raise DatasetError(
        f"{root}: not a benchmark folder (no test/index.jsonl, no Images/ + Annotations/, "
        "no saved Hugging Face dataset)",
        hint="see data/README.md for the layouts, or pass --layout",
    )


def filter_subsets(data: BenchData, subsets: list[str] | None) -> BenchData:
    """Keep the samples carrying any of ``subsets``; an unknown tag is a DatasetError."""
    if not data.samples:
        raise DatasetError(f"{data.root}: the dataset has no test samples", hint="see data/README.md")
    if not subsets:
        return data
    known = set(data.tags)
    unknown = [t for t in subsets if t not in known]
    if unknown:
        raise DatasetError(
            f"{data.root}: unknown subset tag(s) {', '.join(unknown)}",
            hint="tags in this dataset: " + (", ".join(sorted(known)) or "none"),
        )
    data.samples = [s for s in data.samples if set(s.subset) & set(subsets)]
    return data


__all__ = ["detect_layout", "filter_subsets", "open_dataset"]
