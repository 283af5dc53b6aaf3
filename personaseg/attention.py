"""An image's noisy latents, one prompt's UNet passes on them, and the phrase scores read from them.

``noisy_latents`` is find's image encoding (a VAE sample, D noise draws; an :class:`EncodedImage`
holds them with the image); ``run`` is the only place find's UNet forwards happen (the finder caches
what it returns per prompt and adapter; ``track`` batches frames through it with ``Finder.attend``);
``phrase_scores`` turns the captured attention into refined score maps and the raw maps presence is read on, with
:mod:`personaseg.t2m`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from . import t2m
from .capture import AttentionCapture, QueryKey
from .images import Geometry


@dataclass
class EncodedImage:
    """An image as find reads it: the RGB image, its padding geometry, its noisy latents."""

    image: Image.Image  # RGB, at its own size
    geom: Geometry  # how the padded model input maps back to the image
    noisy: torch.Tensor  # (D, C, h, w): D noise draws at the config's timestep
    seconds: float = 0.0  # spent encoding


@dataclass
class Attention:
    """What one prompt's UNet passes left: cross maps per module, self q/k, grids."""

    cross: list[torch.Tensor]  # each (D, N_l, T)
    grids: list[tuple[int, int]]  # (h_l, w_l) per cross module
    self_qk: QueryKey | None  # (D, heads, N, d)
    self_grid: tuple[int, int] | None
    seconds: float


def noisy_latents(vae, scheduler, x: torch.Tensor, seed: int, draws: int, timestep: int) -> torch.Tensor:
    """The image ``x`` ``(1, 3, H, W)`` in [-1, 1] encoded by the VAE (a posterior sample) and
    noised to ``timestep`` by ``draws`` independent draws: ``(D, C, h, w)``, all seeded by ``seed``."""
    gen = torch.Generator("cpu").manual_seed(seed)
    x = x.to(vae.device, vae.dtype)
    latent = vae.encode(x).latent_dist.sample(generator=gen) * vae.config.scaling_factor
    # (1, C, h, w) -> D draws; noise drawn on the CPU so a seed means the same on every device
    noise = torch.randn((draws, *latent.shape[1:]), generator=gen).to(latent.device, latent.dtype)
    t = torch.full((draws,), timestep, dtype=torch.long, device=latent.device)
    return scheduler.add_noise(latent.expand(draws, -1, -1, -1), noise, t)


@torch.inference_mode()
def run(unet, cross: list[tuple[str, int]], self_: tuple[str, int] | None, noisy: torch.Tensor,
        text: torch.Tensor, timestep: int, draws: int, draw_batch: int) -> tuple[Attention, int]:
    """The ``draws`` conditional UNet forwards of ``noisy`` ``(D, C, h, w)`` with the encoded prompt
    ``text`` ``(1, T, C)``, ``draw_batch`` rows per call, each cut after the last module read.
    ``cross``: (module, grid factor) pairs; ``self_``: the self-attention module read for the
    refinement, or None. Returns the attention (``seconds`` left 0 for the caller) and the UNet
    forwards run."""
    cap = AttentionCapture(unet, cross=[m for m, _ in cross], self_=[self_[0]] if self_ else [])
    with cap:
        for i in range(0, draws, draw_batch):
            lat = noisy[i:i + draw_batch]
            t = torch.full((len(lat),), timestep, dtype=torch.long, device=lat.device)
            cap.run(lambda: unet(lat, t, encoder_hidden_states=text.expand(len(lat), -1, -1)))
    h, w = noisy.shape[-2:]
    grid = lambda f: (h // f, w // f)  # noqa: E731 - padding makes these exact
    att = Attention(
        cross=[cap.cross(m) for m, _ in cross],
        grids=[grid(f) for _, f in cross],
        self_qk=cap.self_attention(self_[0]) if self_ else None,
        self_grid=grid(self_[1]) if self_ else None,
        seconds=0.0,
    )
    calls = cap.calls
    cap.clear()
    return att, calls


def phrase_scores(att: Attention, positions: list[list[int]], tau_box: float,
                  quantize_box: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Refined scores ``(P, h, w)`` averaged over draws, and each phrase's un-normalised cross map on
    the finest cross grid averaged over draws ``(P, h, w)``: the map presence is read on
    (:func:`personaseg.t2m.presence`, and with a class word's :func:`personaseg.t2m.joint_presence`)."""
    finest = t2m.finest_grid(att.grids)
    out_grid = att.self_grid or finest

    def maps(grid):
        return torch.stack([t2m.cross_map(att.cross, att.grids, grid, p) for p in positions], dim=1)  # (D, P, h, w)

    # presence on the finest cross grid whatever the refinement's grid: upsampling lowers peaks, and
    # learn's presence_ref is read without refinement
    s = maps(finest)
    raw = s.mean(dim=0)  # (D, P, h, w) -> (P, h, w)
    if tuple(out_grid) != finest:
        s = maps(out_grid)
    if att.self_qk is not None:
        s = t2m.refine(att.self_qk, s, tau_box, quantize_box)
    else:
        s = t2m.minmax(s)
    return s.mean(dim=0), raw  # (D, P, h, w) -> (P, h, w)
