"""J, F and J&F: DAVIS's definitions, F cross-checked against an independent implementation."""

import math

import numpy as np
import pytest
from scipy import ndimage

from personaseg.bench.jf import boundary_radius, f_measure, j_measure, seg2bmap, summarize


def _boundary_by_loops(mask: np.ndarray) -> np.ndarray:
    """DAVIS's boundary, pixel by pixel: a pixel differs from its right, lower or lower-right
    neighbour; on the last row only the right one counts, on the last column only the lower one."""
    h, w = mask.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            v = mask[y, x]
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = v != mask[y, x + 1]
            elif x == w - 1:
                out[y, x] = v != mask[y + 1, x]
            else:
                out[y, x] = v != mask[y, x + 1] or v != mask[y + 1, x] or v != mask[y + 1, x + 1]
    return out


def _f_by_distance(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Boundary F from Euclidean distance transforms instead of dilation by a disk."""
    radius = math.ceil(bound_th * math.hypot(*pred.shape))
    bp, bg = _boundary_by_loops(pred), _boundary_by_loops(gt)
    if not bp.any() or not bg.any():
        return 1.0 if bp.any() == bg.any() else 0.0
    to_gt = ndimage.distance_transform_edt(~bg)  # distance of every pixel to the nearest gt boundary pixel
    to_pred = ndimage.distance_transform_edt(~bp)
    precision = float(np.mean(to_gt[bp] <= radius))
    recall = float(np.mean(to_pred[bg] <= radius))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _disc(h, w, cy, cx, r):
    y, x = np.mgrid[:h, :w]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _hand_made():
    """Pairs of (prediction, ground truth) drawn by hand: shifts, shapes, thin parts, the border."""
    h, w = 120, 160  # diagonal 200: tolerance ceil(1.6) = 2 px
    sq = np.zeros((h, w), bool)
    sq[30:80, 40:100] = True
    cases = {"same": (sq, sq)}
    for dy, dx in [(0, 1), (0, 2), (0, 3), (2, 2), (5, 0), (0, 12)]:
        cases[f"shift{dy},{dx}"] = (np.roll(sq, (dy, dx), axis=(0, 1)), sq)
    cases["disc-vs-square"] = (_disc(h, w, 55, 70, 28), sq)
    cases["ellipse-vs-disc"] = (_disc(h, w, 55, 70, 25) | _disc(h, w, 55, 76, 25), _disc(h, w, 57, 72, 26))
    thin = np.zeros((h, w), bool)
    thin[60, 10:150] = True
    cases["thin-line"] = (thin, np.roll(thin, 2, axis=0))
    edge = np.zeros((h, w), bool)
    edge[90:, 120:] = True  # touching the bottom-right border
    cases["border"] = (edge, np.roll(edge, -3, axis=1))
    two = sq.copy()
    two[5:15, 5:15] = True
    cases["extra-blob"] = (two, sq)
    cases["empty-pred"] = (np.zeros_like(sq), sq)
    cases["empty-gt"] = (sq, np.zeros_like(sq))
    cases["both-empty"] = (np.zeros_like(sq), np.zeros_like(sq))
    return cases


@pytest.mark.parametrize("name", list(_hand_made()))
def test_f_matches_an_independent_implementation(name):
    pred, gt = _hand_made()[name]
    assert f_measure(pred, gt) == pytest.approx(_f_by_distance(pred, gt), abs=1e-12)


def test_boundary_matches_the_pixel_by_pixel_definition():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((17, 23)) > 0.6
        assert np.array_equal(seg2bmap(m), _boundary_by_loops(m))


def test_f_tolerance_is_davis_0_008_of_the_diagonal():
    assert boundary_radius((480, 854)) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    pairs = _hand_made()
    assert f_measure(*pairs["same"]) == 1.0
    assert f_measure(*pairs["shift0,2"]) == 1.0  # within 2 px: every boundary pixel matched
    assert f_measure(*pairs["shift0,3"]) < 1.0  # 3 px: the two vertical sides miss
    assert f_measure(*pairs["shift0,12"]) < f_measure(*pairs["shift0,3"])


def test_j_and_empty_conventions():
    sq = _hand_made()["same"][0]
    assert j_measure(sq, sq) == 1.0
    assert j_measure(np.zeros_like(sq), np.zeros_like(sq)) == 1.0  # absent, reported absent
    assert j_measure(sq, np.zeros_like(sq)) == 0.0
    assert f_measure(np.zeros_like(sq), np.zeros_like(sq)) == 1.0
    assert f_measure(sq, np.zeros_like(sq)) == 0.0 and f_measure(np.zeros_like(sq), sq) == 0.0
    half = sq.copy()
    half[:, 70:] = False
    assert j_measure(half, sq) == pytest.approx(0.5)


def test_summarize_means_over_targets():
    rows = [{"J": 0.8, "F": 0.6, "absent_frames": 4, "absent_reported": 3},
            {"J": 0.4, "F": 0.2, "absent_frames": 0, "absent_reported": 0},
            {"error": "missing annotations"}]
    s = summarize(rows)
    assert s["n"] == 2 and s["J"] == pytest.approx(0.6) and s["F"] == pytest.approx(0.4)
    assert s["J&F"] == pytest.approx(0.5) and s["absent_reported"] == 0.75
