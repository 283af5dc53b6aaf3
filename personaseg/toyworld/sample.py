"""Sampling from the toy model (a check that it learned the world)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def sample(
    prompt: str,
    model: str | Path | None = None,
    steps: int = 25,
    seed: int = 0,
    n: int = 1,
    guidance: float = 4.0,
    device: str | None = None,
) -> list[Image.Image]:
    """Draw ``n`` images for ``prompt`` with the shipped toy model (or a trained ``model`` folder).

    Loaded through :func:`personaseg.models.load_pipeline`, the same path SD takes.
    """
    import torch

    from ..models import load_pipeline
    from .model import ToyModelConfig

    pipe, _ = load_pipeline(str(model) if model else "toy", device=device, dtype="float32")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor if pipe.vae_scale_factor else ToyModelConfig.image_size
    gen = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        [prompt] * n, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
        generator=gen, output_type="np",
    ).images  # (n, H, W, 3) float in [0, 1]
    return [Image.fromarray((im * 255).round().astype(np.uint8)) for im in out]


def grid(images: list[Image.Image], scale: int = 2) -> Image.Image:
    """Images side by side, enlarged ``scale`` times (nearest neighbour)."""
    w, h = images[0].size
    canvas = Image.new("RGB", (w * scale * len(images), h * scale), "white")
    for i, im in enumerate(images):
        canvas.paste(im.resize((w * scale, h * scale), Image.NEAREST), (i * w * scale, 0))
    return canvas
