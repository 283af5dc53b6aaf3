"""Resumable toy training: the state is kept beside the output folder, in ``OUT.resume/``.

Saved every ``snapshot_every`` denoiser steps, safetensors and JSON only (no pickle): the
weights of the VAE, UNet, text encoder and training-only class heads in float32, AdamW's
moments, the step, the losses so far and both random generators. A killed run restarted with
``--resume`` redraws the (seeded) scenes, re-encodes them with the saved VAE and continues from
the saved step.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import ConfigError
from ..io import folder_swap


def state_dir(out: str | Path) -> Path:
    """Where the resume state of a run writing to ``out`` lives."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous().clone() for k, v in module.state_dict().items()}


def save_state(out, cfg, step: int, models: dict[str, torch.nn.Module], opt, gen: torch.Generator,
               rng: np.random.Generator, losses: list, scaling_factor: float, vae_loss: float) -> Path:
    """Write the resume state atomically (temp folder, then rename over the old one)."""
    folder = state_dir(out)
    with folder_swap(folder) as tmp:
        for name, module in models.items():
            save_file(_tensors(module), str(tmp / f"{name}.safetensors"))
        moments = {}
        for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
            for key, value in opt.state.get(p, {}).items():
                moments[f"{i}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
        save_file(moments, str(tmp / "optimizer.safetensors"))
        save_file({"torch": gen.get_state()}, str(tmp / "rng.safetensors"))
        meta = {"step": step, "losses": losses, "numpy": rng.bit_generator.state,
                "scaling_factor": scaling_factor, "vae_loss": vae_loss, "config": asdict(cfg)}
        (tmp / "state.json").write_text(json.dumps(meta))
    return folder


def load_meta(out, cfg) -> dict[str, Any] | None:
    """The saved state's metadata, or None when there is none; a different recipe is an error."""
    folder = state_dir(out)
    if not (folder / "state.json").exists():
        return None
    meta = json.loads((folder / "state.json").read_text())
    # a field added since the state was saved counts at its default (what that run did)
    saved = {**json.loads(json.dumps(asdict(type(cfg)()))), **meta["config"]}
    if saved != json.loads(json.dumps(asdict(cfg))):
        raise ConfigError(
            f"{folder} was saved by another recipe",
            hint="resume with the same recipe, or start afresh without --resume",
        )
    return meta


def load_weights(out, name: str, module: torch.nn.Module) -> None:
    """Load saved weights of ``name`` (vae, unet, text_encoder, class_heads) into ``module``."""
    module.load_state_dict(load_file(str(state_dir(out) / f"{name}.safetensors")))


def restore_training(out, meta, opt, gen: torch.Generator, rng: np.random.Generator) -> None:
    """Put AdamW's moments and both generators back as they were at the saved step."""
    folder = state_dir(out)
    moments = load_file(str(folder / "optimizer.safetensors"))
    for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
        state = {k.split(".", 1)[1]: v for k, v in moments.items() if k.split(".", 1)[0] == str(i)}
        if state:
            opt.state[p] = state
    gen.set_state(load_file(str(folder / "rng.safetensors"))["torch"])
    rng.bit_generator.state = meta["numpy"]


def clear(out) -> None:
    """Remove the resume state (after a finished run)."""
    shutil.rmtree(state_dir(out), ignore_errors=True)
