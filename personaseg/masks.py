"""From a boolean mask to what users and tools read: box, COCO RLE, instances; optional dense CRF.

All functions take numpy arrays (never torch or diffusers objects). Masks are ``(H, W)`` arrays,
anything non-zero counts as foreground. Boxes are ``[x0, y0, x1, y1]`` in pixel coordinates with
x0/y0 inclusive and x1/y1 exclusive, so ``x1 - x0`` is the width (``mask[y0:y1, x0:x1]`` is the
box's content). The JSON records of ``find`` use COCO's conventions instead (:func:`coco_summary`:
``bbox`` is ``[x, y, width, height]``, every region carries its RLE).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask
from scipy import ndimage

from .errors import MissingExtraError


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def bbox(mask: np.ndarray) -> list[int] | None:
    """Tight box ``[x0, y0, x1, y1]`` (x0, y0 inclusive; x1, y1 exclusive) of the foreground,
    or None for an empty mask."""
    mask = _as_bool(mask)
    cols = np.flatnonzero(mask.any(axis=0))  # (H, W) -> (W,)
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))  # (H, W) -> (H,)
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE, exactly as ``pycocotools.mask.encode`` writes it, made JSON-ready:
    ``{"size": [h, w], "counts": str}``."""
    mask = _as_bool(mask)
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed ``counts`` as str or bytes, or uncompressed as a list) -> bool (H, W)."""
    h, w = (int(s) for s in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE, as in COCO's iscrowd annotations
        rle = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" deprecation noise
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


def instances(mask: np.ndarray, min_area: int = 1) -> list[dict[str, Any]]:
    """Connected regions (8-connectivity) of at least ``min_area`` px, largest first.

    Each is ``{"bbox": [x0, y0, x1, y1], "area": int}``; ties keep raster order (top, then left).
    """
    mask = _as_bool(mask)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # (n,) pixels per region 1..n
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels)):
        if areas[i] >= min_area:
            ys, xs = sl
            out.append({"bbox": [xs.start, ys.start, xs.stop, ys.stop], "area": int(areas[i])})
    # sort is stable, so equal areas stay in label (raster) order
    return sorted(out, key=lambda r: -r["area"])


def strongest_region(mask: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The connected region (8-connectivity) of ``mask`` that holds its highest ``score``.

    For a phrase that names one thing (a personal concept), the other regions are look-alikes.
    """
    mask = _as_bool(mask)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return mask
    peak = np.argmax(np.where(mask, scores, -np.inf))
    return labels == labels.flat[peak]


def mask_summary(mask: np.ndarray, min_area: int = 1) -> dict[str, Any]:
    """The per-mask fields of a JSON record: area fraction, box, COCO RLE and instances."""
    mask = _as_bool(mask)
    return {
        "area_fraction": float(mask.mean()) if mask.size else 0.0,
        "bbox": bbox(mask),
        "rle": rle_encode(mask),
        "instances": instances(mask, min_area=min_area),
    }


