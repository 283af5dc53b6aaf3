"""Segmentation metrics, on numpy masks. Cross-checked against torchmetrics in the tests.

Conventions (stated once, used everywhere):

- A sample's IoU is ``|P & G| / |P | G|``; when both the prediction and the ground truth are
  empty the union is 0 and the IoU is **1.0** (nothing to find, nothing found). Samples whose
  ground truth is empty ("absent" samples) are not averaged into the IoU figures of a report;
  they are scored by the false-positive rate instead (:func:`summarize`).
- mIoU is the mean of per-sample IoU (the referring-segmentation convention and the T2M paper's);
  cIoU (a.k.a. oIoU) is ``sum(I) / sum(U)`` over samples; the PerSeg figure (``objIoU``) pools
  ``I`` and ``U`` over each object's samples and averages over objects (PerSAM's evaluation).
- ``P@k`` is the fraction of samples with IoU >= k.
- Boundary IoU follows Cheng et al. 2021 ("Boundary IoU", reference code ``boundary_iou``):
  the boundary band is the mask minus its erosion by ``d = round(0.02 * image diagonal)`` steps
  of a 3x3 square (at least 1), the image border counting as background.
- Pointing: the score map's maximum (first in row-major order on ties) lies inside the mask.
- VOC: a confusion matrix over 21 classes (255 ignored), per-class IoU, mean over the classes
  that occur in the ground truth or the predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)  # precision@k levels
VOC_NUM_CLASSES = 21  # background + 20 object classes (their names: personaseg.prompts.VOC_CLASSES)
IGNORE = 255  # VOC's "void" label


def inter_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Intersection and union pixel counts of two boolean masks of the same shape."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Per-sample IoU; 1.0 when both masks are empty (see the module docstring)."""
    i, u = inter_union(pred, gt)
    return 1.0 if u == 0 else i / u


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The inner boundary band of a mask (Cheng et al. 2021): mask minus its erosion."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h * h + w * w))))
    padded = np.pad(mask, 1)  # the image border erodes like background, as the reference
    eroded = ndimage.binary_erosion(padded, np.ones((3, 3), bool), iterations=d)[1:-1, 1:-1]
    return mask & ~eroded


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two masks; 1.0 when both boundaries are empty."""
    return iou(mask_to_boundary(pred, dilation_ratio), mask_to_boundary(gt, dilation_ratio))


def pointing(scores: np.ndarray | None, gt: np.ndarray) -> bool | None:
    """Whether the score map's maximum lies inside ``gt``; None without scores or ground truth."""
    if scores is None or not np.any(gt):
        return None
    scores = np.asarray(scores)
    if scores.shape != np.shape(gt):
        raise ValueError(f"score map {scores.shape} and mask {np.shape(gt)} differ in size")
    return bool(np.asarray(gt, bool).flat[int(np.argmax(scores))])


def sample_metrics(pred: np.ndarray, gt: np.ndarray, scores: np.ndarray | None = None) -> dict[str, Any]:
    """Everything a report needs from one (prediction, ground truth) pair, JSON-ready."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    i, u = inter_union(pred, gt)
    return {
        "iou": 1.0 if u == 0 else i / u,
        "inter": i,
        "union": u,
        "bIoU": boundary_iou(pred, gt),
        "pointing": pointing(scores, gt),
        "gt_area": int(np.count_nonzero(gt)),
        "pred_area": int(np.count_nonzero(pred)),
        "absent": not gt.any(),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate per-sample records (from :func:`sample_metrics`) into one table row.

    IoU-type figures use the samples whose concept is present; ``fp_rate`` is the fraction of
    absent samples where something was predicted. Figures with no samples are None.
    """
    records = list(records)
    present = [r for r in records if not r["absent"]]
    absent = [r for r in records if r["absent"]]
    ious = [r["iou"] for r in present]
    inter = sum(r["inter"] for r in present)
    union = sum(r["union"] for r in present)
    row: dict[str, Any] = {
        "n": len(present),
        "mIoU": _mean(ious),
        "cIoU": inter / union if union else None,
        "objIoU": pooled_object_iou(present),
    }
    for k in THRESHOLDS:
        row[f"P@{k}"] = _mean([float(v >= k) for v in ious])
    row["bIoU"] = _mean([r["bIoU"] for r in present])
    points = [r["pointing"] for r in present if r.get("pointing") is not None]
    row["pointing"] = _mean([float(p) for p in points])
    row["n_absent"] = len(absent)
    row["fp_rate"] = _mean([float(r["pred_area"] > 0 or bool(r.get("found"))) for r in absent])
    return row


def pooled_object_iou(records: Iterable[Mapping[str, Any]]) -> float | None:
    """PerSeg's figure: per concept sum(I)/sum(U) over its samples, then the mean over concepts."""
    per: dict[str, list[int]] = {}
    for r in records:
        acc = per.setdefault(r["concept"], [0, 0])
        acc[0] += r["inter"]
        acc[1] += r["union"]
    values = [1.0 if u == 0 else i / u for i, u in per.values()]
    return _mean(values)


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int = VOC_NUM_CLASSES) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction; ``IGNORE`` pixels skipped."""
    pred, gt = np.asarray(pred).ravel().astype(np.int64), np.asarray(gt).ravel().astype(np.int64)
    keep = gt != IGNORE
    pred, gt = pred[keep], gt[keep]
    if pred.size and (pred.max() >= num_classes or gt.max() >= num_classes or min(pred.min(), gt.min()) < 0):
        raise ValueError(f"labels outside 0..{num_classes - 1} (and {IGNORE})")
    return np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_iou(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; NaN for classes in neither ground truth nor prediction."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp  # (C,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou_from_confusion(conf: np.ndarray) -> float:
    """Mean of the per-class IoU over the classes that occur (NaN-mean)."""
    values = class_iou(conf)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


__all__ = [
    "IGNORE", "THRESHOLDS", "VOC_NUM_CLASSES", "boundary_iou", "class_iou", "confusion", "inter_union", "iou", "mask_to_boundary",
    "miou_from_confusion", "pointing", "pooled_object_iou", "sample_metrics", "summarize",
]
