"""Follow a phrase or a learned concept through the frames of a clip (``Segmenter.track``).

    >>> seg = Segmenter.from_pretrained("toy")
    >>> for r in seg.track(open_clip("walk.mp4").frames(), "<mymug>"):
    ...     r.index, r.time, r.found, r.mask.shape

Each frame is found by :meth:`Segmenter.find` itself (so presence, the concept's presence
reference, ``keep``, ``outline`` and the CRF mean what they mean for a photo); what ``track``
adds is how the frames' attention is computed and, in temporal mode, how frames inform each other.

Per-frame mode (``TrackConfig(temporal=False)``, ``track --no-temporal``): every frame as ``find`` would see it as a still
(the same ``FindConfig.draws`` and seed), only batched: ``batch`` frames x their draws go through
the UNet per call, and the text is encoded once. Its masks equal ``set_image`` + ``find`` per frame.

Temporal mode (the default), three simple rules:

1. *Fewer draws, presence read over time.* A frame runs only ``TrackConfig.draws`` noise draws
   (seeded by its index, so neighbours' noise differs) and is found on those. Whether the object is
   there is decided on the *median*, over the frame and the ``window`` frames on each side, of each
   frame's own presence and relative presence: a median keeps the frame where an object enters or
   leaves, and drops a lone weak or stray frame. (An earlier version averaged the neighbours'
   attention maps instead: a moving object's averaged map has a lower peak, so objects were lost
   and re-found late; benchmarks/RESULTS.md.)
2. *Presence hysteresis* (``hysteresis``, 0.85): an object found in the previous frame stays found
   while those medians clear ``hysteresis`` x find's thresholds; a lost object needs the full
   thresholds again. Off (1.0) while find read the token alone: on a toy clip it held an object that
   had left for 3 frames. Since find reads a concept's presence with its class word, at a stricter
   threshold, a shrinking or half-hidden object fell under it for frames on end; 0.85 holds it
   (benchmarks/RESULTS.md).
3. *The region that continues the object.* When find keeps one region of several (a concept), the
   region overlapping the previous frame's mask most is kept instead of the one holding the token's
   peak; with no overlap, find's own pick.

``FrameResult.unet_rows`` counts the UNet forwards (draws x prompts) spent on a frame: the compute
the two modes are compared by.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from . import policy
from .attention import EncodedImage
from .capture import QueryKey
from .errors import ConfigError
from .images import load_image, to_rgb


@dataclass
class TrackConfig:
    """How ``track`` treats time. The find settings themselves are the segmenter's ``FindConfig``."""

    temporal: bool = True  # the temporal rules of the module docstring; False: per-frame find
    draws: int = 2  # temporal: noise draws per frame (per-frame mode uses FindConfig.draws)
    window: int = 2  # temporal: frames on each side whose presence joins the frame's own (median)
    hysteresis: float = 0.85  # temporal: a found object stays found down to this share of find's thresholds (1: off)
    batch: int = 8  # frames per UNet call (lower it to bound memory)

    def __post_init__(self) -> None:
        if self.draws < 1 or self.batch < 1 or self.window < 0:
            raise ConfigError("track needs draws >= 1, batch >= 1 and window >= 0")
        if not 0.0 < self.hysteresis <= 1.0:
            raise ConfigError(f"hysteresis={self.hysteresis} out of range", hint="use a share in (0, 1], 1 = none")


@dataclass
class FrameResult:
    """One frame of a tracked clip (arrays at the frame's size)."""

    index: int  # the frame's position in the clip
    time: float | None  # seconds from the clip's start (None when the frames came without times)
    phrase: str
    mask: np.ndarray  # (H, W) bool, empty when not found
    scores: np.ndarray  # (H, W) float32 in [0, 1]
    presence: float  # as FindResult.presence, on the frame's own draws (temporal mode: found reads the window's median)
    found: bool
    relative_presence: float | None
    unet_rows: int  # UNet forwards (noise draws x prompts) run for this frame
    image: Image.Image = field(repr=False)  # the frame (RGB), for overlays
    timings: dict[str, float] = field(default_factory=dict)  # seconds