def xywh(box: list[int] | None) -> list[int] | None:
    """``[x0, y0, x1, y1]`` (x1, y1 exclusive) -> COCO's ``[x, y, width, height]``."""
    return None if box is None else [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def coco_summary(mask: np.ndarray, min_area: int = 1) -> dict[str, Any]:
    """The per-mask fields of a JSON record in COCO's conventions, so a COCO tool reads them as they are.

    ``bbox`` is COCO's ``[x, y, width, height]`` (px, x and y of the top-left pixel), ``area`` the
    mask's pixels, ``rle`` its compressed RLE (``pycocotools.mask.decode`` reads it); ``instances``
    are the connected regions (8-connectivity, largest first), each with the same three fields.
    """
    mask = _as_bool(mask)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    regions = []
    region = np.zeros_like(mask)  # one full-size canvas, each region drawn in its box and wiped after
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        region[sl] = labels[sl] == i
        area = int(region[sl].sum())
        if area >= min_area:
            ys, xs = sl
            regions.append({"bbox": [xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start], "area": area,
                            "rle": rle_encode(region)})
        region[sl] = False
    return {
        "area_fraction": float(mask.mean()) if mask.size else 0.0,
        "area": int(mask.sum()),
        "bbox": xywh(bbox(mask)),
        "rle": rle_encode(mask),
        "instances": sorted(regions, key=lambda r: -r["area"]),  # stable: ties keep raster order
    }


def find_record(path: str, phrase: str, r, size: tuple[int, int], mask_path: str, seconds: float) -> dict[str, Any]:
    """The JSON record of one find (``personaseg find --json``, the web app's download): the
    image, phrase, prompt, presence (the joint one too, for a concept read with its class word), the mask in COCO's terms (:func:`coco_summary`) and timings.
    ``r``: a :class:`~personaseg.segmenter.FindResult`; ``size``: the image's (width, height)."""
    return {"path": path, "phrase": phrase, "prompt": r.prompt, "found": r.found,
            "presence": round(r.presence, 6),
            "relative_presence": None if r.relative_presence is None else round(r.relative_presence, 4),
            "joint_presence": None if r.joint_presence is None else round(r.joint_presence, 6),
            "size": list(size),
            **coco_summary(r.mask), "mask_path": mask_path,
            "timings": {**{k: round(v, 4) for k, v in r.timings.items()}, "total_s": round(seconds, 4)}}


def frame_record(video: str, r, mask_path: str) -> dict[str, Any]:
    """The JSON record of one tracked frame (``personaseg track --json``, the web app's download): the
    clip, frame, time, presence and the mask in COCO's terms (:func:`coco_summary`, as :func:`find_record`).
    ``r``: a :class:`~personaseg.track.FrameResult`."""
    return {"video": video, "frame": r.index, "time": round(r.time, 4), "found": r.found,
            "presence": round(r.presence, 6),
            "relative_presence": None if r.relative_presence is None else round(r.relative_presence, 4),
            **coco_summary(r.mask), "mask_path": mask_path}


def dense_crf(
    image_rgb: np.ndarray,
    probs: np.ndarray,
    iterations: int = 10,  # mean-field iterations (paper: 10)
    gauss_sxy: float = 1,  # Gaussian (smoothness) kernel width in px (paper: 1)
    gauss_compat: float = 3,  # Gaussian kernel weight (paper: 3)
    bilat_sxy: float = 67,  # bilateral kernel width in px (paper: 67)
    bilat_srgb: float = 3,  # bilateral kernel colour width (paper: 3)
    bilat_compat: float = 4,  # bilateral kernel weight (paper: 4)
) -> np.ndarray:
    """Dense CRF post-processing (spec step 9): labels (H, W) int64 in 0..C-1.

    ``image_rgb`` is uint8 (H, W, 3); ``probs`` is (C, H, W), one score map per label (background
    first when it is one), non-negative. Each pixel's scores are normalised to sum to 1 and their
    negative log is the unary, as ``pydensecrf.utils.unary_from_softmax`` does.
    Needs the ``crf`` extra (``pydensecrf2``).
    """
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError:
        raise MissingExtraError("--crf (dense CRF)", "crf") from None

    image_rgb = np.asarray(image_rgb)
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"probs must be (C, H, W) with C >= 2, got {probs.shape}")
    c, h, w = probs.shape
    if image_rgb.shape != (h, w, 3) or image_rgb.dtype != np.uint8:
        raise ValueError(f"image_rgb must be uint8 ({h}, {w}, 3), got {image_rgb.dtype} {image_rgb.shape}")

    # pydensecrf's Cython signatures take writable, C-ordered buffers: ``np.asarray(PIL image)`` is
    # read-only (and a view may be strided), so hand it a copy it may write to.
    image_rgb = np.array(image_rgb, dtype=np.uint8, order="C", copy=True)
    p = np.clip(probs, 1e-8, None)
    p = p / p.sum(axis=0, keepdims=True)  # per-pixel distribution over the C labels
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p)))  # (C, H*W) = -log p
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(sxy=bilat_sxy, srgb=bilat_srgb, rgbim=image_rgb, compat=bilat_compat)
    q = np.asarray(crf.inference(iterations))  # (C, H*W)
    return q.reshape(c, h, w).argmax(axis=0)  # (C, H, W) -> (H, W)
