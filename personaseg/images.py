"""Images in: safe reading, the T2M resize/pad (spec step 1), restoring maps (step 8).
(Writing them, atomically, is :mod:`personaseg.io`'s.)

Reading never guesses silently: an unreadable, truncated or oversized file is an
:class:`~personaseg.errors.InputError` naming the path and the fix. What is read is turned into
plain 8-bit RGB in the orientation a viewer shows (EXIF applied), so masks computed on it line up
with the photo the user sees.

    >>> img = load_image("photo.jpg")
    >>> x, geom = prepare(img, long_side=None, multiple=64)   # (1, 3, H, W) in [-1, 1]
    >>> scores = restore(maps, geom)                         # (P, h, w) -> (P, H0, W0)
"""

from __future__ import annotations

import glob
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # 64 Mpx (8192 x 8192); larger images are refused
PAD_RGB = (123, 117, 104)  # the spec's padding colour (ImageNet mean)
_FORMATS_HINT = "give a JPEG, PNG, WebP, BMP, TIFF or GIF image"

# --------------------------------------------------------------------------- reading


def read_mask(mask, where: str) -> np.ndarray:
    """A mask (path, PIL image or array) -> bool (H, W): any non-zero pixel is the object. A file
    that is no readable image (PIL raises many types for a crafted one, see :func:`load_image`) or
    an array that is not (H, W) or (H, W, C) is one :class:`InputError` naming ``where``."""
    try:
        if isinstance(mask, (str, Path)):
            with Image.open(mask) as im:
                im.load()
                mask = im.copy()
        if isinstance(mask, Image.Image):
            mask = np.asarray(mask if mask.mode in ("1", "L", "P", "I", "I;16") else mask.convert("L"))
        a = np.asarray(mask)
    except Exception as err:  # noqa: BLE001 (a crafted file: any error of PIL's is "not readable")
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise InputError(f"mask {where} is not a readable image ({reason})", hint="give a PNG, white = object") from None
    if a.ndim == 3:  # (H, W, C) -> (H, W)
        a = a.max(axis=2)
    if a.ndim != 2:
        raise InputError(f"mask {where} has shape {a.shape}, expected (H, W)")
    return a != 0


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image in its displayed orientation.

    - EXIF orientation is applied (the result is what a viewer shows).
    - Transparency (RGBA, LA, PA, palette with a transparent index) is composited on white.
    - CMYK, 16-bit (``I;16``, ``I``), float, palette and grayscale images become RGB; 16-bit values
      are scaled to 8 bits (65535 -> 255), not clipped.
    - A truncated file, a file that is not an image, a directory, a missing or unreadable path and
      an image over ``max_pixels`` (decompression bombs included) raise :class:`InputError`.
    """
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as err:  # a name too long for the file system, ...
        raise InputError(f"image {str(path)[:200]} cannot be read ({err.strerror or type(err).__name__})",
                         hint="check the path") from None
    if not exists:
        raise InputError(f"image {path} does not exist", hint="check the path")
    if is_dir:
        raise InputError(f"{path} is a folder, not an image file", hint="give image files or a folder of them")
    try:
        with warnings.catch_warnings():
            # PIL warns (rather than fails) just above its own pixel limit: treat it as a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise _too_big(path, w, h, max_pixels)
                im.load()  # decodes now: a truncated file fails here, not later
                try:
                    return _to_rgb(ImageOps.exif_transpose(im))
                except ValueError:
                    raise InputError(
                        f"image {path} has colour mode {im.mode}, which cannot be converted to RGB",
                        hint="convert it to RGB (or 8-bit grey) first",
                    ) from None
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_big(path, None, None, max_pixels) from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image PIL can read", hint=_FORMATS_HINT) from None
    except PermissionError:
        raise InputError(f"image {path} is not readable (permission denied)", hint="check its permissions") from None
    except Exception as err:
        # PIL reports truncated / corrupt data as OSError ("image file is truncated", "broken data
        # stream"), some plugins as SyntaxError or ValueError, and crafted metadata as whatever its
        # parser trips on (a TIFF EXIF rational where an integer belongs: TypeError; struct.error,
        # IndexError, ZeroDivisionError, ...). A file is untrusted input: every failure is ours.
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise InputError(
            f"image {path} is damaged or truncated ({reason})", hint="re-export or re-download it"
        ) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """An in-memory PIL image -> 8-bit RGB as :func:`load_image` makes it (EXIF orientation,
    transparency on white, 16-bit scaled, CMYK/palette/grey converted). Use it for images that
    did not come from a path."""
    return _to_rgb(ImageOps.exif_transpose(image))


def _too_big(path: Path, w: int | None, h: int | None, max_pixels: int) -> InputError:
    size = f"{w}x{h} px" if w is not None else "too many pixels"
    return InputError(
        f"image {path} is too large ({size}, limit {max_pixels / 1e6:.0f} Mpx; possibly a decompression bomb)",
        hint="downscale it first, or raise max_pixels if you trust the file",
    )


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency composited on white."""
    if im.mode == "RGB":
        return im.copy()
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("PA", "LA", "La", "RGBa") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    elif im.mode.startswith("I") or im.mode == "F":
        im = Image.fromarray(_high_depth_to_u8(im, np.asarray(im)), mode="L")
    elif im.mode == "CMYK":
        im = _cmyk_to_rgb(im)
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def _high_depth_to_u8(im: Image.Image, a: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float grey values -> uint8, scaled from the format's range.

    Integer data whose values fit 16 bits is read as 0..65535 (16-bit PNG / TIFF, which PIL may
    report as mode "I"); larger 32-bit values are stretched from 0..max; float data is read as
    0..1 when it fits, else 0..max.
    """
    a = np.nan_to_num(a.astype(np.float64))
    peak = float(np.max(a, initial=0.0))
    if im.mode == "F":
        top = 1.0 if peak <= 1.0 else peak
    else:
        top = 65535.0 if peak <= 65535 else peak
    return np.rint(np.clip(a, 0.0, top) / top * 255.0).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one, else PIL's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # no littlecms, or a broken profile: fall back to the plain formula
            pass
    return im.convert("RGB")


def collect_images(inputs: Iterable[str | Path], recursive: bool = False) -> tuple[list[Path], list[str]]:
    """Expand files, folders (with ``recursive``, their subfolders too) and glob patterns into image paths.

    Returns ``(paths, warnings)``. Paths keep the order of ``inputs``; each folder or glob is
    expanded in sorted order; duplicates (same resolved file) are dropped; only files whose suffix
    is in :data:`IMAGE_SUFFIXES` count. ``warnings`` has one line per input that gave no image.
    Raises :class:`InputError` when nothing at all was found.
    """
    inputs = [str(i) for i in inputs]
    found: list[Path] = []
    seen: set[Path] = set()
    notes: list[str] = []

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for raw in inputs:
        p = Path(raw)
        try:
            p.is_dir()
        except OSError as err:  # a name too long for the file system, ...
            notes.append(f"{raw[:200]} cannot be read ({err.strerror or type(err).__name__})")
            continue
        if p.is_dir():
            hits = _images_in(p, recursive)
            if not hits:
                notes.append(f"folder {p} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif p.is_file():
            hits = [p] if _is_image_name(p) else []
            if not hits:
                notes.append(f"skipped {p}: not an image file name ({', '.join(IMAGE_SUFFIXES)})")
        elif glob.has_magic(raw):
            hits = []
            for m in sorted(glob.glob(raw, recursive=True)):
                mp = Path(m)
                hits += _images_in(mp, recursive) if mp.is_dir() else ([mp] if _is_image_name(mp) else [])
            if not hits:
                notes.append(f"pattern {raw} matched no images")
        else:
            hits = []
            notes.append(f"{p} does not exist")
        for h in hits:
            add(h)

    if not found:
        where = ", ".join(inputs) if inputs else "(no inputs)"
        raise InputError(f"no images found in {where}", hint="give image files, folders or globs")
    return found, notes


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    try:
        if recursive:  # sorted by path below the folder; hidden files and folders skipped
            found = (p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts))
            return sorted((p for p in found if p.is_file() and _is_image_name(p)), key=lambda p: p.relative_to(folder).parts)
        return sorted(p for p in folder.iterdir() if p.is_file() and _is_image_name(p))
    except PermissionError:
        raise InputError(f"folder {folder} is not readable", hint="check its permissions") from None


# --------------------------------------------------------------------------- T2M geometry


@dataclass(frozen=True)
class Geometry:
    """Where an image went in :func:`prepare`, so :func:`restore` can undo it. All (w, h) in px."""

    original: tuple[int, int]  # the loaded image's size
    resized: tuple[int, int]  # after the resize, before padding (top-left of the padded canvas)
    padded: tuple[int, int]  # the model's input size: resized + right/bottom padding

    @property
    def padding(self) -> tuple[int, int]:
        """(right, bottom) padding in px."""
        return self.padded[0] - self.resized[0], self.padded[1] - self.resized[1]


# The spec's aspect rule, (numerator, denominator, k): first r > num/den wins, else k = 11.
_ASPECT_RULE = ((16, 7, 16), (15, 8, 15), (14, 8, 14), (13, 9, 13), (12, 10, 12))


def t2m_long_side(w: int, h: int, unit: int = 64) -> int:
    """The spec's long side: ``unit * k`` with k from the aspect ratio r = max(w/h, h/w).

    r > 16/7 -> 16; > 15/8 -> 15; > 14/8 -> 14; > 13/9 -> 13; > 12/10 -> 12; else 11.
    Compared in integers (r > a/b  <=>  long*b > short*a), so boundaries are exact.
    """
    if w < 1 or h < 1:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    long, short = max(w, h), min(w, h)
    for num, den, k in _ASPECT_RULE:
        if long * den > short * num:
            return unit * k
    return unit * 11


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def prepare(
    image: Image.Image,
    long_side: int | None,
    multiple: int,
    pad_rgb: tuple[int, int, int] = PAD_RGB,
) -> tuple[torch.Tensor, Geometry]:
    """Resize and pad an image for the model (spec step 1).

    The long side becomes ``long_side`` (None: :func:`t2m_long_side`), the short side keeps the
    ratio (rounded, at least 1 px). The right/bottom edges are padded with ``pad_rgb`` up to a
    multiple of ``multiple`` (both sides, so a ``long_side`` that is not a multiple is padded
    too). Returns the image as a ``(1, 3, H, W)`` float32 tensor in [-1, 1] and its
    :class:`Geometry`.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    image = image if image.mode == "RGB" else _to_rgb(image)
    w, h = image.size
    L = t2m_long_side(w, h) if long_side is None else int(long_side)
    if L < 1:
        raise ValueError(f"long_side must be >= 1, got {long_side}")
    if w >= h:
        rw, rh = L, max(1, round(h * L / w))
    else:
        rw, rh = max(1, round(w * L / h)), L
    pw, ph = _ceil_to(rw, multiple), _ceil_to(rh, multiple)
    # Bilinear, as the reference's torchvision Resize on PIL images (antialiased when shrinking).
    resized = image.resize((rw, rh), Image.BILINEAR) if (rw, rh) != (w, h) else image
    canvas = Image.new("RGB", (pw, ph), tuple(int(c) for c in pad_rgb))
    canvas.paste(resized, (0, 0))
    x = torch.from_numpy(np.asarray(canvas, dtype=np.float32).copy())  # (H, W, 3) in 0..255
    x = x.permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0  # (H, W, 3) -> (1, 3, H, W) in [-1, 1]
    return x, Geometry(original=(w, h), resized=(rw, rh), padded=(pw, ph))


def restore(scores: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Score maps on the model's grid back to the image (spec step 8).

    ``scores`` (P, h, w) (or (h, w)) is upsampled bilinearly to the padded size, the padding is
    cropped off, and the rest resized bilinearly to the original size. Returns float32
    (P, H0, W0) (or (H0, W0)).
    """
    squeeze = scores.dim() == 2
    s = scores[None] if squeeze else scores
    s = s.float().unsqueeze(0)  # (P, h, w) -> (1, P, h, w)
    (pw, ph), (rw, rh), (w0, h0) = geom.padded, geom.resized, geom.original
    if s.shape[-2:] != (ph, pw):
        s = F.interpolate(s, size=(ph, pw), mode="bilinear", align_corners=False)
    s = s[..., :rh, :rw]  # crop the right/bottom padding
    if (rh, rw) != (h0, w0):
        s = F.interpolate(s, size=(h0, w0), mode="bilinear", align_corners=False)
    s = s[0]  # (1, P, H0, W0) -> (P, H0, W0)
    return s[0] if squeeze else s
