"""personaseg.masks: boxes, COCO RLE (against pycocotools itself), instances, dense CRF."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from personaseg.errors import MissingExtraError
from personaseg.masks import (bbox, coco_summary, dense_crf, instances, mask_summary, rle_decode, rle_encode,
                              strongest_region)

# pycocotools' own decode (called directly below) warns about numpy 2's copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_bbox_is_inclusive_exclusive():
    m = np.zeros((6, 8), bool)
    m[2, 3] = True
    assert bbox(m) == [3, 2, 4, 3]  # one pixel: width and height 1
    m[4, 6] = True
    x0, y0, x1, y1 = bbox(m)
    assert (x0, y0, x1, y1) == (3, 2, 7, 5)
    assert m[y0:y1, x0:x1].sum() == m.sum()
    assert bbox(np.zeros((3, 3), bool)) is None
    assert bbox(np.ones((3, 5), np.uint8)) == [0, 0, 5, 3]


def _masks():
    rng = np.random.default_rng(0)
    yield np.zeros((7, 5), bool)
    yield np.ones((4, 9), bool)
    yield np.ones((1, 1), bool)
    for h, w in [(13, 17), (64, 3), (1, 50)]:
        yield rng.random((h, w)) > 0.6
    blob = np.zeros((40, 30), bool)
    blob[5:20, 8:25] = True
    yield blob


@pytest.mark.parametrize("mask", list(_masks()))
def test_rle_matches_pycocotools_and_roundtrips(mask):
    rle = rle_encode(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    json.dumps(rle)  # JSON-ready
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"].encode() == ref["counts"]
    # pycocotools decodes our record (bytes counts) to the same mask, and so do we
    theirs = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(theirs.astype(bool), mask)
    assert np.array_equal(rle_decode(rle), mask)
    assert int(coco_mask.area(ref)) == int(mask.sum())


def test_rle_decode_accepts_bytes_and_uncompressed():
    m = np.zeros((3, 4), bool)
    m[1, 1:3] = True
    rle = rle_encode(m)
    assert np.array_equal(rle_decode({"size": rle["size"], "counts": rle["counts"].encode()}), m)
    # uncompressed COCO RLE: column-major run lengths starting with zeros
    flat = m.flatten(order="F")
    runs, cur, n = [], False, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    assert np.array_equal(rle_decode({"size": [3, 4], "counts": runs}), m)


def test_instances_eight_connected_largest_first():
    m = np.zeros((10, 12), bool)
    m[0:2, 0:2] = True  # 4 px
    m[2, 2] = True  # touches the square diagonally: same region with 8-connectivity -> 5 px
    m[5:9, 5:11] = True  # 24 px
    m[0, 11] = True  # 1 px
    got = instances(m)
    assert got == [
        {"bbox": [5, 5, 11, 9], "area": 24},
        {"bbox": [0, 0, 3, 3], "area": 5},
        {"bbox": [11, 0, 12, 1], "area": 1},
    ]
    assert [r["area"] for r in instances(m, min_area=5)] == [24, 5]
    assert instances(np.zeros((3, 3), bool)) == []


def test_instances_ties_keep_raster_order():
    m = np.zeros((5, 5), bool)
    m[4, 4] = m[0, 0] = m[2, 2] = True
    assert [r["bbox"][:2] for r in instances(m)] == [[0, 0], [2, 2], [4, 4]]


def test_strongest_region_keeps_the_region_of_the_peak():
    mask = np.zeros((6, 8), bool)
    mask[0:2, 0:3] = True  # large region, low scores
    mask[4:6, 6:8] = True  # small region holding the peak
    scores = np.where(mask, 0.6, 0.0)
    scores[5, 7] = 0.9
    scores[3, 4] = 1.0  # the global peak lies outside the mask: ignored
    out = strongest_region(mask, scores)
    assert out.sum() == 4 and out[4:6, 6:8].all()
    assert strongest_region(np.zeros((3, 3), bool), scores[:3, :3]).sum() == 0
    assert np.array_equal(strongest_region(mask[:2], scores[:2]), mask[:2])  # one region: unchanged


def test_mask_summary():
    m = np.zeros((4, 5), bool)
    m[1:3, 1:3] = True
    s = mask_summary(m)
    assert s["area_fraction"] == pytest.approx(4 / 20)
    assert s["bbox"] == [1, 1, 3, 3] and len(s["instances"]) == 1
    assert np.array_equal(rle_decode(s["rle"]), m)
    json.dumps(s)


def test_dense_crf_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # makes `import pydensecrf...` fail
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.utils", None)
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(MissingExtraError) as err:
        dense_crf(img, np.full((2, 4, 4), 0.5, np.float32))
    msg = str(err.value)
    assert "--crf" in msg and "personaseg[crf]" in msg and "\n" not in msg


def test_dense_crf_cleans_noisy_labels():
    pytest.importorskip("pydensecrf.densecrf")
    rng = np.random.default_rng(0)
    h, w = 32, 40
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2 :] = 1
    img = np.where(truth[..., None] == 1, 230, 20).astype(np.uint8).repeat(3, axis=2)  # (H, W, 3)
    noisy = np.where(rng.random((h, w)) < 0.25, 1 - truth, truth)  # 25% of pixels flipped
    p1 = np.where(noisy == 1, 0.65, 0.35).astype(np.float32)
    probs = np.stack([1 - p1, p1])  # (2, H, W)
    labels = dense_crf(img, probs)
    assert labels.shape == (h, w)
    before = (probs.argmax(0) == truth).mean()
    after = (labels == truth).mean()
    assert before < 0.8 and after > 0.97


def test_dense_crf_checks_shapes():
    pytest.importorskip("pydensecrf.densecrf")
    with pytest.raises(ValueError):
        dense_crf(np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError):
        dense_crf(np.zeros((4, 5, 3), np.uint8), np.zeros((2, 4, 4)))


class _StrictDenseCRF2D:
    """Stands in for pydensecrf's DenseCRF2D where it is not installed, with its buffer rules: the
    Cython signatures (``unsigned char[:, :, ::1]``, ``float[:, ::1]``) refuse a read-only or
    strided buffer with "buffer source array is read-only" / "ndarray is not C-contiguous"."""

    def __init__(self, w, h, c):
        self.shape = (c, h * w)

    @staticmethod
    def _check(a, dtype):
        if not a.flags.writeable:
            raise ValueError("buffer source array is read-only")
        if not a.flags.c_contiguous or a.dtype != dtype:
            raise ValueError("ndarray is not C-contiguous")

    def setUnaryEnergy(self, u):
        self._check(u, np.float32)
        self.unary = u

    def addPairwiseGaussian(self, sxy, compat):
        pass

    def addPairwiseBilateral(self, sxy, srgb, rgbim, compat):
        self._check(rgbim, np.uint8)

    def inference(self, iterations):
        return np.exp(-self.unary)


def test_dense_crf_takes_a_read_only_image(monkeypatch):
    """`--crf` crashed on every command: the image came as ``np.asarray(PIL image)``, read-only."""
    import types

    from PIL import Image

    try:
        import pydensecrf.densecrf  # noqa: F401  the real library when the crf extra is installed
    except ImportError:
        utils = types.SimpleNamespace(unary_from_softmax=lambda p: -np.log(p).reshape(p.shape[0], -1).astype(np.float32))
        fake = types.SimpleNamespace(DenseCRF2D=_StrictDenseCRF2D)
        monkeypatch.setitem(sys.modules, "pydensecrf", types.SimpleNamespace(densecrf=fake, utils=utils))
        monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", fake)
        monkeypatch.setitem(sys.modules, "pydensecrf.utils", utils)
    img = np.asarray(Image.new("RGB", (6, 4), (200, 10, 10)))  # what the segmenter passes
    assert not img.flags.writeable
    probs = np.zeros((2, 4, 6), np.float32)
    probs[1] = 0.9
    probs[0] = 0.1
    assert (dense_crf(img, probs) == 1).all()
    strided = np.asarray(Image.new("RGB", (12, 4), (200, 10, 10)))[:, ::2]  # a view, not C-ordered
    assert (dense_crf(strided, probs) == 1).all()


def test_coco_summary_is_what_coco_tools_read():
    """Records gave bbox as x0,y0,x1,y1 (COCO reads x,y,w,h) and regions without RLE."""
    m = np.zeros((10, 12), bool)
    m[1:4, 2:7] = True  # 3 x 5 at x=2, y=1
    m[6:10, 9:11] = True  # 4 x 2 at x=9, y=6
    s = coco_summary(m)
    assert s["bbox"] == [2, 1, 9, 9] and s["area"] == 15 + 8
    assert coco_mask.toBbox(s["rle"] | {"counts": s["rle"]["counts"].encode()}).tolist() == s["bbox"]
    assert [r["bbox"] for r in s["instances"]] == [[2, 1, 5, 3], [9, 6, 2, 4]]
    for r in s["instances"]:
        region = rle_decode(r["rle"])
        assert region.sum() == r["area"] and (region <= m).all()
        assert coco_mask.area(r["rle"] | {"counts": r["rle"]["counts"].encode()}) == r["area"]
    assert np.array_equal(sum(rle_decode(r["rle"]).astype(int) for r in s["instances"]), m.astype(int))
    json.dumps(s)
    empty = coco_summary(np.zeros((3, 3), bool))
    assert empty["bbox"] is None and empty["instances"] == [] and empty["area"] == 0
