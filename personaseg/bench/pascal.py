"""The PASCAL VOC 2012 layout (``bench voc``): images and their class-label PNGs, listed per split.

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png         palette PNG: index = VOC class (0 background, 255 void);
                                       or SegmentationClassAug/<id>.png (grey labels)
    ImageSets/Segmentation/<split>.txt the split's image ids
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError, PersonasegError
from ..images import load_image
from .metrics import IGNORE, VOC_NUM_CLASSES


@dataclass
class VocSample:
    """One VOC image and its label PNG."""

    image: str  # image id, e.g. "2007_000032"
    image_path: Path
    mask_path: Path

    def load(self) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, labels (H, W) uint8 with 255 = void); a bad file raises DatasetError."""
        try:
            image = load_image(self.image_path)
        except PersonasegError as err:
            raise DatasetError(str(err)) from None
        if not self.mask_path.is_file():
            raise DatasetError(f"{self.mask_path} is missing", hint="every listed image needs its label PNG")
        with Image.open(self.mask_path) as im:
            labels = np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
        if labels.shape != (image.height, image.width):
            raise DatasetError(f"{self.mask_path}: labels are {labels.shape[1]}x{labels.shape[0]} but "
                               f"the image is {image.width}x{image.height}")
        bad = set(np.unique(labels).tolist()) - set(range(VOC_NUM_CLASSES)) - {IGNORE}
        if bad:
            raise DatasetError(f"{self.mask_path}: labels {sorted(bad)} outside 0..20 and 255",
                               hint="use VOC class indices (palette PNG indices, not colours)")
        return image, labels


def read_voc(root: str | Path, split: str = "train") -> list[VocSample]:
    """The split's samples, in list order; masks from SegmentationClass, else SegmentationClassAug."""
    root = Path(root)
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing} is missing", hint="point at VOC2012/ (JPEGImages, SegmentationClass, "
                           "ImageSets) or choose --split")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{listing} lists no images")
    out = []
    for i in ids:
        mask = root / "SegmentationClass" / f"{i}.png"
        if not mask.exists() and (root / "SegmentationClassAug" / f"{i}.png").exists():
            mask = root / "SegmentationClassAug" / f"{i}.png"
        out.append(VocSample(i, root / "JPEGImages" / f"{i}.jpg", mask))
    return out


__all__ = ["VocSample", "read_voc"]
