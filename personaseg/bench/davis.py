"""Video benchmark layout: DAVIS 2017 semi-supervised, plus our toy videos' extras.

    JPEGImages/480p/<seq>/*.jpg|png      frames, in name order
    Annotations/480p/<seq>/*.png         palette PNGs (index = object id, 0 background, 255 void),
                                         one per frame, same stems as the frames
    ImageSets/2017/<split>.txt           optional: the sequences to use (else every frame folder)
    photos/<seq>/<id>/*.png              optional: photos to learn object <id> from
    meta.json                            optional: {"fps", "sequences": {seq: {"tags": [...],
                                         "objects": {"<id>": {"class_word", "concept"}}}}}

Every object of a sequence's first annotated frame is a target. It is learned from its photos when
the root has them (the toy videos); else from the first frame, the standard video protocol: until
learning from masks lands, the photos are the first frame cropped around the object's mask (and
its mirror image), and the first and last frames are not scored, as in DAVIS's evaluation. Without
a class word in meta.json, the sequence name up to its first '-' is used ("dog-agility" -> "dog").

A sequence that cannot be used (no annotations, a missing annotation, a frame of another size) is
a :class:`DatasetError` in ``VideoData.errors`` with one line naming the file; the others are run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DatasetError
from ..images import IMAGE_SUFFIXES, load_image
from ..video import natural_key
from .data import ConceptSpec

VOID = 255  # DAVIS: pixels not scored


@dataclass
class VideoTarget:
    """One object of one sequence: its frames, its annotations, how it is learned."""

    seq: str
    obj: int  # palette index in the annotations
    frames: list[Path]  # in order
    annotations: list[Path]  # one per frame
    tags: list[str]  # subsets ("alone", "distractor", "leaves", ...)
    concept: ConceptSpec  # the photos it is learned from
    from_first_frame: bool  # learned from the first frame (then frames 0 and -1 are not scored)

    @property
    def key(self) -> str:
        """``seq/obj``: unique within a dataset (samples.jsonl's target)."""
        return f"{self.seq}/{self.obj}"

    def gt(self, i: int) -> np.ndarray:
        """The object's mask in frame ``i`` (bool (H, W)); a bad file raises DatasetError naming it."""
        return object_mask(self.annotations[i], self.obj)

    @property
    def scored(self) -> range:
        """Frame positions that count in J and F."""
        n = len(self.frames)
        return range(1, n - 1) if self.from_first_frame and n > 2 else range(n)


@dataclass
class VideoData:
    root: Path
    fps: float | None
    targets: list[VideoTarget]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (sequence, one-line message)

    @property
    def tags(self) -> list[str]:
        return sorted({t for x in self.targets for t in x.tags})


def object_mask(path: Path, obj: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            labels = np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
    except FileNotFoundError:
        raise DatasetError(f"annotation {path} is missing", hint="every frame needs its Annotations PNG") from None
    except OSError as err:
        raise DatasetError(f"annotation {path} is not a readable PNG ({err})") from None
    return labels == obj


def _files(folder: Path, suffixes) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                   and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def _first_frame_photos(frame: Path, mask: np.ndarray) -> list[Image.Image]:
    """The object's box (plus a quarter on each side) cut from the first frame, and its mirror image."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = (y1 - y0) // 4, (x1 - x0) // 4
    image = load_image(frame)
    crop = image.crop((max(0, x0 - mx), max(0, y0 - my), min(image.width, x1 + mx), min(image.height, y1 + my)))
    return [crop, ImageOps.mirror(crop)]


def _sequence(root: Path, seq: str, resolution: str, meta: dict) -> list[VideoTarget]:
    frames_dir = root / "JPEGImages" / resolution / seq
    ann_dir = root / "Annotations" / resolution / seq
    if not frames_dir.is_dir():
        raise DatasetError(f"{frames_dir} is missing", hint="remove the sequence from ImageSets or add its frames")
    frames = _files(frames_dir, IMAGE_SUFFIXES)
    if not frames:
        raise DatasetError(f"{frames_dir} has no frames")
    if not ann_dir.is_dir():
        raise DatasetError(f"{seq}: annotations {ann_dir} are missing",
                           hint="add the sequence's Annotations PNGs, or leave it out of ImageSets")
    annotations = [ann_dir / f"{f.stem}.png" for f in frames]
    missing = [a for a in annotations if not a.is_file()]
    if missing:
        raise DatasetError(f"{seq}: annotation {missing[0]} is missing ({len(missing)} of {len(frames)} frames)",
                           hint="every frame needs its Annotations PNG")
    first = np.asarray(Image.open(annotations[0]))
    info = meta.get(seq, {})
    objects = info.get("objects") or {str(i): {} for i in np.unique(first) if i not in (0, VOID)}
    if not objects:
        raise DatasetError(f"{seq}: {annotations[0]} marks no object", hint="the first frame names the objects")
    targets = []
    for obj, about in sorted(objects.items(), key=lambda kv: int(kv[0])):
        photos_dir = root / "photos" / seq / obj
        class_word = about.get("class_word") or seq.split("-")[0]
        if photos_dir.is_dir() and _files(photos_dir, IMAGE_SUFFIXES):
            photos, from_first = _files(photos_dir, IMAGE_SUFFIXES), False
        else:
            mask = first == int(obj)
            if not mask.any():
                raise DatasetError(f"{seq}: object {obj} is not in {annotations[0]}",
                                   hint=f"add photos in {photos_dir}, or fix meta.json")
            photos, from_first = _first_frame_photos(frames[0], mask), True
        name = about.get("concept") or f"{seq}-{obj}"
        concept = ConceptSpec(name=name, class_word=class_word, photos=photos, source=str(photos_dir))
        targets.append(VideoTarget(seq, int(obj), frames, annotations, list(info.get("tags", [])), concept, from_first))
    return targets


def open_video_dataset(root: str | Path, *, split: str = "val", resolution: str = "480p",
                       subsets: list[str] | None = None) -> VideoData:
    """Read a DAVIS-layout root (module docstring). A bad root raises; a bad sequence is listed in
    ``errors`` and left out."""
    root = Path(root)
    frames_root = root / "JPEGImages" / resolution
    if not frames_root.is_dir():
        raise DatasetError(f"{root} is not a DAVIS-layout root: {frames_root} is missing",
                           hint="give the folder holding JPEGImages/ and Annotations/ "
                                "(or make one: personaseg toyworld make-video-bench)")
    meta_path = root / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except json.JSONDecodeError as err:
        raise DatasetError(f"{meta_path} is not valid JSON ({err})") from None
    listing = root / "ImageSets" / "2017" / f"{split}.txt"
    if listing.is_file():
        names = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
    else:
        names = sorted(p.name for p in frames_root.iterdir() if p.is_dir())
    data = VideoData(root, meta.get("fps"), [])
    for seq in names:
        try:
            data.targets += _sequence(root, seq, resolution, meta.get("sequences", {}))
        except DatasetError as err:
            data.errors.append((seq, str(err)))
    if subsets:
        data.targets = [t for t in data.targets if set(t.tags) & set(subsets)]
    if not data.targets and not data.errors:
        raise DatasetError(f"{root}: no sequence to score" + (f" with tags {subsets}" if subsets else ""))
    return data


__all__ = ["VideoData", "VideoTarget", "object_mask", "open_video_dataset"]
