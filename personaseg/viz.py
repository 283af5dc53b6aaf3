"""Drawing only: overlays, heat maps, grids and palette PNGs (PIL + numpy, no matplotlib).

Nothing here computes a mask or a score; callers pass them in. Images may be PIL images or
uint8 arrays (H, W, 3); masks are (H, W) arrays (non-zero = foreground); score maps are float
(H, W) in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

_BG = (32, 32, 32)  # letterbox / empty-cell colour
_TEXT = (255, 255, 255)

# A perceptually ordered dark-blue -> cyan -> yellow -> red ramp (turbo-like), anchors at
# evenly spaced scores; heatmap() interpolates linearly between them.
_RAMP = np.array(
    [
        (48, 18, 59),
        (65, 105, 225),
        (30, 190, 220),
        (80, 230, 120),
        (210, 230, 50),
        (250, 150, 30),
        (200, 40, 20),
        (122, 4, 3),
    ],
    dtype=np.float64,
)


def _rgb(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {a.dtype}")
    return Image.fromarray(a).convert("RGB")


def _font(size: int) -> ImageFont.ImageFont:
    """PIL's default font at ``size`` px (scalable when FreeType is available)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # older Pillow or no FreeType: fixed bitmap font
        return ImageFont.load_default()


def _drawable(text: str, font) -> str:
    """``text`` with characters the font cannot encode replaced by "?" (bitmap fonts are latin-1)."""
    try:
        font.getbbox(text)
        return text
    except UnicodeEncodeError:
        return text.encode("latin-1", "replace").decode("latin-1")


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def overlay(
    image: Image.Image | np.ndarray,
    mask: np.ndarray,
    label: str | None = None,
    color: tuple[int, int, int] = (255, 64, 64),
    alpha: float = 0.5,
    dim: float = 0.0,
) -> Image.Image:
    """The mask tinted over the image with an outline, and ``label`` in the top-left corner.

    ``dim`` darkens everything outside the mask by that fraction: the mask stays visible on an
    object of the tint's own colour (the demo's red triangle).
    """
    img = _rgb(image)
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (img.height, img.width):
        raise ValueError(f"mask {mask.shape} does not match image {(img.height, img.width)} (H, W)")
    a = np.asarray(img, dtype=np.float32).copy()  # (H, W, 3)
    col = np.asarray(color, dtype=np.float32)
    a[mask] = a[mask] * (1.0 - alpha) + col * alpha
    a[~mask] *= 1.0 - dim
    # Outline: foreground pixels with a background 4-neighbour, thickened on big images.
    pad = np.pad(mask, 1, mode="constant")
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:] & mask
    edge = Image.fromarray((mask & ~interior).astype(np.uint8) * 255)
    width = max(1, round(min(img.size) / 300))
    if width > 1:
        edge = edge.filter(ImageFilter.MaxFilter(2 * (width // 2) + 1))
    a[np.asarray(edge) > 0] = col
    out = Image.fromarray(np.rint(a).clip(0, 255).astype(np.uint8))
    if label:
        _label(out, label)
    return out


def _label(img: Image.Image, text: str, xy: tuple[int, int] = (0, 0)) -> None:
    """Write ``text`` on a dark box at ``xy`` (in place)."""
    draw = ImageDraw.Draw(img)
    font = _font(max(10, min(img.size) // 24))
    text = _drawable(text, font)
    tw, th = _text_size(draw, text, font)
    m = max(2, th // 4)
    draw.rectangle((xy[0], xy[1], xy[0] + tw + 2 * m, xy[1] + th + 2 * m), fill=(0, 0, 0))
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((xy[0] + m - left, xy[1] + m - top), text, fill=_TEXT, font=font)


def heatmap(scores: np.ndarray) -> Image.Image:
    """A score map (H, W) in [0, 1] as an RGB heat map (dark blue = 0, dark red = 1)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64)).clip(0.0, 1.0)
    if s.ndim != 2:
        raise ValueError(f"scores must be (H, W), got shape {s.shape}")
    xs = np.linspace(0.0, 1.0, len(_RAMP))
    rgb = np.stack([np.interp(s, xs, _RAMP[:, c]) for c in range(3)], axis=-1)  # (H, W) -> (H, W, 3)
    return Image.fromarray(np.rint(rgb).astype(np.uint8))


def _fit(img: Image.Image, tile: int) -> Image.Image:
    """Resize to fit a ``tile`` x ``tile`` square, keeping the aspect, centred on a dark background."""
    w, h = img.size
    s = tile / max(w, h)
    small = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    canvas = Image.new("RGB", (tile, tile), _BG)
    canvas.paste(small, ((tile - small.width) // 2, (tile - small.height) // 2))
    return canvas


def _caption_height(tile: int) -> int:
    return max(14, tile // 10)


_MIN_FONT = 9  # px: captions shrink to this before they wrap onto more lines


def _wrap(text: str, font, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` px: broken after spaces, '-' or ':' where it can be,
    else between characters. Nothing is dropped: every character appears once, in order."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines, line, cut = [], "", -1  # cut: index in ``line`` after which a break reads well
    for ch in text:
        if line and _text_size(probe, line + ch, font)[0] > width:
            if 0 <= cut < len(line) - 1:
                lines.append(line[: cut + 1].rstrip())
                line = line[cut + 1 :].lstrip()
            else:
                lines.append(line.rstrip())
                line = ""
            cut = -1
        line += ch
        if ch in " -:/,":
            cut = len(line) - 1
    return lines + [line] if line else lines


def caption_layout(text: str, width: int, height: int) -> tuple[ImageFont.ImageFont, list[str]]:
    """How the grids lay out a caption of ``text`` in a box ``width`` px wide with a one-line
    ``height``: the largest font (from ``height``'s size down to ``_MIN_FONT``) that fits it on one
    line; at the smallest size, the lines it wraps into. Names are never cut."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    size = max(_MIN_FONT, height * 3 // 4)
    while True:
        font = _font(size)
        text = _drawable(text, font)
        if _text_size(probe, text, font)[0] <= width - 2 or size <= _MIN_FONT:
            break
        size -= 1
    return font, _wrap(text, font, max(1, width - 2))


def _line_height(font) -> int:
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return _text_size(probe, "Ag<>[]", font)[1] + 2


def _caption_needs(texts: Sequence[str], width: int, height: int) -> int:
    """Height in px the tallest of ``texts`` needs in a ``width`` x ``height`` caption box."""
    need = height
    for t in texts:
        font, lines = caption_layout(t, width, height)
        need = max(need, len(lines) * _line_height(font) + 4)
    return need


def _caption(canvas: Image.Image, text: str, box: tuple[int, int, int, int], base: int | None = None) -> None:
    """Centre ``text`` in ``box`` (x0, y0, x1, y1): a smaller font, then more lines, never an ellipsis.
    ``base``: the one-line height the font is sized from (as given to :func:`_caption_needs`)."""
    draw = ImageDraw.Draw(canvas)
    x0, y0, x1, y1 = box
    font, lines = caption_layout(text, x1 - x0, base or y1 - y0)
    lh = _line_height(font)
    top = draw.textbbox((0, 0), "Ag<>[]", font=font)[1]  # one baseline for every line ("a" and "photo" alike)
    y = y0 + (y1 - y0 - lh * len(lines)) // 2
    for line in lines:
        tw, _ = _text_size(draw, line, font)
        left = draw.textbbox((0, 0), line, font=font)[0]
        draw.text((x0 + (x1 - x0 - tw) // 2 - left, y + 1 - top), line, fill=_TEXT, font=font)
        y += lh


def titled(image: Image.Image | np.ndarray, text: str) -> Image.Image:
    """``image`` under a band holding ``text`` whole, on one line: the label never covers the image,
    and a text wider than a small image widens the picture (the image centred) rather than being cut."""
    img = _rgb(image)
    draw = ImageDraw.Draw(img)
    font = _font(max(12, min(img.size) // 16))
    text = _drawable(text, font)
    tw, _ = _text_size(draw, text, font)
    lh = _line_height(font)
    m = max(3, lh // 4)
    width = max(img.width, tw + 2 * m)
    canvas = Image.new("RGB", (width, img.height + lh + 2 * m), (0, 0, 0))
    canvas.paste(img, ((width - img.width) // 2, lh + 2 * m))
    d = ImageDraw.Draw(canvas)
    left = d.textbbox((0, 0), text, font=font)[0]
    top = d.textbbox((0, 0), "Ag<>[]", font=font)[1]
    d.text((m - left, m + 1 - top), text, fill=_TEXT, font=font)
    return canvas


def image_grid(
    rows: Sequence[Sequence[Image.Image | np.ndarray | None]],
    titles: Sequence[str] | None = None,
    tile: int = 128,
    captions: Sequence[Sequence[str | None]] | None = None,
) -> Image.Image:
    """Images laid out in rows, each letterboxed into a ``tile`` px square.

    Rows may differ in length (missing cells and ``None`` stay empty). ``titles`` label the
    columns, in a header above the grid; ``captions`` (one list per row) label cells right under
    them. Texts are never cut: a long one gets a smaller font, then more lines (the band grows).
    """
    n_rows = len(rows)
    n_cols = max([len(r) for r in rows] + [len(titles or [])] + [1])
    head = _caption_needs(titles, tile, _caption_height(tile)) if titles else 0
    cap = 0
    if captions and any(c for row in captions for c in row):
        cap = _caption_needs([c for row in captions for c in row if c], tile, _caption_height(tile))
    canvas = Image.new("RGB", (n_cols * tile, head + max(n_rows, 0) * (tile + cap)), _BG)
    for j, t in enumerate(titles or []):
        _caption(canvas, t, (j * tile, 0, (j + 1) * tile, head), _caption_height(tile))
    for i, row in enumerate(rows):
        y = head + i * (tile + cap)
        for j, im in enumerate(row):
            if im is not None:
                canvas.paste(_fit(_rgb(im), tile), (j * tile, y))
            text = captions[i][j] if captions and i < len(captions) and j < len(captions[i]) else None
            if text:
                _caption(canvas, text, (j * tile, y + tile, (j + 1) * tile, y + tile + cap), _caption_height(tile))
    return canvas


def heatmap_grid(
    image: Image.Image | np.ndarray,
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    cols: int | None = None,
    tile: int = 256,
    alpha: float = 0.6,
    letterbox: bool = True,
) -> Image.Image:
    """The image, then one heat map blended over it per title, each titled right underneath.

    ``maps`` are (h, w) scores in [0, 1] at any resolution (resized bilinearly to the image).
    ``cols`` defaults to at most 5 tiles per row. Tiles are ``tile`` px squares (the image
    letterboxed); with ``letterbox=False`` they take the image's shape (long side ``tile``), so a
    wide or tall image leaves no empty bars.
    """
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    img = _rgb(image)
    if letterbox:
        tw = th = tile
    else:  # (W, H) of a tile: the image's aspect, long side ``tile``
        s = tile / max(img.size)
        tw, th = max(1, round(img.width * s)), max(1, round(img.height * s))

    def fit(im: Image.Image) -> Image.Image:
        return _fit(im, tile) if letterbox else im.resize((tw, th), Image.BILINEAR)

    tiles = [(fit(img), "image")]
    for m, t in zip(maps, titles):
        m = np.asarray(m, dtype=np.float32)
        if m.shape != (img.height, img.width):
            m = np.asarray(Image.fromarray(m, mode="F").resize(img.size, Image.BILINEAR))
        blend = Image.blend(img, heatmap(m), alpha)
        tiles.append((fit(blend), t))
    n = len(tiles)
    cols = min(n, 5) if cols is None else max(1, cols)
    rows = math.ceil(n / cols)
    cap = _caption_needs([t for _, t in tiles], tw, _caption_height(tile))
    canvas = Image.new("RGB", (cols * tw, rows * (th + cap)), _BG)
    for k, (t_img, title) in enumerate(tiles):
        x, y = (k % cols) * tw, (k // cols) * (th + cap)
        canvas.paste(t_img, (x, y))
        _caption(canvas, title, (x, y + th, x + tw, y + th + cap), _caption_height(tile))
    return canvas


def scale_to_tile(image: Image.Image, mask: np.ndarray, tile: int) -> tuple[Image.Image, np.ndarray]:
    """``image`` and its ``mask`` (H, W) scaled together so that the long side is ``tile`` px (labels
    and outlines drawn on them then have one size in every cell of a grid)."""
    scale = tile / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    return image.resize(size, Image.BILINEAR), np.asarray(small) > 0


def truth_grid(
    rows: Sequence[tuple[Image.Image, np.ndarray, Sequence[np.ndarray | None]]],
    methods: Sequence[str],
    tile: int = 160,
    captions: Sequence[Sequence[str | None]] | None = None,
) -> Image.Image | None:
    """A benchmark's grid: a row per sample, image | ground truth (green) | each method's prediction
    (blue), drawn over the image scaled to the tile.

    ``rows``: (image, ground-truth mask (H, W), one prediction (H, W) per method, None for a missing
    one: its cell stays empty). None when there are no rows.
    """
    cells = []
    for image, gt, preds in rows:
        small, small_gt = scale_to_tile(image, gt, tile)
        row = [small, overlay(small, small_gt, color=(40, 220, 40))]
        row += [None if p is None else overlay(small, scale_to_tile(image, p, tile)[1], color=(0, 200, 255))
                for p in preds]
        cells.append(row)
    if not cells:
        return None
    return image_grid(cells, ["image", "ground truth", *methods], tile=tile, captions=captions)


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map as a flat [r, g, b, ...] list (0 black, 1 dark red, ...)."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for bit in range(8):  # spread the label's bits over the high bits of r, g, b
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        pal += [r, g, b]
    return pal


def palette_png(labels: np.ndarray) -> Image.Image:
    """Label map (H, W) uint8 -> "P" image with the VOC palette (0 = black background)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError("labels must be in 0..255 for a palette PNG")
        labels = labels.astype(np.uint8)
    im = Image.fromarray(np.ascontiguousarray(labels))  # mode "L", values kept as indices
    im.putpalette(voc_palette())  # "L" + palette -> "P", no quantisation
    return im
