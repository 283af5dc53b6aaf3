"""What ``find``, ``segment`` and ``explain`` return: small dataclasses of arrays at the image's size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FindResult:
    """One phrase found in one image (arrays at the image's size and displayed orientation)."""

    phrase: str  # as asked ("mug", "<mymug>")
    prompt: str  # the prompt the UNet saw
    mask: np.ndarray  # (H, W) bool
    scores: np.ndarray  # (H, W) float32, the refined map S' in [0, 1]
    presence: float  # peak of the un-normalised cross-attention map (see ``Segmenter.find``)
    found: bool  # False below config.min_presence / min_relative_presence (then the mask is empty)
    relative_presence: float | None = None  # a concept's presence / its presence on its own photos (as read: joint or own)
    joint_presence: float | None = None  # a concept drawn with its class word: peak of sqrt(token x class word) maps
    timings: dict[str, float] = field(default_factory=dict)  # seconds


@dataclass
class SegmentResult:
    """Several labels at once (spec step 7): 0 = background, i+1 = ``labels[i]``."""

    labels: list[str]
    prompt: str
    label_map: np.ndarray  # (H, W) uint8
    scores: np.ndarray  # (P+1, H, W) float32, background first
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ExplainResult:
    """Per-token heat maps of a prompt on the image (cross-attention, not refined)."""

    prompt: str
    tokens: list[str]
    maps: np.ndarray  # (T, H, W) float32 in [0, 1]