@dataclass
class _Pending:
    """A frame encoded and attended, waiting for its neighbours."""

    index: int
    time: float | None
    encoded: EncodedImage  # the frame, its geometry and its d noise draws (d, C, h, w)
    attn: dict  # (prompt, adapter) -> the Attention of this frame's d draws
    seconds: float = 0.0  # encode + its share of the batched UNet calls
    own: Any = None  # find on this frame's own draws (temporal mode; computed once, read by its neighbours)


def _frames(frames: Iterable) -> Iterator[tuple[int, float | None, Image.Image]]:
    """(index, time, RGB image) from Frames, PIL images or paths."""
    for i, f in enumerate(frames):
        if hasattr(f, "image") and hasattr(f, "index"):
            yield f.index, f.time, f.image
        elif isinstance(f, (str, Path)):
            yield i, None, load_image(f)
        else:
            yield i, None, to_rgb(f)


def _passes(seg, image: Image.Image, phrase: str, prompt: str | None) -> list[tuple]:
    """The UNet passes (prompt, adapter) a find of ``phrase`` runs, read off one find of one draw
    (so track follows whatever find needs: the concept's prompt, its class word's, ...)."""
    with seg.with_config(draws=1, draw_batch=1):
        seg.set_image(image)
        seg.find(phrase, prompt)
        keys = seg.passes()
    seg.clear_image()
    return keys


def _attend(seg, batch: list[_Pending], keys: list[tuple], draws: int, rows_per_call: int) -> None:
    """Run every pass for the batch's frames in batched UNet calls; store each frame's share."""
    by_size: dict[tuple, list[_Pending]] = {}
    for p in batch:  # a clip's frames share one size; a list of stills may not
        by_size.setdefault(tuple(p.encoded.noisy.shape), []).append(p)
    for group in by_size.values():
        noisy = torch.cat([p.encoded.noisy for p in group])  # (B*d, C, h, w)
        with seg.with_config(draw_batch=rows_per_call):
            for key in keys:
                att = seg.attend(noisy, *key)  # the segmenter's own pass, over B*d rows
                for k, p in enumerate(group):
                    rows = slice(k * draws, (k + 1) * draws)
                    qk = att.self_qk
                    p.attn[key] = dataclasses.replace(
                        att, cross=[c[rows] for c in att.cross],
                        self_qk=QueryKey(qk.q[rows], qk.k[rows], qk.scale) if qk is not None else None,
                        seconds=att.seconds / len(group))
                    p.seconds += att.seconds / len(group)


def present(cfg, near: list, was_found: bool, hysteresis: float) -> bool:
    """Whether the object is in a frame: find's presence rules (``cfg``'s thresholds, scaled by
    ``hysteresis`` when it ``was_found`` in the previous frame) on the median, over the frame and its
    neighbours (``near``, each with ``presence`` and ``relative_presence``), of each frame's own. A median keeps the
    step where an object enters or leaves (an average over frames would blur it, and a map averaged
    over frames of a moving object has a lower peak) and drops a lone weak or stray frame."""
    rel = [r.relative_presence for r in near if r.relative_presence is not None]
    presence, relative = float(np.median([r.presence for r in near])), float(np.median(rel)) if rel else None
    return policy.clears(presence, relative, cfg) or (was_found and policy.clears(presence, relative, cfg, hysteresis))


