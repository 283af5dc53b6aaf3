"""personaseg.images: safe reading of odd files, collecting inputs, the T2M resize rule,
prepare/restore geometry (atomic writes: test_io.py). Every odd image is made inside the test."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from personaseg import images
from personaseg.errors import InputError
from personaseg.images import Geometry, collect_images, load_image, prepare, restore, t2m_long_side, to_rgb


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg


# --------------------------------------------------------------------------- load_image


def test_rgb_jpeg_loads_unchanged_size(tmp_path):
    p = tmp_path / "a.jpg"
    Image.new("RGB", (37, 21), (10, 200, 30)).save(p)
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (37, 21)


def test_cmyk_jpeg_becomes_rgb_with_right_colour(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(p, quality=95)  # pure red in CMYK
    im = load_image(p)
    assert im.mode == "RGB"
    r, g, b = np.asarray(im)[6, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "deep.png"
    a = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    im = load_image(p)
    assert im.mode == "RGB"
    got = np.asarray(im)[0, :, 0]
    # clipping would give 255 for 1000; scaling gives round(1000 / 257) = 4
    assert got.tolist() == [0, 128, 255, 4]


def test_palette_png_with_transparency_composited_on_white(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (4, 2), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    im.putpixel((3, 1), 1)
    im.info["transparency"] = 0
    im.save(p, transparency=0)
    out = np.asarray(load_image(p))
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent red -> white
    assert out[1, 3].tolist() == [0, 0, 255]  # opaque blue stays


def test_plain_palette_and_grayscale(tmp_path):
    p = tmp_path / "pal.gif"
    im = Image.new("P", (3, 3), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    im.save(p)
    assert np.asarray(load_image(p))[1, 1].tolist() == [0, 255, 0]
    g = tmp_path / "g.png"
    Image.new("L", (3, 3), 77).save(g)
    assert np.asarray(load_image(g))[0, 0].tolist() == [77, 77, 77]


def test_rgba_composited_on_white(tmp_path):
    p = tmp_path / "rgba.png"
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    a[0, 1] = (0, 0, 0, 255)  # opaque black stays black
    a[1, 0] = (0, 0, 0, 128)  # half -> mid grey
    Image.fromarray(a, "RGBA").save(p)
    out = np.asarray(load_image(p)).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert abs(out[1, 0, 0] - 127) <= 2


def test_exif_orientation_6_is_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # stored left half red
    a[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(a).save(p, exif=exif, quality=95)
    im = load_image(p)
    assert im.size == (20, 40)  # transposed: displayed portrait
    out = np.asarray(im).astype(int)
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60  # stored left is now the top
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60


def test_to_rgb_in_memory_matches_load_image(tmp_path):
    p = tmp_path / "rot.png"
    a = np.zeros((2, 4, 4), np.uint8)
    a[..., 3] = 255
    a[0, 0] = (255, 0, 0, 0)  # transparent
    im = Image.fromarray(a, "RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(p, exif=exif)
    with Image.open(p) as src:
        mem = to_rgb(src)
    assert mem.mode == "RGB" and mem.size == (2, 4)
    assert np.array_equal(np.asarray(mem), np.asarray(load_image(p)))


def test_truncated_jpeg_is_an_error(tmp_path):
    p = tmp_path / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p, quality=90)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as err:
        load_image(p)
    _one_line_naming(err, p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n")
    with pytest.raises(InputError, match="not an image") as err:
        load_image(p)
    _one_line_naming(err, p)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist") as err:
        load_image(tmp_path / "nope.png")
    _one_line_naming(err, tmp_path / "nope.png")
    with pytest.raises(InputError, match="folder") as err:
        load_image(tmp_path)
    _one_line_naming(err, tmp_path)


def test_unreadable_file(tmp_path, monkeypatch):
    p = tmp_path / "locked.png"
    Image.new("RGB", (2, 2)).save(p)

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images.Image, "open", deny)
    with pytest.raises(InputError, match="not readable") as err:
        load_image(p)
    _one_line_naming(err, p)


@pytest.mark.parametrize("size", [(1, 1), (4000, 10), (10, 4000)])
def test_tiny_and_very_wide_images(tmp_path, size):
    p = tmp_path / "odd.png"
    Image.new("RGB", size, (1, 2, 3)).save(p)
    im = load_image(p)
    assert im.size == size
    x, geom = prepare(im, None, 64)
    assert x.shape[-1] % 64 == 0 and x.shape[-2] % 64 == 0
    assert min(geom.resized) >= 1
    back = restore(torch.rand(1, x.shape[-2] // 8, x.shape[-1] // 8), geom)
    assert back.shape == (1, size[1], size[0])


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR declares w x h (8-bit RGB) with a tiny, incomplete IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _tiff_with_rational(path: Path, tag: int) -> Path:
    """A TIFF whose tag ``tag`` holds a rational where PIL expects an integer or text."""
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[tag] = TiffImagePlugin.IFDRational(3, 1)
    ifd.tagtype[tag] = 5  # RATIONAL
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path, "TIFF", tiffinfo=ifd)
    return path


@pytest.mark.parametrize("tag", [273, 700])  # StripOffsets (TypeError: 'IFDRational'), XMP
def test_crafted_tiff_metadata_is_an_input_error(tmp_path, tag):
    path = _tiff_with_rational(tmp_path / "crafted.tif", tag)
    with pytest.raises(InputError, match="crafted.tif is damaged"):
        load_image(path)


def test_learn_photos_skip_a_crafted_tiff_and_keep_the_others(tmp_path):
    from personaseg.concepts.data import LearnWarning, load_photos

    Image.new("RGB", (16, 16), (0, 90, 0)).save(tmp_path / "a.png")
    _tiff_with_rational(tmp_path / "b.tif", 273)
    Image.new("RGB", (16, 16), (90, 0, 0)).save(tmp_path / "c.png")
    with pytest.warns(LearnWarning, match="skipped image .*b.tif is damaged"):
        photos = load_photos(tmp_path, 8)
    assert [p.name for p in photos.paths] == ["a.png", "c.png"]


def test_decompression_bomb_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(InputError, match="too large") as err:
        load_image(p)
    _one_line_naming(err, p)


def test_max_pixels_cap(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (50, 40)).save(p)
    with pytest.raises(InputError, match="too large"):
        load_image(p, max_pixels=1999)
    assert load_image(p, max_pixels=2000).size == (50, 40)


def test_pil_bomb_warning_is_an_error(tmp_path, monkeypatch):
    p = tmp_path / "warn.png"
    Image.new("RGB", (15, 10)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 150 px: PIL warns (not errors) here
    with pytest.raises(InputError, match="too large"):
        load_image(p, max_pixels=10**9)


# --------------------------------------------------------------------------- collect_images


def _touch_png(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2)).save(p, format="PNG")
    return p


def test_collect_folder_glob_file_dedup(tmp_path):
    d = tmp_path / "photos"
    b = _touch_png(d / "b.png")
    a = _touch_png(d / "a.JPG")
    _touch_png(d / "sub" / "c.png")  # not recursive
    (d / "notes.txt").write_text("x")
    paths, notes = collect_images([d, str(d / "*.png"), b])
    assert paths == [a, b]  # sorted within the folder; glob and file add nothing new
    assert notes == []


def test_collect_warns_and_keeps_going(tmp_path):
    a = _touch_png(tmp_path / "a.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "doc.txt").write_text("x")
    paths, notes = collect_images([tmp_path / "missing.png", empty, str(tmp_path / "*.gif"), tmp_path / "doc.txt", a])
    assert paths == [a]
    assert len(notes) == 4
    assert any("missing.png" in n for n in notes) and any("empty" in n for n in notes)


def test_collect_nothing_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found") as err:
        collect_images([empty])
    _one_line_naming(err, empty)
    with pytest.raises(InputError):
        collect_images([])


# --------------------------------------------------------------------------- resize rule


def _rule_by_spec(w: int, h: int) -> int:
    r = max(Fraction(w, h), Fraction(h, w))
    for bound, k in ((Fraction(16, 7), 16), (Fraction(15, 8), 15), (Fraction(14, 8), 14), (Fraction(13, 9), 13), (Fraction(12, 10), 12)):
        if r > bound:
            return 64 * k
    return 64 * 11


@pytest.mark.parametrize(
    "num,den,at,above",
    [(16, 7, 15, 16), (15, 8, 14, 15), (14, 8, 13, 14), (13, 9, 12, 13), (12, 10, 11, 12)],
)
def test_resize_rule_boundaries(num, den, at, above):
    s = 100
    assert t2m_long_side(num * s, den * s) == 64 * at  # exactly on the bound: not ">"
    assert t2m_long_side(den * s, num * s) == 64 * at  # portrait the same
    assert t2m_long_side(num * s + 1, den * s) == 64 * above
    assert t2m_long_side(den * s, num * s + 1) == 64 * above


def test_resize_rule_matches_spec_and_unit():
    assert t2m_long_side(500, 500) == 704 and t2m_long_side(1, 1) == 704
    assert t2m_long_side(4000, 10) == 1024
    assert t2m_long_side(300, 200, unit=8) == 8 * 13
    rng = np.random.default_rng(1)
    for w, h in rng.integers(1, 3000, size=(300, 2)):
        assert t2m_long_side(int(w), int(h)) == _rule_by_spec(int(w), int(h))


# --------------------------------------------------------------------------- prepare / restore


@pytest.mark.parametrize(
    "size,long_side,multiple,resized,padded",
    [
        ((640, 480), None, 64, (768, 576), (768, 576)),  # r = 1.33 -> k = 12, no padding
        ((500, 333), None, 64, (832, 554), (832, 576)),  # r = 1.50 -> k = 13, bottom padded
        ((333, 500), None, 64, (554, 832), (576, 832)),  # portrait: right padded
        ((200, 100), 100, 64, (100, 50), (128, 64)),  # long side not a multiple: padded too
        ((7, 3), 64, 8, (64, 27), (64, 32)),  # round(3 * 64 / 7) = 27
    ],
)
def test_prepare_sizes(size, long_side, multiple, resized, padded):
    x, geom = prepare(Image.new("RGB", size), long_side, multiple)
    assert geom == Geometry(original=size, resized=resized, padded=padded)
    assert x.shape == (1, 3, padded[1], padded[0]) and x.dtype == torch.float32
    assert geom.padding == (padded[0] - resized[0], padded[1] - resized[1])


def test_prepare_values_and_padding_colour():
    colour, pad = (10, 200, 30), (123, 117, 104)
    x, geom = prepare(Image.new("RGB", (500, 333), colour), None, 64, pad_rgb=pad)
    (rw, rh), (_, ph) = geom.resized, geom.padded
    assert rh < ph
    want_img = torch.tensor(colour, dtype=torch.float32) / 127.5 - 1
    want_pad = torch.tensor(pad, dtype=torch.float32) / 127.5 - 1
    content = x[0, :, :rh, :rw].reshape(3, -1)  # (3, rh, rw) -> (3, rh*rw)
    padding = x[0, :, rh:, :].reshape(3, -1)
    assert torch.allclose(content, want_img[:, None], atol=1e-6)
    assert torch.allclose(padding, want_pad[:, None], atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1


def test_restore_undoes_prepare():
    """A smooth 2-D gradient survives prepare -> restore: the crop and both resizes line up."""
    w0, h0 = 300, 200
    yy, xx = np.mgrid[0:h0, 0:w0]
    grad = (xx / (w0 - 1) * 0.6 + yy / (h0 - 1) * 0.4).astype(np.float32)  # in [0, 1]
    img = Image.fromarray(np.rint(np.repeat(grad[..., None], 3, -1) * 255).astype(np.uint8))
    x, geom = prepare(img, None, 64)
    assert geom.padding[1] > 0  # there is padding to crop
    scores = (x[0, :1] + 1) / 2  # (1, H, W): the red channel back in [0, 1]
    back = restore(scores, geom)
    assert back.shape == (1, h0, w0)
    assert (back[0] - torch.from_numpy(grad)).abs().max() < 0.02
    # from a coarse (1/8) grid too, and 2-D in -> 2-D out
    coarse = torch.nn.functional.avg_pool2d(scores[None], 8)[0, 0]  # (1, 1, H, W) -> (H/8, W/8)
    back2 = restore(coarse, geom)
    assert back2.shape == (h0, w0)
    assert (back2[4:-4, 4:-4] - torch.from_numpy(grad)[4:-4, 4:-4]).abs().max() < 0.03


def test_a_path_too_long_for_the_file_system_is_an_input_error(tmp_path):
    long = tmp_path / ("a" * 300 + ".png")  # os.stat raises OSError (ENAMETOOLONG), not FileNotFoundError
    with pytest.raises(InputError, match="cannot be read"):
        load_image(long)
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    paths, notes = collect_images([str(long), str(tmp_path / "ok.png")])
    assert paths == [tmp_path / "ok.png"] and "cannot be read" in notes[0]
