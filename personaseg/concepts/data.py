"""Training data: the user's photos, prompt templates, class images, and per-sample randomness.

Photos are read with EXIF orientation applied, resized so the short side is the training
resolution and centre-cropped square. Every random choice of a sample (which photo, flip,
template, noise, timestep) comes from a generator seeded by ``(seed, sample index)``, so a run
resumed at step N draws exactly what an uninterrupted run draws after step N.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, PersonasegWarning
from ..images import collect_images, load_image
from .masks import MASK_SUFFIX, PhotoMasks, is_mask_file

# diffusers examples/textual_inversion: imagenet_templates_small (object mode).
TI_TEMPLATES = [
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
    "a cropped photo of a {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
    "a close-up photo of the {}", "a rendition of the {}", "a photo of the clean {}",
    "a rendition of a {}", "a photo of a nice {}", "a good photo of a {}", "a photo of the nice {}",
    "a photo of the small {}", "a photo of the weird {}", "a photo of the large {}",
    "a photo of a cool {}", "a photo of a small {}",
]


class LearnWarning(PersonasegWarning):
    """Something about the input that training can live with (one photo, skipped files)."""


@dataclass
class PhotoSet:
    """The training photos as tensors, with what identifies them."""

    pixels: torch.Tensor  # (N, 3, R, R) in [-1, 1]
    paths: list[Path]  # the files read, in order
    hashes: list[str]  # sha256 of each file's bytes
    masks: "PhotoMasks | None" = None  # where the object is in each photo (learn's masks, boxes, clicks)

    def __len__(self) -> int:
        return len(self.paths)


def square_crop(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the short side to ``size``, centre-crop square -> ``(3, size, size)`` in [-1, 1]."""
    w, h = image.size
    scale = size / min(w, h)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((rw, rh), Image.Resampling.BICUBIC)
    left, top = (rw - size) // 2, (rh - size) // 2
    image = image.crop((left, top, left + size, top + size))
    a = np.asarray(image, dtype=np.float32) / 127.5 - 1.0  # (R, R, 3)
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()  # (R, R, 3) -> (3, R, R)


def load_photos(photos: str | Path | list, resolution: int, what: str = "photos") -> PhotoSet:
    """Every readable image in ``photos`` (files, folders, globs). Unreadable files are skipped
    with a warning; no readable image is an :class:`InputError`; one photo only warns."""
    inputs = [photos] if isinstance(photos, (str, Path)) else list(photos)
    try:
        paths, notes = collect_images(inputs)
    except InputError as err:
        where = ", ".join(str(i) for i in inputs) or "(nothing given)"
        hints = {"photos": "give a folder with 3-10 photos of your object",
                 "contrast images": "give a folder of images of other objects, not yours; or leave contrast_images out "
                                    "to use the class images"}
        hint = hints.get(what, f"give a folder of {what}: other objects of its class, not yours; or leave it out to generate them")
        raise InputError(f"no images found in {where}", hint=hint) from err
    for note in notes:
        warnings.warn(note, LearnWarning, stacklevel=2)
    paths = [p for p in paths if not is_mask_file(p)]  # <stem>.mask.png beside a photo is its mask, not a photo
    if not paths:
        raise InputError(f"only masks (*{MASK_SUFFIX}) in {', '.join(map(str, inputs))}, no photos",
                         hint="give the photos; their masks beside them are found by name")
    tensors, used, hashes = [], [], []
    for p in paths:
        try:
            img = load_image(p)
        except InputError as err:
            warnings.warn(f"skipped {err}", LearnWarning, stacklevel=2)
            continue
        tensors.append(square_crop(img, resolution))
        used.append(p)
        hashes.append(hashlib.sha256(p.read_bytes()).hexdigest())
    if not tensors:
        raise InputError(
            f"none of the {len(paths)} files in {', '.join(map(str, inputs))} is a readable image",
            hint="give JPEG or PNG photos of your object",
        )
    if len(tensors) == 1 and what == "photos":
        warnings.warn(
            f"only one photo ({used[0].name}): the concept may memorise it; 3-10 photos work better",
            LearnWarning,
            stacklevel=2,
        )
    return PhotoSet(torch.stack(tensors), used, hashes)


def sample_generator(seed: int, index: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for sample ``index`` of the run with ``seed`` (``stream`` separates uses)."""
    key = hashlib.blake2b(f"{seed}/{stream}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(key, "little") & 0x7FFF_FFFF_FFFF_FFFF)


def photo_index(seed: int, sample: int, n: int) -> int:
    """Photo of sample ``sample``: each epoch of ``n`` samples visits every photo once, shuffled."""
    epoch, pos = divmod(sample, n)
    perm = torch.randperm(n, generator=sample_generator(seed, epoch, stream=1))
    return int(perm[pos])
