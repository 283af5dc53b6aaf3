"""learn's stopping rule (``LearnConfig.stop_when_stable``): stop once the token's find map on its
own photos stops moving.

Every ``stop_check_every`` steps the token's map on each photo is read as ``find`` reads it (the
trainer's find-style forward: find's blocks, timestep and prompt), on the same input each time (the
photo unflipped, its latent mean, noise seeded by its index), min-max normalised; learn stops once the
mean absolute change since the last read is under the tolerance. The first read only takes the
reference. On the toy model the maps settle within 25-50 steps (benchmarks/RESULTS.md, "A stopping rule").
"""

from __future__ import annotations

import torch

from .. import t2m
from .data import sample_generator


class StopWhenStable:
    """Reads a trainer's token maps on its photos and says when they have settled."""

    def __init__(self, trainer, tolerance: float):
        self.trainer, self.tolerance = trainer, tolerance
        self.last: torch.Tensor | None = None  # the previous read of the photos' maps
        self.changes: list[float] = []  # the mean change at each read after the first

    @torch.no_grad()
    def photo_maps(self) -> torch.Tensor:
        """``(n, h, w)`` the token's min-max normalised find map on each photo, the same input each call."""
        tr = self.trainer
        lat, noise = [], []
        for i in range(len(tr.photos)):
            g = sample_generator(tr.cfg.seed, i, stream=5)
            lat.append(tr.mean[i, 0])
            noise.append(torch.randn(tr.mean.shape[2:], generator=g))
        return t2m.minmax(tr.token_maps(tr.find_batch(lat, noise)).float())

    def settled(self) -> bool:
        """Whether the maps moved less than the tolerance since the last call (the first only reads)."""
        maps, last = self.photo_maps(), self.last
        self.last = maps
        if last is None:
            return False
        change = (maps - last).abs().mean()[None]
        acc = self.trainer.acc
        if acc.num_processes > 1:  # one decision for all processes (float noise could split them)
            change = acc.reduce(change, reduction="mean")
        self.changes.append(round(float(change), 5))
        return self.changes[-1] < self.tolerance
