"""The Mug19-style layout (``data/README.md``): concept folders and an index of test samples.

    concepts/<name>/photos/*        the photos a concept is learned from
    concepts/<name>/masks/<stem>.png  optional: a photo's object mask (--photo-masks)
    concepts/<name>/concept.toml    class_word = "mug"
    test/index.jsonl                {"image": "images/x.jpg", "concept": NAME, "mask": "masks/x/NAME.png", "subset": [...]}
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import read_toml
from ..errors import DatasetError
from .data import BenchData, ConceptSpec, Sample, photo_files, photo_masks


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
    photos = photo_files(folder / "photos")
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
    return ConceptSpec(name, str(class_word), photos, str(folder), photo_masks(photos, folder / "masks"))


def _check_unique(samples: list[Sample], where: str) -> None:
    seen: set[tuple[str, str]] = set()
    for s in samples:
        if s.key in seen:
            raise DatasetError(f"{s.source}: image {s.image!r} and concept {s.concept!r} listed twice in {where}")
        seen.add(s.key)


__all__ = ["read_mug19"]
