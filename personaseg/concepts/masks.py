"""Where the object is in each training photo: a mask per photo, given or drawn from a box or a click.

``learn(..., masks=...)`` takes a folder (``DIR/<photo stem>.png``) or a dict (photo name, stem
or path -> mask file, PIL image or array); a ``<stem>.mask.png`` beside a photo (the name ``find``
writes) is read too. Non-zero pixels are the object. Photos without a mask are learned unguided.
Masks are checked before the model loads: another size than the photo (in its displayed
orientation, EXIF applied), an empty mask and a mask that matches no photo are one
:class:`InputError` each, so no concept is stored.

A box (``x0, y0, x1, y1``) or a click (``x, y``), in pixel coordinates of the photo as displayed,
becomes a mask by the model itself (:func:`derive_mask`): the class word's region, found as ``find``
finds it, that holds the click or best fills the box.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..images import IMAGE_SUFFIXES, read_mask

MASK_SUFFIX = ".mask.png"  # what `find` writes beside an image: fed back as the photo's mask


def is_mask_file(path: Path) -> bool:
    """``x.mask.png``: a mask beside its photo, never a photo itself."""
    return path.name.lower().endswith(MASK_SUFFIX)


@dataclass
class PhotoMasks:
    """Each photo's object mask in the photo's training crop."""

    masks: torch.Tensor  # (N, R, R) float in [0, 1], the share of each pixel that is object; 1 where unguided
    guided: torch.Tensor  # (N,) bool: the photo has a mask
    sources: list[str | None]  # per photo: the mask file, "box x0,y0,x1,y1", "click x,y", or None
    hashes: list[str | None]  # per photo: sha256 of the mask's pixels (None: unguided)

    def record(self) -> list[dict[str, Any] | None]:
        """concept.json's per-photo entry."""
        return [None if s is None else {"source": s, "sha256": h} for s, h in zip(self.sources, self.hashes)]


def _key_matches(key: str | Path, photo: Path) -> bool:
    k = Path(str(key))
    return k.name == photo.name or str(k) == photo.stem or k.resolve() == photo.resolve()


def match_masks(paths: list[Path], masks: str | Path | dict | None) -> dict[int, Any]:
    """Photo index -> mask (a file, a PIL image or an array) for every photo that has one."""
    found: dict[int, Any] = {}
    for i, p in enumerate(paths):  # auto-detected: <stem>.mask.png beside the photo
        beside = p.with_name(p.stem + MASK_SUFFIX)
        if beside.is_file():
            found[i] = beside
    if masks is None:
        return found
    if isinstance(masks, dict):
        for key, value in masks.items():
            hits = [i for i, p in enumerate(paths) if _key_matches(key, p)]
            if not hits:
                raise InputError(f"the mask given for {key} matches no photo",
                                 hint="name the photo by its file name or stem: " + ", ".join(p.name for p in paths[:5]))
            for i in hits:
                found[i] = value
        return found
    folder = Path(masks)
    if not folder.is_dir():
        raise InputError(f"--masks {folder} is not a folder", hint="give a folder of <photo stem>.png masks")
    stems = {p.stem: i for i, p in enumerate(paths)}
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    for f in files:
        stem = f.name[: -len(MASK_SUFFIX)] if is_mask_file(f) else f.stem
        if stem not in stems:
            raise InputError(f"mask {f} matches no photo (no photo named {stem}.*)",
                             hint="name each mask after its photo's stem, e.g. " + f"{paths[0].stem}.png")
        found[stems[stem]] = f
    if not files:
        raise InputError(f"--masks {folder} holds no mask images", hint="one <photo stem>.png per photo")
    return found


def crop_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """The training crop of a bool (H, W) mask, exactly as :func:`square_crop` crops its photo:
    short side resized to ``size``, centre square -> (size, size) float in [0, 1]."""
    h, w = mask.shape
    scale = size / min(w, h)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    image = Image.fromarray(mask.astype(np.float32)).resize((rw, rh), Image.Resampling.BILINEAR)
    left, top = (rw - size) // 2, (rh - size) // 2
    a = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
    return torch.from_numpy(a.clip(0.0, 1.0).copy())


