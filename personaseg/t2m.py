"""The T2M computation on plain tensors (spec steps 5-7). No diffusers objects here.

Shapes: D noise draws, N cells of a layer's grid (h*w), T text tokens, P phrases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .capture import QueryKey


def finest_grid(grids: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid with the most cells: where presence (a map's peak) is read."""
    return tuple(max(grids, key=lambda g: g[0] * g[1]))


def cross_map(
    maps: Sequence[torch.Tensor],
    grids: Sequence[tuple[int, int]],
    out_grid: tuple[int, int],
    tokens: Sequence[int],
) -> torch.Tensor:
    """Spec step 5: one phrase's cross-attention map on ``out_grid``.

    ``maps[l]`` is layer l's head-averaged attention ``(D, N_l, T)`` on grid ``grids[l]``; the
    phrase's token columns are averaged, each layer is upsampled bilinearly to ``out_grid`` and
    the layers are averaged with equal weight. Returns ``(D, h, w)`` (not normalised).
    """
    idx = torch.as_tensor(list(tokens), dtype=torch.long)
    out = []
    for m, (h, w) in zip(maps, grids):
        col = m.float()[..., idx.to(m.device)].mean(dim=-1)  # (D, N_l, T) -> (D, N_l)
        col = col.reshape(-1, 1, h, w)  # (D, N_l) -> (D, 1, h_l, w_l)
        if (h, w) != tuple(out_grid):
            col = F.interpolate(col, size=out_grid, mode="bilinear", align_corners=False)
        out.append(col[:, 0])
    return torch.stack(out).mean(dim=0)  # (L, D, h, w) -> (D, h, w)


def presence(maps: torch.Tensor) -> torch.Tensor:
    """A phrase's presence: the peak of its un-normalised cross-attention map, ``(..., h, w) -> (...)``.

    Read on the finest cross grid (upsampling lowers peaks). ``find`` reads it on the map averaged
    over draws, learn's contrast on each sample's map: one definition for both.
    """
    return maps.flatten(-2).max(dim=-1).values


def joint_presence(token_maps: torch.Tensor, class_maps: torch.Tensor) -> torch.Tensor:
    """A concept's presence read with its class word: the peak of the geometric mean of the two
    un-normalised maps, ``(..., h, w)`` each -> ``(...)``. High only where one object draws both the
    token (which one) and the class word (what it is): a look-alike that has the concept's colour on
    one object and its shape on another scores low (issue 23's misfires, benchmarks/RESULTS.md)."""
    return presence((token_maps.clamp_min(0) * class_maps.clamp_min(0)).sqrt())


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of ``(..., h, w)`` to [0, 1] (a flat map becomes 0)."""
    flat = x.flatten(-2)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(x.shape)


def box_mask(s: torch.Tensor, tau_box: float, quantize: bool = True) -> torch.Tensor:
    """Spec step 6: 1 inside the bounding box of every region where ``s > tau_box * max(s)``.

    ``s``: ``(..., h, w)`` in [0, 1]. With ``quantize`` the map is first quantised to uint8 as
    the reference code does. Regions are 8-connected. Returns a float mask of the same shape.
    """
    arr = s.detach().float().cpu().numpy()
    lead = arr.shape[:-2]
    arr = arr.reshape(-1, *arr.shape[-2:])
    out = np.zeros_like(arr, dtype=np.float32)
    for i, m in enumerate(arr):
        if quantize:
            m = np.floor(m * 255).astype(np.uint8).astype(np.float32)
        regions, n = ndimage.label(m > tau_box * m.max(), structure=np.ones((3, 3)))
        for sl in ndimage.find_objects(regions):
            out[i][sl] = 1.0
    return torch.from_numpy(out.reshape(*lead, *arr.shape[-2:])).to(s.device)


def attend(qk: QueryKey, v: torch.Tensor) -> torch.Tensor:
    """A @ v for A = mean over heads of softmax(q k^T * scale), without forming A.

    ``v``: ``(D, N, P)``. Fused attention per head with ``v`` as values, then the mean over
    heads (A is linear in its heads). Fused kernels want values as wide as the queries (else
    PyTorch falls back to the N x N math path), so ``v`` is zero-padded to the head width and
    processed in slices of that width. Returns ``(D, N, P)`` in float32.
    """
    b, heads, n, width = qk.q.shape
    p = v.shape[-1]
    out = []
    for i in range(0, p, width):
        part = v[..., i:i + width].to(qk.q.dtype)  # (D, N, <=width)
        cols = part.shape[-1]
        part = F.pad(part, (0, width - cols))  # (D, N, width)
        values = part.unsqueeze(1).expand(-1, heads, -1, -1)  # (D, N, width) -> (D, heads, N, width)
        res = F.scaled_dot_product_attention(qk.q, qk.k, values, scale=qk.scale)  # (D, heads, N, width)
        out.append(res[..., :cols].float().mean(dim=1))  # -> (D, N, cols)
    return torch.cat(out, dim=-1)


def refine(qk: QueryKey, s: torch.Tensor, tau_box: float, quantize: bool = True) -> torch.Tensor:
    """Spec step 6: S' = minmax((A A) @ (B * S)) for each draw and phrase, in O(N) memory.

    ``s``: ``(D, P, h, w)`` cross maps on the self-attention grid (h*w = N). Returns
    ``(D, P, h, w)``.
    """
    d, p, h, w = s.shape
    s = minmax(s)
    v = box_mask(s, tau_box, quantize) * s  # B * S, (D, P, h, w)
    v = v.flatten(2).transpose(1, 2)  # (D, P, h, w) -> (D, N, P)
    v = attend(qk, attend(qk, v))  # A @ (A @ v) = (A A) @ v
    return minmax(v.transpose(1, 2).reshape(d, p, h, w))


def refine_naive(a: torch.Tensor, s: torch.Tensor, tau_box: float, quantize: bool = True) -> torch.Tensor:
    """The reference formula with the explicit ``(D, N, N)`` affinity ``a``: for tests only."""
    d, p, h, w = s.shape
    s = minmax(s)
    v = (box_mask(s, tau_box, quantize) * s).flatten(2).transpose(1, 2)  # (D, N, P)
    v = torch.bmm(torch.bmm(a, a), v)  # (A*A) @ v
    return minmax(v.transpose(1, 2).reshape(d, p, h, w))


def label_scores(s: torch.Tensor, tau: float) -> torch.Tensor:
    """Spec step 7: ``(P, ...)`` phrase scores -> ``(P+1, ...)`` with background first.

    background = (2*tau - max over phrases)**2; each pixel's label is the argmax.
    """
    background = (2 * tau - s.max(dim=0, keepdim=True).values) ** 2
    return torch.cat([background, s], dim=0)