def continuing_region(every: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
    """The connected region (8-connectivity) of ``every`` overlapping ``previous`` most; None if none does."""
    labels, n = ndimage.label(every, structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    overlap = np.bincount(labels[previous & every], minlength=n + 1)[1:]  # (n,) pixels shared per region
    if overlap.max() == 0:
        return None
    return labels == int(np.argmax(overlap)) + 1


def _encode(seg, index: int, when: float | None, image: Image.Image, draws: int, temporal: bool) -> _Pending:
    """A frame encoded with its ``draws`` noise draws (temporal: seeded by its index), not yet attended."""
    t0 = time.perf_counter()
    seed = seg.config.seed + index if temporal else seg.config.seed  # neighbours' noise must differ
    with seg.with_config(draws=draws, seed=seed):
        encoded = seg.encode(image)
    return _Pending(index, when, encoded, {}, time.perf_counter() - t0)


def _temporal_mask(seg, r, find_on, prev_mask: np.ndarray | None) -> np.ndarray:
    """The mask of a frame found in temporal mode: find's pick on the frame's own draws (``r``, or
    found again without the presence rules when the frame alone fell under them), or, when find kept
    one region of several, the region continuing the previous frame's mask. (The scores are ``r``'s:
    neither the presence rules nor ``keep`` change them.)"""
    with seg.with_config(min_presence=None, min_relative_presence=None):
        pick = r.mask if r.found else find_on().mask
        if prev_mask is None:
            return pick
        with seg.with_config(keep="all"):
            every = find_on().mask
    if pick.sum() < every.sum():  # find kept one region of several
        cont = continuing_region(every, prev_mask)
        if cont is not None:
            return cont
    return pick


def track(seg, frames: Iterable, phrase: str, prompt: str | None = None,
          config: TrackConfig | None = None) -> Iterator[FrameResult]:
    """Yield a :class:`FrameResult` per frame of ``frames`` (Frames, PIL images or paths), streaming:
    at most ``batch + window`` frames are held at once."""
    cfg = config or TrackConfig()
    temporal = cfg.temporal
    draws = cfg.draws if temporal else seg.config.draws
    window = cfg.window if temporal else 0
    rows_per_call = max(seg.config.draw_batch, cfg.batch * draws)
    stream = _frames(frames)
    keys: list[tuple] | None = None
    held: deque[_Pending] = deque()  # frames whose neighbours may still be needed
    out = 0  # position (in held) of the next frame to finish
    prev_found, prev_mask = False, None

    def find_on(q: _Pending) -> Any:  # find on a frame, with its own passes already run
        seg.use(q.encoded, q.attn)
        return seg.find(phrase, prompt)

    def own(q: _Pending) -> Any:  # find on a frame, once (its neighbours read it too)
        if q.own is None:
            q.own = find_on(q)
        return q.own

    def finish(p: int) -> FrameResult:
        nonlocal prev_found, prev_mask
        me = held[p]
        start = time.perf_counter()
        r = own(me)
        found, mask = r.found, r.mask
        if temporal:
            near = [held[q] for q in range(max(0, p - window), min(len(held), p + window + 1))]
            found = present(seg.config, [own(q) for q in near], prev_found, cfg.hysteresis)
            mask = _temporal_mask(seg, r, lambda: find_on(me), prev_mask) if found else np.zeros_like(r.mask)
            prev_found, prev_mask = found, (mask if found and mask.any() else None)
        seg.use(me.encoded)  # the frame stays current until the next
        return FrameResult(index=me.index, time=me.time, phrase=phrase, mask=mask, scores=r.scores,
                           presence=r.presence, found=bool(found), relative_presence=r.relative_presence,
                           unet_rows=draws * len(keys), image=me.encoded.image,
                           timings={"unet_s": me.seconds, "t2m_s": time.perf_counter() - start})

    done = False
    while not done:
        batch: list[_Pending] = []
        for index, when, image in stream:
            if keys is None:
                keys = _passes(seg, image, phrase, prompt)
            batch.append(_encode(seg, index, when, image, draws, temporal))
            if len(batch) == cfg.batch:
                break
        else:
            done = True
        if batch:
            _attend(seg, batch, keys, draws, rows_per_call)
            held.extend(batch)
        while out < len(held) and (done or out + window < len(held)):
            yield finish(out)
            out += 1
            while out > window:  # nobody needs the oldest frame any more
                held.popleft()
                out -= 1
    seg.clear_image()  # the segmenter holds no frame: set_image before find again


__all__ = ["FrameResult", "TrackConfig", "continuing_region", "present", "track"]
