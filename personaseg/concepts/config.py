"""``LearnConfig``: every setting of one ``learn`` run, with the defaults of the diffusers examples.

Textual Inversion defaults follow diffusers' ``examples/textual_inversion`` README (batch 1,
gradient accumulation 4, lr 5e-4 scaled by batch x accumulation x processes, 3000 steps, 512 px).
LoRA defaults follow ``examples/dreambooth/train_dreambooth_lora.py`` (rank 4 on the attention
projections, lr 1e-4, no accumulation). Fields left ``None`` take the method's default, see
:meth:`LearnConfig.resolved`. Recipes in ``recipes/`` override fields; CLI flags override recipes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

METHODS = ("ti", "lora")
# Upper bounds of the integer settings (lower bound 1), far above any use, so a typo fails at once
# instead of allocating for hours: vectors must fit a 77-token prompt; resolution 2048 px is 4x SD 2.x's.
INT_BOUNDS = {"vectors": 75, "batch_size": 256, "lora_rank": 1024, "num_class_images": 10_000, "steps": 10_000_000,
              "grad_accum": 1024, "resolution": 2048, "class_image_steps": 1000}
DEFAULT_RESOLUTION = 512  # training side when neither the user nor the model card sets one (SD 1.x)
MIXED_PRECISION = ("no", "fp16", "bf16")

# Per-method values of the fields that default to None.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ti": {"lr": 5e-4, "steps": 3000, "batch_size": 1, "grad_accum": 4, "max_grad_norm": 0.0,
           "find_prompt": "a photo of a {}"},
    "lora": {"lr": 1e-4, "steps": 800, "batch_size": 1, "grad_accum": 1, "max_grad_norm": 1.0,
             "find_prompt": "a photo of a {} {class}"},
}
# Settings of Textual Inversion only: refused for LoRA when given, dropped when a model card gives them.
TI_ONLY = ("contrast_weight", "contrast_hardest", "contrast_pairs", "contrast_images")


@dataclass
class LearnConfig:
    """Settings of one concept-learning run (Textual Inversion or LoRA DreamBooth)."""

    method: str = "ti"  # "ti" (Textual Inversion) or "lora" (LoRA DreamBooth with peft)
    class_word: str | None = None  # what the thing is ("mug"); initialises the vectors unless init_word
    init_word: str | None = None  # word whose embedding initialises the vectors; None: class word, else "object"
    vectors: int = 1  # K embedding vectors for the token: <tok>, <tok>_1, ... (diffusers naming)
    steps: int | None = None  # optimizer steps; None: 3000 for ti, 800 for lora
    lr: float | None = None  # base learning rate; None: 5e-4 for ti, 1e-4 for lora
    scale_lr: bool = True  # lr *= batch_size * grad_accum * processes (diffusers' --scale_lr)
    lr_scheduler: str = "constant"  # any diffusers.optimization.get_scheduler name
    lr_warmup_steps: int = 0  # warm-up steps of the scheduler
    adam_weight_decay: float = 1e-2  # AdamW weight decay (diffusers examples: 1e-2)
    max_grad_norm: float | None = None  # gradient clipping (0: off); None: off for ti, 1.0 for lora
    resolution: int | None = None  # training side in px (photos resized, centre-cropped); None: the model card's, else 512
    batch_size: int | None = None  # photos per micro-batch; None: the model card's, else 1
    grad_accum: int | None = None  # micro-batches per optimizer step; None: 4 for ti, 1 for lora
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (accelerate); trainable weights stay fp32
    gradient_checkpointing: bool = False  # recompute UNet/text-encoder activations to save memory
    flip_p: float = 0.5  # probability of a horizontal flip per sample (diffusers TI example)
    seed: int = 0  # seeds data order, augmentation, noise, timesteps and LoRA initialisation
    checkpoint_every: int = 500  # save a resumable checkpoint every N optimizer steps (0: never)
    find_prompt: str | None = None  # find template: {} = token, {class} = class word; None: per method
    lora_rank: int = 4  # LoRA rank r (lora_alpha = r, as diffusers' dreambooth LoRA example)
    lora_train_text_encoder: bool = False  # also put LoRA on the text encoder's attention
    lora_train_token: bool = True  # LoRA: also train the identifier token's embedding rows
    token_lr: float = 5e-4  # LoRA: base learning rate of the token rows (scaled like lr)
    lora_prompt: str = "a photo of a {} {class}"  # LoRA instance prompt ({} token, {class} class word)
    measure_presence: bool = True  # after learning, find the concept in its photos: its presence_ref (one find per photo)
    templates: list[str] | None = None  # TI training prompts ({} token, {class}); None: the model card's, else diffusers' imagenet set
    prior_preservation: bool = False  # LoRA: add the class-prior loss of DreamBooth
    prior_weight: float = 1.0  # weight of the prior loss
    contrast_weight: float | None = None  # TI: weight of the class-image contrast loss; None: the model card's, else 0 (off)
    contrast_ratio: float = 0.5  # TI contrast: push the token's presence on class images under this share of its presence on the photos
    contrast_hardest: int | None = None  # TI contrast: draw from the N images of its pool (contrast_images, else the class images) the token lights most, re-ranked every contrast_mine_every steps; None: the model card's, else 0 (all, uniformly)
    contrast_pairs: int | None = None  # TI contrast: photos (and as many pool images) read per step; None: the model card's, else batch_size
    contrast_mine_every: int = 50  # TI contrast: steps between re-rankings of the pool (contrast_hardest > 0)
    attention_weight: float | None = None  # masks (boxes, clicks): weight of the loss pulling the token's find map (find's blocks and timestep) onto each photo's mask; None: the model card's, else 1.0 (0: off)
    masked_loss: bool | None = None  # masks: the denoising loss counts the object's latent cells only (Break-A-Scene); None: the model card's, else true
    guided_steps: int | None = None  # optimizer steps when a photo has a mask, box or click (guidance learns faster); None: the model card's, else steps
    stop_when_stable: float | None = None  # stop before `steps` once the token's find map on its own photos (min-max normalised) moves less than this mean absolute change between two checks; None: the model card's, else off; 0: off
    stop_check_every: int = 25  # steps between the checks of stop_when_stable (each: one find-style forward over the photos)
    guided_stop_when_stable: float | None = None  # stop_when_stable for a learn with masks (boxes, clicks); None: the model card's, else stop_when_stable; 0: off
    class_images: str | None = None  # folder of class images ({class}: the class word); None: generate them with the model
    contrast_images: str | None = None  # TI contrast: images the token must stay off, all of them (folders, globs; {class}: the class word); None: the class images
    num_class_images: int = 100  # class images to use / generate (diffusers default 100)
    class_image_steps: int = 30  # sampler steps when generating class images

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}", hint="use --method ti or --method lora")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"unknown mixed precision {self.mixed_precision!r}", hint="use no, fp16 or bf16"
            )
        for name, top in INT_BOUNDS.items():  # what is allowed, said in the message
            value = getattr(self, name)
            if value is not None and not 1 <= value <= top:
                raise ConfigError(f"{name}={value} out of range", hint=f"use 1..{top}")
        for name in ("lr_warmup_steps", "seed"):
            if not 0 <= getattr(self, name) < 2**63:
                raise ConfigError(f"{name}={getattr(self, name)} out of range", hint="use 0 or more")
        for name in ("token_lr", "adam_weight_decay", "prior_weight", "max_grad_norm", "contrast_weight"):
            value = getattr(self, name)  # NaN and inf are refused: not value >= 0 holds for NaN
            if value is not None and not (math.isfinite(value) and value >= 0 and (name != "token_lr" or value > 0)):
                raise ConfigError(f"{name}={value} out of range",
                                  hint="use a finite number " + ("> 0" if name == "token_lr" else ">= 0"))
        if self.resolution is not None and self.resolution % 8:
            raise ConfigError(
                f"resolution {self.resolution} is not a multiple of 8", hint="use e.g. 512, 256 or 64"
            )
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be > 0", hint="use a finite number like 5e-4")
        for name in ("stop_when_stable", "guided_stop_when_stable"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value} out of range",
                                  hint="use a mean change in [0, 1], e.g. 0.01; 0 runs every step")
        if self.stop_check_every < 1:
            raise ConfigError(f"stop_check_every={self.stop_check_every} out of range", hint="use 1 or more")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ConfigError(f"flip_p={self.flip_p} out of range", hint="use 0..1")
        if (self.contrast_weight or 0.0) < 0 or not 0.0 < self.contrast_ratio <= 1.0:
            raise ConfigError(
                f"contrast_weight={self.contrast_weight}, contrast_ratio={self.contrast_ratio} out of range",
                hint="use contrast_weight >= 0 (0: off) and 0 < contrast_ratio <= 1",
            )
        if (self.contrast_hardest or 0) < 0 or self.contrast_mine_every < 1:
            raise ConfigError(
                f"contrast_hardest={self.contrast_hardest}, contrast_mine_every={self.contrast_mine_every} out of range",
                hint="use contrast_hardest >= 0 (0: draw from all class images) and contrast_mine_every >= 1",
            )
        if self.contrast_pairs is not None and self.contrast_pairs < 1:
            raise ConfigError(f"contrast_pairs={self.contrast_pairs} must be >= 1",
                              hint="use 1 or more (default: batch_size photos and as many contrast images per step)")
        if self.method != "ti":
            given = [k for k in TI_ONLY if getattr(self, k)]
            if given:
                raise ConfigError(f"{given[0]} applies to Textual Inversion only",
                                  hint=f"use --method ti, or leave {given[0]} out")
        if (self.attention_weight or 0.0) < 0:
            raise ConfigError(f"attention_weight={self.attention_weight} must be >= 0", hint="use 0 (off) or more")
        if self.guided_steps is not None and self.guided_steps < 1:
            raise ConfigError(f"guided_steps={self.guided_steps} must be >= 1")
        if self.checkpoint_every < 0:
            raise ConfigError("checkpoint_every must be >= 0 (0: no periodic checkpoints)")
        for name in ("find_prompt", "lora_prompt"):
            value = getattr(self, name)
            if value is not None and "{}" not in value:
                raise ConfigError(
                    f"{name} {value!r} has no '{{}}' placeholder for the token",
                    hint='write it like "a photo of a {}" or "a photo of a {} {class}"',
                )
        if self.templates is not None:
            self.templates = list(self.templates)  # TOML gives lists; a tuple would not hash-compare
            bad = [t for t in self.templates if "{}" not in t]
            if not self.templates or bad:
                raise ConfigError(
                    f"templates {bad[0]!r} has no '{{}}' placeholder for the token" if bad else "templates is empty",
                    hint='write them like ["a photo of a {}", "a {}"], or leave templates out',
                )
        for name in ("class_word", "init_word"):  # collapse whitespace; blank means not given
            if getattr(self, name) is not None:
                setattr(self, name, " ".join(getattr(self, name).split()) or None)

    def resolved(self) -> "LearnConfig":
        """A copy with every ``None`` method default filled in. Fields a model card may set
        (``templates``, ``resolution``, ...) stay ``None``: ``learn`` fills them once the model is known."""
        fills = {k: v for k, v in METHOD_DEFAULTS[self.method].items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fills)


def fill_template(template: str, token_text: str, class_word: str | None) -> str:
    """``template`` with ``{}`` -> ``token_text`` and ``{class}`` -> the class word (or nothing)."""
    text = template.replace("{class}", class_word or "").replace("{}", token_text)
    return " ".join(text.split())


def card_defaults(cfg: LearnConfig, card) -> LearnConfig:
    """Fields the user left ``None`` that the model card sets (``"learn"`` in personaseg.json),
    e.g. the toy model's training prompts, which its tiny vocabulary can read."""
    fields = {f.name for f in dataclasses.fields(LearnConfig)}
    if cfg.method != "ti":
        fields -= set(TI_ONLY)  # the card's TI settings do not make a LoRA run fail
        fields -= {"stop_when_stable", "guided_stop_when_stable"}  # a card's rule is measured for its TI
    fills = {k: v for k, v in card.learn_defaults.items() if k in fields and getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **fills) if fills else cfg

