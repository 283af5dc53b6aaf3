"""Train the toy model on a CPU: VAE first, then the UNet and the text encoder jointly.

1. Draw ``n_scenes`` seeded scenes (their objects are kept, captions are re-sampled every step).
2. Train a x2 AutoencoderKL on them; cache the latents (posterior means) of the whole set and set
   ``scaling_factor`` so scaled latents have unit std, as SD does.
3. Train the UNet and a CLIP text encoder from scratch with SD's epsilon (or SD 2's v) objective and noise
   schedule, dropping the caption with ``p_uncond`` so classifier-free guidance works.
4. Write a diffusers ``StableDiffusionPipeline`` folder (fp16 safetensors) atomically, plus
   ``personaseg.json`` (layer map, find and learn defaults: :func:`model_card`), ``train_log.json`` and the rendered
   class images the card's TI contrast uses (``class-images/<shape>/``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io import folder_swap
from ..runtime import make_accelerator
from . import grounding, resume
from .bench import write_class_images
from .card import CLASS_IMAGES, json_text, model_card
from .config import ToyTrainConfig
from .model import SCHEDULER_CONFIG, build_scheduler, build_text_encoder, build_unet, build_vae, n_params
from .scenes import COLOURS, PATTERNS, SHAPES, ToyObject, caption_words, make_scene
from .vocab import build_tokenizer, save_tokenizer

Log = Callable[[str], None]


@dataclass
class TrainReport:
    """What a training run did."""

    out: str  # the diffusers folder written
    wall_s: float  # total wall time
    vae_s: float  # VAE stage wall time
    denoiser_s: float  # UNet + text-encoder stage wall time
    steps: int  # denoiser steps
    final_loss: float  # mean denoiser loss over the last ``log_every`` steps
    vae_loss: float  # final VAE reconstruction MSE (images in [-1, 1])
    scaling_factor: float  # VAE latent scaling factor
    params: dict[str, int] = field(default_factory=dict)  # parameters per component
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss)


def training_scenes(cfg: ToyTrainConfig) -> tuple[np.ndarray, list[list[ToyObject]], torch.Tensor]:
    """The fixed training set: images (N, H, W, 3) uint8, each scene's objects, and the visible
    masks at the latent grid (N, 4, h, w) float16 (object k in slot k, zeros past the last)."""
    rng = np.random.default_rng(cfg.seed)
    mcfg = cfg.model_config()
    size, f = mcfg.image_size, 2 ** (len(mcfg.vae_channels) - 1)
    images = np.empty((cfg.n_scenes, size, size, 3), np.uint8)
    masks = np.zeros((cfg.n_scenes, 4, size // f, size // f), np.float16)
    objects = []
    for i in range(cfg.n_scenes):
        scene = make_scene(rng, size=size)
        images[i] = scene.image
        k = len(scene.objects)
        masks[i, :k] = scene.masks.reshape(k, size // f, f, size // f, f).mean(axis=(2, 4))  # (K, h, w)
        objects.append(scene.objects)
    return images, objects, torch.from_numpy(masks)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(cfg, images, gen, tick, autocast=contextlib.nullcontext) -> tuple[torch.nn.Module, float]:
    """Train the autoencoder; returns it and the final reconstruction MSE. ``autocast()``: the
    mixed-precision context of the forward passes."""
    vae = build_vae(cfg.model_config())
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / cfg.vae_steps)))
    )
    recent: list[float] = []
    for step in range(cfg.vae_steps):
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen).numpy()
        x = to_tensor(images[idx])  # (B, 3, H, W)
        if cfg.vae_crop:  # the VAE is convolutional: train on random crops, 4x cheaper at half size
            y, x0 = torch.randint(0, x.shape[-1] - cfg.vae_crop + 1, (2,), generator=gen).tolist()
            x = x[..., y : y + cfg.vae_crop, x0 : x0 + cfg.vae_crop]  # (B, 3, crop, crop)
        with autocast():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
            rec = vae.decode(z).sample
        mse = F.mse_loss(rec.float(), x)
        loss = mse + cfg.kl_weight * post.kl().mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        recent = (recent + [mse.item()])[-20:]
        tick(step + 1, f"vae mse {np.mean(recent):.4f}")
    vae.eval()
    return vae, float(np.mean(recent))


@torch.no_grad()
def encode_latents(vae, images, batch: int = 128) -> torch.Tensor:
    """Posterior means of all images: (N, C, h, w) float32 (unscaled)."""
    out = [vae.encode(to_tensor(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(out)


def padding_loss(text_encoder, ids, cond, tokenizer) -> torch.Tensor:
    """How much caption information the end/padding tokens carry (0: none).

    CLIP's text encoder is causal, so its end and padding outputs summarise the whole caption,
    and a small UNet trained from scratch reads the caption there, through near-uniform
    attention over all 77 tokens, instead of attending to each word where its object is. This
    pulls those outputs towards the empty prompt's, so the words are the only carriers.
    """
    empty = tokenizer([""], padding="max_length", max_length=ids.shape[1], return_tensors="pt").input_ids
    ref = text_encoder(empty)[0].float()  # (1, T, D)
    cond = cond.float()
    eos = (ids == tokenizer.eos_token_id).int().argmax(dim=1)  # (B,) first end token
    pos = torch.arange(ids.shape[1])[None, :]  # (1, T)
    pad = (pos >= eos[:, None]).float()[..., None]  # (B, T, 1) end + padding positions
    err = ((cond - ref) ** 2 * pad).sum() / (pad.sum() * cond.shape[-1])
    return err / ref.pow(2).mean().detach().clamp_min(1e-6)


def train_denoiser(cfg, latents, objects, masks, tokenizer, gen, rng, tick, log, snapshot=None, resume_from=None,
                   init=None, autocast=contextlib.nullcontext):
    """Train UNet + text encoder jointly; returns (unet, text_encoder, losses).

    ``snapshot(step, unet, text_encoder, losses, opt, heads)`` is called every ``cfg.snapshot_every``
    steps with a copy of the UNet free of the training processors. ``resume_from``: ``(out, meta)`` of
    a saved state to continue from. ``init``: the weights to start from (see :func:`load_init`), else a
    fresh initialisation. ``autocast()``: the mixed-precision context of the forward passes (the
    losses are computed in fp32).
    """
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup

    unet, text_encoder = _denoiser_models(cfg, tokenizer, init)
    noise_sched = DDPMScheduler.from_config({**SCHEDULER_CONFIG, "prediction_type": cfg.prediction_type})
    attrs = {name: (weight, values) for name, weight, values in (
        ("shape", cfg.shape_loss, SHAPES), ("colour", cfg.look_loss, tuple(COLOURS)), ("pattern", cfg.look_loss, PATTERNS),
    ) if weight}  # per-pixel classifiers on the attention inputs (training only)
    heads = torch.nn.ModuleDict({name: grounding.class_heads(unet, len(values)) for name, (_, values) in attrs.items()}) \
        if attrs else None
    params = list(unet.parameters()) + list(text_encoder.parameters()) + (list(heads.parameters()) if heads else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2, fused=True)  # one kernel: ~5 % of a CPU step
    lr_sched = get_cosine_schedule_with_warmup(opt, cfg.warmup, int(cfg.steps * 1.1))
    start, losses, recent = 0, [], []
    if resume_from is not None:
        start, losses = _resume_denoiser(*resume_from, {"unet": unet, "text_encoder": text_encoder, "class_heads": heads},
                                         opt, lr_sched, gen, rng)
        log(f"resumed at step {start}")
    features: list | None = [] if heads is not None else None
    hooks = grounding.Grounding(unet, features, fp32_self=cfg.mixed_precision != "no") \
        if cfg.ground_loss or heads is not None else None
    class_ids = {name: torch.tensor([[values.index(getattr(o, name)) for o in objs] + [-1] * (masks.shape[1] - len(objs))
                                     for objs in objects]) for name, (_, values) in attrs.items()}  # (N, K) per object slot
    unet.train()
    text_encoder.train()
    with hooks or contextlib.nullcontext():
        for step in range(start, cfg.steps):
            idx, x0, ids, positions = _caption_batch(cfg, latents, objects, tokenizer, gen, rng)
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(cfg.t_min, cfg.t_max, (cfg.batch,), generator=gen)
            xt = noise_sched.add_noise(x0, noise, t)
            with _cleared(hooks):
                with autocast():
                    cond = text_encoder(ids)[0]  # (B, 77, D)
                    pred = unet(xt, t, cond).sample
                    pad = padding_loss(text_encoder, ids, cond, tokenizer) if cfg.pad_loss else None
                target = noise_sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
                loss = F.mse_loss(pred.float(), target)
                low_t = (t < cfg.ground_t_max).float()  # (B,) samples whose layout is visible in x_t
                if cfg.ground_loss:
                    targets = grounding.token_masks(masks[idx].float(), positions, ids.shape[1])  # (B, T, h, w)
                    loss = loss + cfg.ground_loss * grounding.grounding_loss(hooks.store, targets, low_t)
                for name, (weight, values) in attrs.items():
                    targets = grounding.class_targets(masks[idx].float(), class_ids[name][idx], len(values))  # (B, S+1, h, w)
                    loss = loss + weight * grounding.class_loss(features, heads[name], targets, low_t)
                if pad is not None:
                    loss = loss + cfg.pad_loss * pad
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            lr_sched.step()
            opt.zero_grad(set_to_none=True)
            recent.append(loss.item())
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                losses.append((step + 1, float(np.mean(recent))))
                log(f"step {step + 1}/{cfg.steps} loss {losses[-1][1]:.4f}")
                recent = []
            tick(step + 1, f"loss {losses[-1][1]:.4f}" if losses else "")
            if snapshot and cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0 and step + 1 < cfg.steps:
                snapshot(step + 1, hooks.plain_copy() if hooks else copy.deepcopy(unet), text_encoder, losses, opt, heads)
                unet.train()
                text_encoder.train()
    return unet.eval(), text_encoder.eval(), losses


def _denoiser_models(cfg, tokenizer, init):
    """A fresh UNet and text encoder of the recipe's sizes, with ``init``'s weights when given."""
    mcfg = cfg.model_config()
    unet = build_unet(mcfg)
    text_encoder = build_text_encoder(mcfg, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    if init is not None:
        unet.load_state_dict(init["unet"].state_dict())
        text_encoder.load_state_dict(init["text_encoder"].state_dict())
    return unet, text_encoder


def _resume_denoiser(out, meta, modules, opt, lr_sched, gen, rng) -> tuple[int, list]:
    """Load a saved state's weights (``modules``: name -> module or None), optimizer and random
    states; step the schedule to where it stopped. Returns (start step, losses so far)."""
    for name, module in modules.items():
        if module is not None:
            resume.load_weights(out, name, module)
    resume.restore_training(out, meta, opt, gen, rng)
    start = meta["step"]
    with warnings.catch_warnings():  # stepping the schedule without optimizer steps
        warnings.simplefilter("ignore")
        for _ in range(start):
            lr_sched.step()
    return start, [tuple(x) for x in meta["losses"]]


def _caption_batch(cfg, latents, objects, tokenizer, gen, rng):
    """A batch of training scenes with fresh captions: (indices (B,), latents (B, C, h, w), token ids
    (B, 77), each caption's object word positions, +1 for the start token)."""
    idx = torch.randint(0, len(latents), (cfg.batch,), generator=gen)
    x0 = latents[idx]  # (B, C, h, w), already scaled
    prompts, positions = [], []
    for i in idx.tolist():
        text, where = ("", []) if rng.random() < cfg.p_uncond else caption_words(
            objects[i], rng, p_partial=cfg.p_partial, p_drop_colour=cfg.p_drop_colour)
        prompts.append(text)
        positions.append([[p + 1 for p in w] for w in where])  # +1: the start token
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids  # (B, 77)
    return idx, x0, ids, positions


@contextlib.contextmanager
def _cleared(hooks):
    """A step's recorded attention and features: emptied before it, and after its backward (frees
    the graph's tensors and keeps the UNet deep-copyable)."""
    for records in (hooks.store, hooks.features) if hooks else ():
        if records is not None:
            records.clear()
    yield
    for records in (hooks.store, hooks.features) if hooks else ():
        if records is not None:
            records.clear()


def load_init(folder: str | Path) -> dict[str, object]:
    """The VAE, UNet and text encoder of a trained toy model folder (float32), to fine-tune."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder).expanduser()
    if not (folder / "model_index.json").exists():
        raise InputError(f"init model {folder} is not a diffusers folder", hint="give a folder written by toyworld train")
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    log_file = folder / "train_log.json"
    vae_loss = json.loads(log_file.read_text()).get("report", {}).get("vae_loss", float("nan")) if log_file.exists() else float("nan")
    pipe.vae.eval()
    return {"vae": pipe.vae, "unet": pipe.unet, "text_encoder": pipe.text_encoder, "vae_loss": vae_loss}


def save_model(out: Path, vae, unet, text_encoder, tokenizer, extra: dict[str, object],
               prediction_type: str = "epsilon") -> Path:
    """Write the diffusers folder (fp16 safetensors) atomically: temp folder, then rename."""
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    with folder_swap(out) as tmp:
        pipe = StableDiffusionPipeline(
            vae=vae.half(), text_encoder=text_encoder.half(), tokenizer=tokenizer, unet=unet.half(),
            scheduler=build_scheduler(prediction_type), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(tokenizer, tmp / "tokenizer")
        _load_as_float32(tmp / "text_encoder" / "config.json")
        for name, data in extra.items():
            (tmp / name).write_text(json_text(data))
        write_class_images(tmp / CLASS_IMAGES)
    return out


def _load_as_float32(config_json: Path) -> None:
    """Store fp16 weights but declare float32, so transformers' dtype="auto" loads the text
    encoder in the same dtype as diffusers loads the UNet (a plain ``from_pretrained`` works)."""
    data = json.loads(config_json.read_text())
    for key in ("dtype", "torch_dtype"):
        if key in data:
            data[key] = "float32"
    config_json.write_text(json.dumps(data, indent=2) + "\n")


def train(cfg: ToyTrainConfig, out: str | Path, tick=None, log: Log = print, resume_run: bool = False) -> TrainReport:
    """Run the whole recipe and write the model to ``out``. ``tick(stage, done, total, text)``.

    Every ``cfg.snapshot_every`` steps the model so far is written to ``out`` and the training
    state to ``OUT.resume/``; ``resume_run=True`` continues from that state.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", hint="give a folder path")
    tick = tick or (lambda *a: None)
    torch.set_num_threads(cfg.threads)
    autocast = make_accelerator(cfg.mixed_precision, cpu=True).autocast
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    t0 = time.perf_counter()

    # saved state and init model first: a bad one fails before minutes of scene drawing
    meta = resume.load_meta(out, cfg) if resume_run else None
    if resume_run and meta is None:
        log(f"no saved state in {resume.state_dir(out)}: starting afresh")
    init = load_init(cfg.init) if cfg.init and meta is None else None  # a resumed run has its own weights
    images, objects, masks = training_scenes(cfg)
    log(f"{len(images)} scenes drawn in {time.perf_counter() - t0:.1f}s")
    tok = build_tokenizer()
    scale = None
    if meta is not None:
        vae = build_vae(cfg.model_config())
        resume.load_weights(out, "vae", vae)
        vae.eval()
        vae_loss, scale = meta["vae_loss"], meta["scaling_factor"]
    elif init is not None:
        resume.clear(out)
        vae, vae_loss, scale = init["vae"], init["vae_loss"], init["vae"].config.scaling_factor
    else:
        resume.clear(out)
        vae, vae_loss = train_vae(cfg, images, gen, lambda d, text: tick("vae", d, cfg.vae_steps, text), autocast)
    raw = encode_latents(vae, images)
    if scale is None:
        scale = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=scale)
    latents = raw * scale
    t_vae = time.perf_counter() - t0
    log(f"VAE: mse {vae_loss:.4f}, scaling_factor {scale:.4f}, {t_vae:.0f}s")

    def snapshot(step, unet, text_encoder, losses, opt, heads=None):
        """Write the model so far (a run cut short still leaves a usable model) and the state."""
        info = {"config": asdict(cfg), "snapshot_step": step, "losses": losses}
        extra = {"personaseg.json": model_card(), "train_log.json": info}
        unet_copy = unet  # train_denoiser's copy, without the training processors
        models = {"vae": vae, "unet": unet_copy, "text_encoder": text_encoder}
        if heads is not None:
            models["class_heads"] = heads  # training-only, kept so a resumed run continues them
        resume.save_state(out, cfg, step, models, opt, gen, rng, losses, scale, vae_loss)
        save_model(out, copy.deepcopy(vae), unet_copy, copy.deepcopy(text_encoder), tok, extra,
                   cfg.prediction_type)  # fp16
        log(f"snapshot at step {step} written to {out}")

    unet, text_encoder, losses = train_denoiser(
        cfg, latents, objects, masks, tok, gen, rng, lambda d, text: tick("denoiser", d, cfg.steps, text), log,
        snapshot, (out, meta) if meta else None, init, autocast,
    )
    wall = time.perf_counter() - t0
    report = TrainReport(
        out=str(out), wall_s=wall, vae_s=t_vae, denoiser_s=wall - t_vae, steps=cfg.steps,
        final_loss=losses[-1][1], vae_loss=vae_loss, scaling_factor=scale,
        params={"unet": n_params(unet), "text_encoder": n_params(text_encoder), "vae": n_params(vae)},
        losses=losses,
    )
    extra = {
        "personaseg.json": model_card(),
        "train_log.json": {"config": asdict(cfg), "report": asdict(report), "resumed_at": meta and meta["step"]},
    }
    save_model(out, vae, unet, text_encoder, tok, extra, cfg.prediction_type)
    resume.clear(out)
    return report
