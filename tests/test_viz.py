"""personaseg.viz: overlays, heat maps, grids and palette PNGs (drawing only)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from personaseg.viz import heatmap, heatmap_grid, image_grid, overlay, palette_png, scale_to_tile, truth_grid, voc_palette


def _grey(w=60, h=40, v=100):
    return Image.new("RGB", (w, h), (v, v, v))


def test_overlay_tints_inside_outlines_edge_and_leaves_outside():
    img = _grey()
    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    out = np.asarray(overlay(img, mask, color=(255, 0, 0), alpha=0.5)).astype(int)
    assert out.shape == (40, 60, 3)
    assert out[20, 35].tolist() == [178, 50, 50]  # interior: 0.5 * 100 + 0.5 * colour
    assert out[10, 35].tolist() == [255, 0, 0]  # top edge: outline in the colour
    assert out[5, 5].tolist() == [100, 100, 100]  # outside untouched
    assert (out[~mask] == 100).all()  # thin image: outline stays inside the mask


def test_overlay_label_drawn_in_corner_only():
    img = _grey(200, 120)
    mask = np.zeros((120, 200), bool)
    plain = np.asarray(overlay(img, mask))
    labelled = np.asarray(overlay(img, mask, label="mug"))
    assert (plain == 100).all()
    changed = np.argwhere((labelled != plain).any(-1))  # (K, 2) rows, cols of changed pixels
    assert len(changed) > 0
    assert changed[:, 0].max() < 60 and changed[:, 1].max() < 100  # top-left corner


def test_overlay_accepts_arrays_and_non_latin_label():
    a = np.full((30, 30, 3), 7, np.uint8)
    out = overlay(a, np.ones((30, 30), np.uint8), label="кружка ☕")
    assert out.size == (30, 30) and out.mode == "RGB"


def test_overlay_size_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        overlay(_grey(), np.zeros((10, 10), bool))


def test_heatmap_ramp_ends_and_clipping():
    s = np.array([[0.0, 0.5, 1.0, -3.0, 7.0, np.nan]])
    a = np.asarray(heatmap(s)).astype(int)
    assert a.shape == (1, 6, 3)
    assert a[0, 0].tolist() == a[0, 3].tolist() == a[0, 5].tolist()  # 0, below 0 and NaN alike
    assert a[0, 2].tolist() == a[0, 4].tolist()  # 1 and above alike
    assert a[0, 0, 2] > a[0, 0, 0] and a[0, 2, 0] > a[0, 2, 2]  # low is blue, high is red
    assert len({tuple(p) for p in a[0, :3]}) == 3


def test_heatmap_grid_layout():
    img = _grey(90, 60)
    maps = [np.random.default_rng(i).random((6, 9)) for i in range(3)]  # coarse maps are resized
    g = heatmap_grid(img, maps, ["a", "photo", "mug"], tile=64)
    cap = g.height - 64
    assert g.size == (4 * 64, 64 + cap) and cap > 0
    g2 = heatmap_grid(img, maps, ["a", "photo", "mug"], cols=2, tile=64)
    assert g2.size == (2 * 64, 2 * (64 + cap))
    # second tile differs from the first (the heat map is blended in)
    a = np.asarray(g2)
    assert not np.array_equal(a[:64, :64], a[:64, 64:128])
    with pytest.raises(ValueError):
        heatmap_grid(img, maps, ["only one"])


def test_image_grid_letterbox_and_titles():
    tall = Image.new("RGB", (10, 40), (255, 0, 0))
    wide = Image.new("RGB", (40, 10), (0, 255, 0))
    g = image_grid([[tall, wide], [wide]], tile=32)
    assert g.size == (64, 64)
    a = np.asarray(g).astype(int)
    assert a[16, 16].tolist() == [255, 0, 0]  # centre of the tall tile
    assert a[16, 1].tolist() != [255, 0, 0]  # letterbox bars left/right of it
    assert a[16, 48].tolist() == [0, 255, 0] and a[1, 48].tolist() != [0, 255, 0]
    assert a[48, 48].tolist() == a[1, 48].tolist()  # missing cell is background
    gt = image_grid([[tall, wide]], titles=["image", "mask"], tile=32)
    assert gt.width == 64 and gt.height > 32


def test_palette_png_keeps_indices_and_voc_colours():
    labels = np.array([[0, 1, 2], [15, 255, 1]], np.uint8)
    im = palette_png(labels)
    assert im.mode == "P"
    assert np.array_equal(np.asarray(im), labels)
    pal = im.getpalette()
    assert pal[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    assert pal[15 * 3 : 15 * 3 + 3] == [192, 128, 128]  # VOC "person"
    assert pal[255 * 3 : 255 * 3 + 3] == [224, 224, 192]  # VOC "void"
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    back = Image.open(io.BytesIO(buf.getvalue()))
    assert back.mode == "P" and np.array_equal(np.asarray(back), labels)
    assert voc_palette()[:6] == [0, 0, 0, 128, 0, 0]
    with pytest.raises(ValueError):
        palette_png(np.array([[300]]))


def test_overlay_dim_darkens_outside_only():
    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    out = np.asarray(overlay(_grey(), mask, color=(255, 255, 255), alpha=0.0, dim=0.6)).astype(int)
    assert out[5, 5].tolist() == [40, 40, 40]  # outside: 0.4 * 100
    assert out[20, 35].tolist() == [100, 100, 100]  # inside: untouched (alpha 0)
    assert out[10, 35].tolist() == [255, 255, 255]  # outline


def test_titled_puts_the_label_outside_and_whole():
    """Overlay labels covered the top of small images and cut names ('<triangle-plai', 'no')."""
    from PIL import ImageDraw, ImageFont

    from personaseg.viz import titled

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    text = "<triangle-plain>: not found"
    out = titled(img, text)
    a = np.asarray(out)
    band = out.height - 64
    assert band > 0 and out.width > 64  # a name wider than the image widens the picture
    x0 = (out.width - 64) // 2
    assert np.array_equal(a[band:, x0:x0 + 64], np.asarray(img))  # the image itself untouched
    assert (a[band:, :x0] == 0).all()  # beside it: background, no text
    # the whole text fits in the band: measured with the font it is drawn in (PIL's default, 12 px here)
    x0, _, x1, _ = ImageDraw.Draw(out).textbbox((0, 0), text, font=ImageFont.load_default(size=12))
    assert x1 - x0 <= out.width
    assert (a[:band] > 128).any()  # something (the text) drawn in the band
    wide = titled(_grey(400, 200), "mug")
    assert wide.width == 400 and wide.height > 200


def test_captions_are_never_cut():
    from personaseg.viz import caption_layout

    name = "<triangle-plain-with-a-very-long-name>: not found"
    font, lines = caption_layout(name, 96, 14)
    assert "".join(lines).replace(" ", "") == name.replace(" ", "") and "..." not in "".join(lines)
    g = image_grid([[_grey(32, 32)]], titles=[name], tile=96)
    short = image_grid([[_grey(32, 32)]], titles=["mug"], tile=96)
    assert g.height > short.height  # the header grows to hold the lines
    cap = image_grid([[_grey(32, 32)], [_grey(32, 32)]], tile=64, captions=[["alone"], [name]])
    assert cap.height > 2 * 64


def test_heatmap_grid_without_letterbox_has_no_dead_space():
    """explain's grid letterboxed a wide image into squares: dark bars, labels far below the tiles."""
    img = _grey(200, 50, v=200)
    maps = [np.full((5, 20), 0.5)] * 2
    g = heatmap_grid(img, maps, ["a", "mug"], tile=100, letterbox=False)
    tile_h = 25  # 200 x 50 at long side 100
    a = np.asarray(g).astype(int)
    cap = g.height - tile_h
    assert g.size == (3 * 100, tile_h + cap) and 0 < cap < 40
    assert (a[:tile_h, :100] == 200).all()  # the image fills its tile: no bar
    boxed = heatmap_grid(img, maps, ["a", "mug"], tile=100)
    assert g.height < boxed.height / 2


