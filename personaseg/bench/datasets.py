"""Benchmark dataset layouts (documented in ``data/README.md``): Mug19-style, PerSeg, HF datasets.

Every reader returns a :class:`BenchData`: the concepts to learn (name, class word, photos) and
the test samples (image, concept, ground-truth mask, subset tags). Problems with the dataset as a
whole (no index, a concept without photos, an unknown subset filter, nothing to score) raise
:class:`~personaseg.errors.DatasetError` with one line naming the file. Problems with one sample
(missing mask, mask of another size than its image, unreadable file) are found when the sample is
loaded (:meth:`Sample.load`), also as a ``DatasetError``; the runner reports, skips and counts them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import read_toml
from ..errors import ConfigError, DatasetError, InputError, PersonasegError
from ..images import IMAGE_SUFFIXES, load_image, read_mask


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


# --------------------------------------------------------------------------- layouts


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


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []


def read_mug19(root: str | Path, shots: int | None = None) -> BenchData:
    """``concepts/<name>/{photos/*, masks/*, concept.toml}`` + ``test/{images/*, masks/*, index.jsonl}``:
    a photo's optional mask is ``masks/<photo stem>.png``; ``shots``: the first k photos only."""
    root = Path(root)
    index = root / "test" / "index.jsonl"
    if not index.is_file():
        raise DatasetError(f"{index} is missing", hint="a Mug19-style benchmark lists its samples there")
    samples: list[Sample] = []
    needed: dict[str, str] = {}  # concept name -> first line using it
    try:
        text = index.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{index} cannot be read ({type(err).__name__})", hint="it is UTF-8 JSON lines") from None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{index}:{no}"
        try:
            row = json.loads(line)
            image, concept, mask = row["image"], row["concept"], row["mask"]
            subset = row.get("subset", [])
            subset = [subset] if isinstance(subset, str) else list(subset)
            if not all(isinstance(v, str) and v for v in (image, concept, mask)):
                raise TypeError("image, concept and mask must be non-empty text")
            if not all(isinstance(t, str) for t in subset):
                raise TypeError("subset tags must be text")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError, RecursionError) as err:
            raise DatasetError(
                f"{where}: bad index line ({type(err).__name__}: {str(err)[:120]})",
                hint='write {"image": "images/x.jpg", "concept": "name", "mask": "masks/x/name.png", "subset": []}',
            ) from None
        _check_plain_name(concept, where)
        test = root / "test"
        samples.append(Sample(image, concept, subset, where, _inside(test, image, where), _inside(test, mask, where)))
        needed.setdefault(concept, where)
    concepts = {name: _mug19_concept(root / "concepts" / name, name, where, shots) for name, where in needed.items()}
    _check_unique(samples, str(index))
    return BenchData("mug19", str(root), concepts, samples)


def _check_plain_name(name: str, where: str) -> None:
    """A concept name names output files (``<concept>.png``): one plain path part, no ``..``."""
    if name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0") or len(name) > 200:
        raise DatasetError(f"{where}: concept {name[:60]!r} is not a plain name",
                           hint="use letters, digits, '-', '_' (it names folders and mask files)")


def _inside(base: Path, rel: str, where: str) -> Path:
    """``base / rel``, refused when ``rel`` leads outside ``base``."""
    path = base / rel
    try:
        inside = "\0" not in rel and path.resolve().is_relative_to(base.resolve())
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise DatasetError(f"{where}: {rel[:80]!r} leads outside {base}", hint="give paths relative to test/")
    return path


def _mug19_concept(folder: Path, name: str, used_at: str, shots: int | None = None) -> ConceptSpec:
    if not folder.is_dir():
        raise DatasetError(f"{used_at}: concept {name!r} has no folder {folder}", hint="add concepts/<name>/photos/")
    photos = _photos(folder / "photos")
    if not photos:
        raise DatasetError(f"{folder / 'photos'}: concept {name!r} has no photos", hint="add a few images of it")
    if shots is not None:
        if len(photos) < shots:
            raise DatasetError(f"{folder / 'photos'}: {len(photos)} photo(s), fewer than --shots {shots}",
                               hint="lower --shots or add photos")
        photos = photos[:shots]
    meta_path = folder / "concept.toml"
    meta = read_toml(meta_path) if meta_path.is_file() else {}
    class_word = meta.get("class_word")
    if not class_word or not isinstance(class_word, str):
        raise DatasetError(f"{meta_path}: no class_word for concept {name!r}", hint='write class_word = "mug"')
    return ConceptSpec(name, str(class_word), photos, str(folder), _photo_masks(photos, folder / "masks"))


def _photo_masks(photos: list[Path], folder: Path) -> list[Path | None] | None:
    """Each photo's ``folder/<stem>.png`` where it exists; None when no photo has one."""
    masks = [folder / f"{p.stem}.png" for p in photos]
    masks = [m if m.is_file() else None for m in masks]
    return masks if any(masks) else None


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
        files = _photos(obj_dir)
        if len(files) <= shots:
            raise DatasetError(
                f"{obj_dir}: {len(files)} image(s), need more than --shots {shots}",
                hint="lower --shots or add images",
            )
        concepts[obj] = ConceptSpec(obj, str(overrides.get(obj, perseg_class_word(obj))), files[:shots], str(obj_dir),
                                    _photo_masks(files[:shots], masks_dir / obj))
        for img in files[shots:]:
            samples.append(Sample(
                f"{obj}/{img.name}", obj, ["perseg"], str(img), img, masks_dir / obj / (img.stem + ".png"),
            ))
    if not concepts:
        raise DatasetError(f"{images_dir}: no object folders", hint="PerSeg has Images/<object>/NN.jpg")
    return BenchData("perseg", str(root), concepts, samples)


def _check_unique(samples: list[Sample], where: str) -> None:
    seen: set[tuple[str, str]] = set()
    for s in samples:
        if s.key in seen:
            raise DatasetError(f"{s.source}: image {s.image!r} and concept {s.concept!r} listed twice in {where}")
        seen.add(s.key)


from .hf import read_hf  # noqa: E402  (kept in its own file: it needs the optional `datasets`)

__all__ = [
    "BenchData", "ConceptSpec", "Sample", "detect_layout", "filter_subsets", "mask_array",
    "open_dataset", "perseg_class_word", "read_hf", "read_mug19", "read_perseg",
]