def check_mask(mask: np.ndarray, photo_size: tuple[int, int], where: str, photo: Path) -> None:
    """One clear line for a mask of another size than its photo, or an empty one."""
    w, h = photo_size
    if mask.shape != (h, w):
        raise InputError(
            f"mask {where} is {mask.shape[1]}x{mask.shape[0]} but its photo {photo.name} is {w}x{h} "
            "(as displayed, EXIF rotation applied)",
            hint="draw the mask on the photo as a viewer shows it, at the photo's size",
        )
    if not mask.any():
        raise InputError(f"mask {where} of {photo.name} is empty (no non-zero pixel)",
                         hint="paint the object white, or leave this photo's mask out to learn it unguided")


def load_masks(paths: list[Path], sizes: list[tuple[int, int]], given: dict[int, np.ndarray | Any],
               sources: dict[int, str], resolution: int) -> PhotoMasks:
    """Check and crop the masks of ``paths`` (``given``: index -> mask, ``sources``: index -> name)."""
    n = len(paths)
    crops = torch.ones(n, resolution, resolution)
    guided = torch.zeros(n, dtype=torch.bool)
    names: list[str | None] = [None] * n
    hashes: list[str | None] = [None] * n
    for i, mask in sorted(given.items()):
        where = sources.get(i) or str(mask)
        a = mask if isinstance(mask, np.ndarray) and mask.dtype == bool else read_mask(mask, where)
        check_mask(a, sizes[i], where, paths[i])
        crops[i] = crop_mask(a, resolution)
        guided[i] = True
        names[i] = where
        hashes[i] = hashlib.sha256(np.packbits(a).tobytes() + str(a.shape).encode()).hexdigest()
    return PhotoMasks(crops, guided, names, hashes)


# --------------------------------------------------------------------------- boxes and clicks


def parse_point(text: str, n: int, what: str) -> tuple[str, list[float]]:
    """``PHOTO=X,Y`` (n=2) or ``PHOTO=X0,Y0,X1,Y1`` (n=4) -> (photo, numbers)."""
    photo, sep, nums = text.rpartition("=")
    example = "PHOTO=X,Y" if n == 2 else "PHOTO=X0,Y0,X1,Y1"
    try:
        values = [float(v) for v in nums.split(",")]
    except ValueError:
        values = []
    if not sep or not photo or len(values) != n:
        raise InputError(f"--{what} {text!r} is not {example}", hint=f"e.g. --{what} " +
                         ("mug1.jpg=120,80" if n == 2 else "mug1.jpg=40,30,200,180") + " (pixels of the photo as displayed)")
    return photo, values


def check_box(box: list[float], size: tuple[int, int], where: str) -> None:
    w, h = size
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box {where} has x1 <= x0 or y1 <= y0", hint="write it X0,Y0,X1,Y1: left, top, right, bottom")
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise InputError(f"box {where} is outside its photo ({w}x{h})",
                         hint=f"use 0 <= X0 < X1 <= {w} and 0 <= Y0 < Y1 <= {h} (pixels of the photo as displayed)")


def check_click(point: list[float], size: tuple[int, int], where: str) -> None:
    w, h = size
    x, y = point
    if not (0 <= x < w and 0 <= y < h):
        raise InputError(f"click {where} is outside its photo ({w}x{h})",
                         hint=f"use 0 <= X < {w} and 0 <= Y < {h} (pixels of the photo as displayed)")


def derive_mask(class_mask: np.ndarray, box: list[float] | None = None, click: list[float] | None = None,
                where: str = "", class_word: str = "") -> np.ndarray:
    """The region of the class word's mask (bool (H, W), as ``find`` draws it) that holds the click,
    or that best fills the box (highest IoU with it), cut to the box. One InputError when none does."""
    from scipy import ndimage

    labels, n = ndimage.label(class_mask, structure=np.ones((3, 3), dtype=bool))  # (H, W) region ids 1..n
    if click is not None:
        x, y = int(click[0]), int(click[1])
        k = int(labels[y, x])
        if k == 0:
            raise InputError(f"click {where}: the model finds no {class_word!r} there",
                             hint="click on the object itself, or give a box or a mask")
        return labels == k
    assert box is not None
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    rect = np.zeros_like(class_mask, dtype=bool)
    rect[y0:y1, x0:x1] = True
    best, best_iou = 0, 0.0
    for k in range(1, n + 1):
        region = labels == k
        inter = float((region & rect).sum())
        iou = inter / float((region | rect).sum())
        if iou > best_iou:
            best, best_iou = k, iou
    if best == 0:
        raise InputError(f"box {where}: the model finds no {class_word!r} in it",
                         hint="draw the box around the object, or give a mask")
    return (labels == best) & rect


