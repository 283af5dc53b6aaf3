"""DAVIS's video-object-segmentation measures on numpy masks: J (region), F (boundary), J&F.

As the DAVIS 2017 evaluation (``davis2017-evaluation``, ``metrics.py``) defines them:

- **J** is the IoU of the frame's prediction and ground truth; **1.0 when both are empty** (an
  object out of view, correctly reported absent).
- **F** is the F-measure of boundary precision and recall. A mask's boundary is every pixel that
  differs from its right, lower or lower-right neighbour (``seg2bmap``; the last row and column
  compare along the edge only). A boundary pixel of one mask is matched when a boundary pixel of the
  other lies within ``ceil(0.008 * image diagonal)`` px (a disk of that radius, i.e. Euclidean
  distance <= radius). Precision = matched predicted boundary / predicted boundary, recall likewise
  for the ground truth; no predicted boundary with a ground-truth one gives P = 1, R = 0, the reverse
  P = 0, R = 1, neither P = R = 1 (so F = 1 for an object correctly reported absent).
- A sequence's J (F) is the mean over its scored frames; **J&F** = (J + F) / 2. A subset's figure is
  the mean over its (sequence, object) targets.

Cross-checked in the tests against an implementation written independently (distance transform).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

BOUND_TH = 0.008  # DAVIS's boundary tolerance: a fraction of the image diagonal (>= 1: pixels)


def j_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity (IoU); 1.0 when both masks are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """DAVIS's one-pixel boundary of a mask (see the module docstring), bool (H, W)."""
    seg = np.asarray(mask, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]  # right neighbour
    s[:-1, :] = seg[1:, :]  # lower neighbour
    se[:-1, :-1] = seg[1:, 1:]  # lower-right neighbour
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """skimage's ``disk``: the points with x^2 + y^2 <= radius^2."""
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """The matching tolerance in pixels for an image of ``shape`` (H, W)."""
    return int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape)))


def f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """DAVIS's boundary F-measure of one frame."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    fg, gb = seg2bmap(pred), seg2bmap(gt)
    disk = _disk(boundary_radius(pred.shape, bound_th))
    fg_dil = ndimage.binary_dilation(fg, disk)
    gt_dil = ndimage.binary_dilation(gb, disk)
    n_fg, n_gt = np.count_nonzero(fg), np.count_nonzero(gb)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(fg & gt_dil) / n_fg
        recall = np.count_nonzero(gb & fg_dil) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def frame_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(J, F) of one frame."""
    return j_measure(pred, gt), f_measure(pred, gt)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A report row from per-target records (``J``, ``F``, ``absent_frames``, ``absent_reported``):
    J, F and J&F as means over targets, and the share of out-of-view frames reported absent."""
    records = [r for r in records if "error" not in r]
    j, f = _mean([r["J"] for r in records]), _mean([r["F"] for r in records])
    absent = sum(r.get("absent_frames", 0) for r in records)
    return {"n": len(records), "J": j, "F": f, "J&F": None if j is None else (j + f) / 2,
            "absent_frames": absent,
            "absent_reported": sum(r.get("absent_reported", 0) for r in records) / absent if absent else None}


__all__ = ["BOUND_TH", "boundary_radius", "f_measure", "frame_scores", "j_measure", "seg2bmap", "summarize"]
