"""Metrics against torchmetrics and hand-made cases."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.functional.classification import binary_jaccard_index, multiclass_jaccard_index

from personaseg.bench import metrics as M


def _masks(seed, n=8, shape=(23, 31)):
    rng = np.random.default_rng(seed)
    return [(rng.random(shape) < rng.uniform(0.1, 0.6), rng.random(shape) < rng.uniform(0.1, 0.6)) for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_matches_torchmetrics(seed):
    for pred, gt in _masks(seed):
        ref = binary_jaccard_index(torch.from_numpy(pred).long(), torch.from_numpy(gt).long()).item()
        assert M.iou(pred, gt) == pytest.approx(ref, abs=1e-6)


def test_ciou_is_pooled_and_miou_is_mean():
    pairs = _masks(3)
    records = [dict(M.sample_metrics(p, g), concept="c") for p, g in pairs]
    row = M.summarize(records)
    preds = torch.from_numpy(np.stack([p for p, _ in pairs])).long()
    gts = torch.from_numpy(np.stack([g for _, g in pairs])).long()
    pooled = binary_jaccard_index(preds.flatten(), gts.flatten()).item()
    assert row["cIoU"] == pytest.approx(pooled, abs=1e-6)
    assert row["objIoU"] == pytest.approx(pooled, abs=1e-6)  # one concept: pooled = cIoU
    per = [binary_jaccard_index(p, g).item() for p, g in zip(preds, gts)]
    assert row["mIoU"] == pytest.approx(np.mean(per), abs=1e-6)
    assert row["P@0.5"] == pytest.approx(np.mean([v >= 0.5 for v in per]))
    assert row["n"] == len(pairs) and row["n_absent"] == 0 and row["fp_rate"] is None


def test_empty_conventions_and_absent_samples():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert M.iou(empty, empty) == 1.0
    assert M.iou(full, empty) == 0.0
    recs = [dict(M.sample_metrics(full, full), concept="a"),
            dict(M.sample_metrics(empty, empty), concept="a"),  # absent, nothing predicted
            dict(M.sample_metrics(full, empty), concept="a")]  # absent, false positive
    row = M.summarize(recs)
    assert row["n"] == 1 and row["mIoU"] == 1.0  # absent samples are not in the IoU figures
    assert row["n_absent"] == 2 and row["fp_rate"] == 0.5


def test_object_iou_averages_objects():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    recs = [{"concept": "x", "inter": 1, "union": 2}, {"concept": "x", "inter": 3, "union": 6},
            {"concept": "y", "inter": 1, "union": 1}]
    assert M.pooled_object_iou(recs) == pytest.approx((4 / 8 + 1) / 2)


def _boundary_reference(mask, ratio=0.02):
    """Cheng et al.'s mask_to_boundary, with a min filter standing in for cv2.erode."""
    h, w = mask.shape
    d = max(1, int(round(ratio * np.sqrt(h * h + w * w))))
    m = np.pad(mask.astype(np.uint8), 1)
    for _ in range(d):
        m = ndimage.minimum_filter(m, size=3, mode="constant", cval=0)
    return mask.astype(np.uint8) - m[1:-1, 1:-1]


def test_boundary_iou_matches_reference():
    rng = np.random.default_rng(4)
    for _ in range(5):
        g = ndimage.binary_dilation(rng.random((80, 90)) < 0.02, iterations=6)
        p = ndimage.binary_dilation(rng.random((80, 90)) < 0.02, iterations=5)
        bg, bp = _boundary_reference(g), _boundary_reference(p)
        ref = ((bg * bp) > 0).sum() / ((bg + bp) > 0).sum()
        assert M.boundary_iou(p, g) == pytest.approx(ref)
    # a filled 40-px square in a 100x100 image: d = round(0.02 * 141.4) = 3, a 3-px band
    sq = np.zeros((100, 100), bool)
    sq[20:60, 20:60] = True
    band = M.mask_to_boundary(sq)
    assert band.sum() == 40 * 40 - 34 * 34  # d = 3 -> 3-px band
    assert M.boundary_iou(sq, sq) == 1.0


def test_pointing():
    gt = np.zeros((6, 6), bool)
    gt[1:3, 1:3] = True
    s = np.zeros((6, 6), np.float32)
    s[2, 2] = 1
    assert M.pointing(s, gt) is True
    s[5, 5] = 2
    assert M.pointing(s, gt) is False
    assert M.pointing(None, gt) is None and M.pointing(s, np.zeros_like(gt)) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_voc_miou_matches_torchmetrics(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 21, (3, 40, 40))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 21, gt.shape))
    gt[:, :3] = 255  # void rows are ignored
    conf = sum(M.confusion(p, g) for p, g in zip(pred, gt))
    ref_per = multiclass_jaccard_index(torch.from_numpy(pred), torch.from_numpy(gt), num_classes=21,
                                       ignore_index=255, average="none")
    np.testing.assert_allclose(M.class_iou(conf), ref_per.numpy(), atol=1e-6)
    ref = multiclass_jaccard_index(torch.from_numpy(pred), torch.from_numpy(gt), num_classes=21,
                                   ignore_index=255, average="macro")
    assert M.miou_from_confusion(conf) == pytest.approx(ref.item(), abs=1e-6)


def test_voc_miou_skips_classes_never_seen():
    gt = np.array([[0, 0, 15, 15]])
    conf = M.confusion(gt, gt)
    assert M.miou_from_confusion(conf) == 1.0
    with pytest.raises(ValueError):
        M.confusion(np.array([[30]]), np.array([[0]]))