class Guidance:
    """Where the object is, per photo: masks read and checked up front, boxes and clicks turned
    into masks once the model is loaded (:meth:`derive`), then cropped for training."""

    def __init__(self, paths: list[Path], masks: str | Path | dict | None = None,
                 boxes: dict[str, Any] | list[str] | None = None, clicks: dict[str, Any] | list[str] | None = None):
        from ..images import load_image

        self.paths = paths
        self.masks: dict[int, np.ndarray] = {}
        self.sources: dict[int, str] = {}
        self.pointers: dict[int, tuple[str, list[float]]] = {}  # index -> ("box" | "click", numbers)
        given = match_masks(paths, masks)
        self.sizes: dict[int, tuple[int, int]] = {}

        def size(i: int) -> tuple[int, int]:
            if i not in self.sizes:
                self.sizes[i] = load_image(paths[i]).size  # displayed (EXIF applied)
            return self.sizes[i]

        for i, mask in sorted(given.items()):
            where = str(mask) if isinstance(mask, (str, Path)) else f"for {paths[i].name}"
            a = read_mask(mask, where)
            check_mask(a, size(i), where, paths[i])
            self.masks[i], self.sources[i] = a, where
        for kind, items, n in (("box", boxes, 4), ("click", clicks, 2)):
            for key, values in _items(items, n, kind):
                hits = [i for i, p in enumerate(paths) if _key_matches(key, p)]
                where = f"{key}={','.join(f'{v:g}' for v in values)}"
                if not hits:
                    raise InputError(f"--{kind} {where} names no photo",
                                     hint="name the photo by its file name or stem: " + ", ".join(p.name for p in paths[:5]))
                for i in hits:
                    if i in self.masks or i in self.pointers:
                        raise InputError(f"{paths[i].name} has a mask, box or click twice",
                                         hint="give one per photo")
                    (check_box if kind == "box" else check_click)(values, size(i), where)
                    self.pointers[i] = (kind, values)

    def __bool__(self) -> bool:
        return bool(self.masks or self.pointers)

    def derive(self, find_class) -> dict[int, np.ndarray]:
        """Masks from the boxes and clicks: ``find_class(path) -> bool (H, W)`` is the class word's
        mask on the photo. Returns the derived masks (index -> mask), now also among ``masks``."""
        derived = {}
        for i, (kind, values) in sorted(self.pointers.items()):
            where = f"{self.paths[i].name}={','.join(f'{v:g}' for v in values)}"
            class_mask = find_class(self.paths[i])
            a = derive_mask(class_mask, box=values if kind == "box" else None,
                            click=values if kind == "click" else None, where=where,
                            class_word=getattr(find_class, "class_word", ""))
            self.masks[i], self.sources[i] = a, f"{kind} {','.join(f'{v:g}' for v in values)}"
            derived[i] = a
        self.pointers = {}
        return derived

    def photo_masks(self, resolution: int) -> PhotoMasks | None:
        """The masks cropped as the photos are (None without any)."""
        if not self.masks:
            return None
        return load_masks(self.paths, [self.sizes[i] if i in self.sizes else (0, 0) for i in range(len(self.paths))],
                          self.masks, self.sources, resolution)


def _items(items: dict[str, Any] | list[str] | None, n: int, kind: str) -> list[tuple[str, list[float]]]:
    """``{photo: numbers}`` or ``["PHOTO=..."]`` -> [(photo, numbers)]."""
    if not items:
        return []
    if isinstance(items, dict):
        out = []
        for k, v in items.items():
            values = [float(x) for x in v]
            if len(values) != n:
                raise InputError(f"the {kind} of {k} has {len(values)} numbers, not {n}")
            out.append((str(k), values))
        return out
    return [parse_point(t, n, kind) for t in items]
