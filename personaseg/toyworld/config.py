"""``ToyTrainConfig``: the settings of one toy-model training run (recipes/toyworld.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import build_config, load_recipe
from ..errors import ConfigError
from .model import SCHEDULER_CONFIG, ToyModelConfig

N_TIMESTEPS = SCHEDULER_CONFIG["num_train_timesteps"]  # the toy scheduler's training timesteps
PREDICTION_TYPES = ("epsilon", "v_prediction")  # UNet targets diffusers' SD pipelines and our trainer read


@dataclass
class ToyTrainConfig:
    """Toy-model training: a fixed scene set, a short VAE stage, then UNet + text encoder."""

    seed: int = 0  # seeds scenes, initialisation, noise and caption sampling
    init: str | None = None  # fine-tune a trained toy model folder (its VAE is kept; no VAE stage)
    n_scenes: int = 12000  # pre-generated training scenes (their VAE latents are cached)
    threads: int = 2  # torch CPU threads
    mixed_precision: str = "no"  # "bf16": forward passes under bf16 autocast (accelerate), weights and optimiser fp32
    # VAE stage
    vae_steps: int = 300  # autoencoder steps
    vae_batch: int = 16  # images per VAE step
    vae_lr: float = 1e-3  # AdamW learning rate of the VAE
    vae_crop: int = 32  # train the VAE on random crops of this size (0: whole images)
    kl_weight: float = 1e-6  # KL term weight (SD's VAE uses ~1e-6)
    # UNet + text-encoder stage
    steps: int = 1500  # denoiser steps
    batch: int = 32  # latents per denoiser step
    lr: float = 4e-4  # AdamW peak learning rate (UNet and text encoder)
    warmup: int = 100  # linear warm-up steps, then cosine decay to lr/10
    t_min: int = 0  # denoiser timesteps are drawn uniformly from [t_min, t_max)
    t_max: int = N_TIMESTEPS  # (a fine-tune can dwell where the layout is drawn: t_min 300 or more)
    prediction_type: str = "epsilon"  # the UNet's target: "epsilon" (SD 1.x) or "v_prediction" (SD 2.x)
    p_uncond: float = 0.1  # caption dropout (empty prompt) so classifier-free guidance works
    p_partial: float = 0.0  # share of captions naming only some of the scene's objects
    p_drop_colour: float = 0.2  # share of objects named by their shape word alone ("a circle")
    ground_loss: float = 0.0  # weight of the attention-grounding term (see toyworld/grounding.py)
    ground_t_max: int = 600  # ground only at timesteps below this (object layout visible in x_t)
    shape_loss: float = 0.0  # weight of per-pixel shape classification on the attention inputs (toyworld/grounding.py)
    look_loss: float = 0.0  # weight of per-pixel colour and pattern classification there (what tells instances apart)
    pad_loss: float = 0.0  # weight pulling end/padding token outputs to the empty prompt's (see train.padding_loss)
    log_every: int = 25  # steps between loss log lines
    snapshot_every: int = 200  # write the model so far every N steps (0: only at the end)
    model: dict[str, Any] = field(default_factory=dict)  # ToyModelConfig overrides

    def __post_init__(self) -> None:
        for name in ("n_scenes", "vae_batch", "steps", "batch", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.mixed_precision not in ("no", "bf16"):
            raise ConfigError(f"mixed_precision={self.mixed_precision!r} is not no or bf16",
                              hint="bf16 autocasts on the CPU; fp16 autocast is for GPUs")
        for name in ("ground_loss", "shape_loss", "look_loss", "pad_loss", "kl_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0", hint="0 turns the term off")
        if not 0 <= self.t_min < self.t_max <= N_TIMESTEPS:
            raise ConfigError(f"t_min={self.t_min}, t_max={self.t_max}: need 0 <= t_min < t_max <= {N_TIMESTEPS}",
                              hint=f"the scheduler has {N_TIMESTEPS} training timesteps")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type={self.prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}",
                              hint="epsilon as SD 1.x, v_prediction as SD 2.x")
        for name in ("p_uncond", "p_partial", "p_drop_colour"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}={getattr(self, name)} out of range", hint="a probability: 0..1")
        try:
            self.model_config()
        except TypeError as err:
            raise ConfigError(f"bad [model] settings: {err}") from None

    def model_config(self) -> ToyModelConfig:
        """The model sizes: defaults overridden by the ``[model]`` table."""
        return ToyModelConfig(**self.model)


def toy_train_config(recipe: str | Path | None = None, **overrides: Any) -> ToyTrainConfig:
    """ToyTrainConfig from defaults < recipe file < keyword overrides (None = not given)."""
    values = load_recipe(recipe) if recipe else None
    return build_config(ToyTrainConfig, values, overrides, source=str(recipe or ""))