def test_scale_to_tile_scales_image_and_mask_together():
    image = Image.new("RGB", (200, 100), (10, 20, 30))
    mask = np.zeros((100, 200), bool)
    mask[:, :100] = True
    small, small_mask = scale_to_tile(image, mask, 50)
    assert small.size == (50, 25) and small_mask.shape == (25, 50) and small_mask.dtype == bool
    assert small_mask[:, :25].all() and not small_mask[:, 25:].any()


def test_truth_grid_rows_and_an_empty_cell_for_a_missing_prediction():
    assert truth_grid([], ["ti"]) is None
    image = Image.new("RGB", (64, 64), (200, 200, 200))
    gt = np.zeros((64, 64), bool)
    gt[10:30, 10:30] = True
    grid = truth_grid([(image, gt, [gt, None])], ["ti", "class-word"], tile=32, captions=[["a: alone"]])
    assert grid.width == 4 * 32 and grid.height > 32  # image | ground truth | ti | class-word, under a header
    a = np.asarray(grid).astype(int)
    cell = lambda j: a[:, j * 32:(j + 1) * 32]  # noqa: E731 - column j, header and caption band included
    row = [y for y in range(grid.height) if (cell(0)[y] == 200).all()]  # the image's rows (uniform grey)
    drawn = [y for y in row if len({tuple(p) for p in cell(2)[y]}) > 2]  # those the ti mask crosses
    assert drawn and ((cell(1)[..., 1] > cell(1)[..., 0] + 40).any())  # ground truth: green
    assert (cell(2)[..., 2] > cell(2)[..., 0] + 40).any()  # the prediction: blue
    assert len({tuple(p) for p in cell(3)[drawn].reshape(-1, 3)}) == 1  # the missing prediction's cell stays empty
