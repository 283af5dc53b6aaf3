"""``Trainer``: one optimisation step of Textual Inversion or LoRA DreamBooth, on a pipeline's parts.

Used as a context manager: entering adds the token rows (and the LoRA adapter) to the pipeline's
text encoder and UNet; leaving takes them off again and restores every flag it touched
(requires_grad, train/eval, gradient checkpointing, device). The tokenizer is copied, never
extended in place. So a pipeline handed to ``learn(pipe=...)`` comes back as it went in.

accelerate does device placement, autocast, gradient accumulation and multi-process gradients;
trainable parameters are fp32 whatever the frozen weights' dtype.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F

from .. import t2m
from ..errors import ConceptError
from .checkpoint import rng_state, set_rng_state
from .config import LearnConfig, fill_template
from .data import TI_TEMPLATES, PhotoSet, photo_index, sample_generator
from .lora import UnetAdapter, add_text_encoder_lora, text_encoder_lora_state_dict
from .parts import Batch, ContrastSpec, Flags, LearnModel, encode_pairs, lora_enabled
from .parts import masked_mse as _mse
from .textual_inversion import TokenRows, check_free, class_word_vector, sub_tokens


class Trainer:
    """Set up, step, checkpoint and read out one learning run."""

    def __init__(self, pipe, token: str, cfg: LearnConfig, accelerator, photos: PhotoSet,
                 class_photos: PhotoSet | None = None, copy_text_encoder: bool = False,
                 contrast: ContrastSpec | None = None):
        self.pipe, self.token, self.cfg, self.acc = pipe, token, cfg, accelerator
        self.photos, self.class_photos = photos, class_photos
        self.prior = class_photos is not None and cfg.method == "lora" and cfg.prior_preservation
        self.contrast = contrast if cfg.contrast_weight and class_photos is not None else None
        self.find_spec = contrast  # find's blocks and timestep (contrast, attention loss)
        masks = photos.masks
        # guidance by the photos' masks: the token's find map pulled onto them, the denoising loss on the object only
        self.attention = bool(masks is not None and contrast is not None and cfg.attention_weight)
        self.masked = bool(masks is not None and cfg.masked_loss)
        self.hardest: torch.Tensor | None = None  # indices of the class images contrast draws from (None: all)
        self.copy_text_encoder = copy_text_encoder
        self.name = token.strip("<>")
        self.subs = sub_tokens(token, cfg.vectors)
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    # ------------------------------------------------------------------ set up / tear down

    def __enter__(self) -> "Trainer":
        pipe, cfg, acc = self.pipe, self.cfg, self.acc
        self._flags = Flags([pipe.vae, pipe.unet, pipe.text_encoder])
        self.adapter = None
        self.tokenizer = copy.deepcopy(pipe.tokenizer)
        check_free(self.tokenizer, self.subs)
        te = copy.deepcopy(pipe.text_encoder) if self.copy_text_encoder else pipe.text_encoder
        self.text_encoder = te
        for m in (pipe.vae, pipe.unet, te):
            m.requires_grad_(False)
        try:
            self._setup(pipe, cfg, acc, te)
        except BaseException:
            self._teardown()
            raise
        return self

    def _setup(self, pipe, cfg: LearnConfig, acc, te) -> None:
        self.tokenizer.add_tokens(self.subs)
        ids = self.tokenizer.convert_tokens_to_ids(self.subs)
        self.base_embedding = te.get_input_embeddings()
        init = class_word_vector(self.tokenizer, self.base_embedding, cfg.init_word or cfg.class_word)
        self.rows = TokenRows(self.base_embedding, ids, init.expand(cfg.vectors, -1))
        self.rows.to(self.base_embedding.weight.device)
        te.set_input_embeddings(self.rows)
        self.other_lora = cfg.method == "ti" and lora_enabled(pipe.unet)
        if self.other_lora:
            pipe.unet.disable_lora()  # learn the token on the base model, not on a loaded LoRA concept
        if cfg.method == "lora":
            with torch.random.fork_rng(devices=[]):  # LoRA A matrices come from the global generator
                torch.manual_seed(cfg.seed)
                self.adapter = UnetAdapter(pipe.unet, f"personaseg-{self.name}", cfg.lora_rank)
                if cfg.lora_train_text_encoder:
                    add_text_encoder_lora(te, f"personaseg-{self.name}", cfg.lora_rank)
        # after peft, which freezes everything but its own adapters
        self.rows.rows.requires_grad_(cfg.method == "ti" or cfg.lora_train_token)
        if cfg.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
            kwargs = {"use_reentrant": False}  # LoRA inside a block gets gradients either way
            if hasattr(te, "activation_checkpointing_enable"):  # transformers >= 5
                te.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                te.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        pipe.vae.eval()
        pipe.unet.train()
        te.train()
        self._cache_latents(pipe.vae)
        self._tokenize_prompts()
        model = LearnModel(te, pipe.unet)
        scale = cfg.batch_size * cfg.grad_accum * acc.num_processes if cfg.scale_lr else 1
        rows_lr = (cfg.lr if cfg.method == "ti" else cfg.token_lr) * scale
        groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and "rows" not in n],
                   "lr": cfg.lr * scale},
                  {"params": [self.rows.rows] if self.rows.rows.requires_grad else [], "lr": rows_lr}]
        groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), weight_decay=cfg.adam_weight_decay, eps=1e-8)
        from diffusers.optimization import get_scheduler

        scheduler = get_scheduler(cfg.lr_scheduler, optimizer,
                                  num_warmup_steps=cfg.lr_warmup_steps * acc.num_processes,
                                  num_training_steps=cfg.steps * acc.num_processes)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        # contrast's forwards skip the DDP wrapper (kept: autocast): DDP expects one forward per backward, and
        # a capture stops the UNet mid-forward. Its gradient still reaches the same parameters, whose DDP
        # hooks fire once per backward with the sum of both paths, so processes average it as the main loss's
        self.contrast_model = acc.unwrap_model(self.model)
        self.trainable = [p for g in optimizer.param_groups for p in g["params"]]
        if self.contrast is not None:  # the token's presence on its photos at its start (the init word's)
            with torch.no_grad():
                pos, _ = self.contrast_presence(self.contrast_batch(0, cfg.batch_size)).chunk(2)
            self.contrast_start = max(float(pos.mean()), 1e-6)

    def __exit__(self, *exc) -> None:
        self._teardown()

    def _teardown(self) -> None:
        if self.adapter is not None:
            self.adapter.remove()
            self.adapter = None
        if getattr(self, "other_lora", False):
            self.pipe.unet.enable_lora()
        if not self.copy_text_encoder and hasattr(self, "base_embedding"):
            self.pipe.text_encoder.set_input_embeddings(self.base_embedding)
        self._flags.restore()

    # ------------------------------------------------------------------ data

    @torch.no_grad()
    def _cache_latents(self, vae) -> None:
        """Posterior mean and std of every photo and its mirror image: ``(N, 2, 4, h, w)`` each."""
        self.scaling = vae.config.scaling_factor
        self.mean, self.std = encode_pairs(vae, self.photos.pixels)
        if self.photos.masks is not None:  # (N, R, R) -> (N, 2, h, w): each latent cell's object share, and mirrored
            small = F.interpolate(self.photos.masks.masks[:, None], size=self.mean.shape[-2:], mode="area")[:, 0]
            self.mask_lat = torch.stack([small, small.flip(-1)], dim=1)
            self.guided = self.photos.masks.guided
        if self.class_photos is not None:
            self.class_mean, self.class_std = encode_pairs(vae, self.class_photos.pixels)

    def _ids(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts, padding="max_length", truncation=True,
                              max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids

    def _tokenize_prompts(self) -> None:
        """Instance prompts (TI: ``templates``, else the diffusers set; LoRA: one) and the class prompt."""
        cfg, text = self.cfg, " ".join(self.subs)
        templates = (cfg.templates or TI_TEMPLATES) if cfg.method == "ti" else [cfg.lora_prompt]
        self.prompt_ids = self._ids([fill_template(t, text, cfg.class_word) for t in templates])  # (P, T)
        self.class_ids = self._ids([f"a photo of a {cfg.class_word}"])  # (1, T)
        if self.find_spec is not None:  # the prompt find reads the concept with, and the token's positions in it
            self.find_ids = self._ids([fill_template(cfg.find_prompt, text, cfg.class_word)])  # (1, T)
            subs = set(self.tokenizer.convert_tokens_to_ids(self.subs))
            self.find_positions = [i for i, t in enumerate(self.find_ids[0].tolist()) if t in subs]

    def batch(self, first: int) -> Batch:
        """Micro-batch of samples ``first .. first+B-1``; every draw is seeded by the sample index."""
        cfg, n = self.cfg, len(self.photos)
        ids, lat, noise, ts, masks = [], [], [], [], []
        T = self.noise_scheduler.config.num_train_timesteps
        for s in range(first, first + cfg.batch_size):
            g = sample_generator(cfg.seed, s)
            i = photo_index(cfg.seed, s, n)
            flip = int(torch.rand((), generator=g) < cfg.flip_p)
            if self.masked:
                masks.append(self.mask_lat[i, flip])
            ids.append(self.prompt_ids[int(torch.randint(len(self.prompt_ids), (), generator=g))])
            lat.append(self.mean[i, flip] + self.std[i, flip] * torch.randn(self.mean.shape[2:], generator=g))
            noise.append(torch.randn(self.mean.shape[2:], generator=g))
            ts.append(torch.randint(T, (), generator=g))
        if self.prior:
            for s in range(first, first + cfg.batch_size):
                g = sample_generator(cfg.seed, s, stream=2)
                j = int(torch.randint(len(self.class_photos), (), generator=g))
                flip = int(torch.rand((), generator=g) < cfg.flip_p)
                ids.append(self.class_ids[0])
                lat.append(self.class_mean[j, flip] + self.class_std[j, flip] * torch.randn(self.class_mean.shape[2:], generator=g))
                noise.append(torch.randn(self.class_mean.shape[2:], generator=g))
                ts.append(torch.randint(T, (), generator=g))
                if self.masked:
                    masks.append(torch.ones(self.class_mean.shape[-2:]))
        dev = self.acc.device
        return Batch(torch.stack(ids).to(dev), (torch.stack(lat) * self.scaling).to(dev),
                     torch.stack(noise).to(dev), torch.stack(ts).to(dev),
                     torch.stack(masks).to(dev) if masks else None)

    # ------------------------------------------------------------------ training

    def loss(self, b: Batch) -> torch.Tensor:
        """Diffusion loss of one micro-batch (plus the weighted prior loss)."""
        sched = self.noise_scheduler
        noisy = sched.add_noise(b.latents, b.noise, b.timesteps)
        if sched.config.prediction_type == "v_prediction":
            target = sched.get_velocity(b.latents, b.noise, b.timesteps)
        else:
            target = b.noise
        pred = self.model(b.input_ids, noisy, b.timesteps).float()
        if not self.prior:
            return _mse(pred, target.float(), b.masks)
        pred, prior_pred = pred.chunk(2)  # (2B, ...) -> instance, class
        target, prior_target = target.float().chunk(2)
        masks = b.masks.chunk(2)[0] if b.masks is not None else None
        return _mse(pred, target, masks) + self.cfg.prior_weight * F.mse_loss(prior_pred, prior_target)

    def contrast_batch(self, first: int, n: int | None = None) -> Batch:
        """``n`` photos then ``n`` class images (default ``contrast_pairs``, else the batch size),
        noised to find's timestep; seeded by the sample index. Without contrast (the attention loss
        alone) the photos only, the same ones. The photos carry their masks when they have some."""
        cfg = self.cfg
        n = n or cfg.contrast_pairs or cfg.batch_size
        lat, noise = ([], []), ([], [])  # (photos, class images)
        masks, guided = [], []
        for s in range(first, first + n):
            g = sample_generator(cfg.seed, s, stream=3)
            i = photo_index(cfg.seed, s, len(self.photos))
            picks = [(self.mean, self.std, i)]
            if self.contrast is not None:
                picks.append((self.class_mean, self.class_std, self.class_pick(g)))
            for side, (mean, std, k) in enumerate(picks):
                flip = int(torch.rand((), generator=g) < cfg.flip_p)
                if side == 0 and self.attention:
                    masks.append(self.mask_lat[i, flip])
                    guided.append(bool(self.guided[i]))
                lat[side].append(mean[k, flip] + std[k, flip] * torch.randn(mean.shape[2:], generator=g))
                noise[side].append(torch.randn(mean.shape[2:], generator=g))
        b = self.find_batch(lat[0] + lat[1], noise[0] + noise[1])
        if masks:
            b.masks = torch.stack(masks).to(b.latents.device)  # (n, h, w): the photos only
            b.guided = torch.tensor(guided)
        return b

    def find_batch(self, lat: list[torch.Tensor], noise: list[torch.Tensor]) -> Batch:
        """Unscaled latents and their noise as a batch read the way find reads: its prompt, its timestep."""
        dev, n = self.acc.device, len(lat)
        return Batch(self.find_ids.expand(n, -1).to(dev), (torch.stack(lat) * self.scaling).to(dev),
                     torch.stack(noise).to(dev), torch.full((n,), self.find_spec.timestep, dtype=torch.long, device=dev))

    def class_pick(self, g: torch.Generator) -> int:
        """A class image for contrast: any, or one of the hardest once they are mined."""
        if self.hardest is None:
            return int(torch.randint(len(self.class_photos), (), generator=g))
        return int(self.hardest[int(torch.randint(len(self.hardest), (), generator=g))])

    def contrast_presence(self, b: Batch) -> torch.Tensor:
        """``(n,)`` the token's presence in each sample of ``b``, read as ``find`` reads it: the peak of
        its cross-attention map over find's blocks, at find's timestep, with find's prompt."""
        return t2m.presence(self.token_maps(b))

    def token_maps(self, b: Batch) -> torch.Tensor:
        """``(n, h, w)`` the token's cross-attention map in each sample of ``b`` on find's finest grid,
        read as ``find`` reads it (its blocks, timestep and prompt; not normalised)."""
        from ..capture import AttentionCapture

        names = [m for m, _ in self.find_spec.cross]
        noisy = self.noise_scheduler.add_noise(b.latents, b.noise, b.timesteps)
        with AttentionCapture(self.pipe.unet, cross=names) as cap:  # the forward stops after the last one
            cap.run(lambda: self.contrast_model(b.input_ids, noisy, b.timesteps))
        h, w = noisy.shape[-2:]
        grids = [(h // f, w // f) for _, f in self.find_spec.cross]
        return t2m.cross_map([cap.cross(m) for m in names], grids, t2m.finest_grid(grids), self.find_positions)  # (n, h, w)

    def attention_loss(self, maps: torch.Tensor, b: Batch) -> torch.Tensor:
        """How far the token's min-max normalised map (what find thresholds) is from each guided
        photo's mask on the same grid: mean squared error over the guided photos (SLiMe, OVAM)."""
        keep = b.guided.to(maps.device)
        if not bool(keep.any()):
            return maps.sum() * 0.0
        photos = maps[: len(keep)][keep]  # (g, h, w)
        target = F.interpolate(b.masks[keep][:, None].float(), size=photos.shape[-2:], mode="area")[:, 0]
        return F.mse_loss(t2m.minmax(photos), target)

    @torch.no_grad()
    def mine_hardest(self) -> torch.Tensor:
        """Indices of the ``contrast_hardest`` class images on which the token is now most present
        (read as contrast reads it; each image's noise is seeded by its index, unflipped)."""
        cfg, n = self.cfg, len(self.class_photos)
        scores = []
        for first in range(0, n, 2 * cfg.batch_size):
            lat, noise = [], []
            for k in range(first, min(n, first + 2 * cfg.batch_size)):
                g = sample_generator(cfg.seed, k, stream=4)
                lat.append(self.class_mean[k, 0] + self.class_std[k, 0] * torch.randn(self.class_mean.shape[2:], generator=g))
                noise.append(torch.randn(self.class_mean.shape[2:], generator=g))
            scores.append(self.contrast_presence(self.find_batch(lat, noise)).float().cpu())
        scores = torch.cat(scores)
        return scores.argsort(descending=True, stable=True)[: cfg.contrast_hardest]

    def contrast_loss(self, b: Batch) -> torch.Tensor:
        """How far (log) the token's presence on class images exceeds ``contrast_ratio`` x its start
        presence on the photos, plus how far its presence on the photos fell below that start. A
        token that lights up every object of its class is what fails on distractor scenes; the
        second term keeps it from the easy way out, drawing no attention anywhere (measured)."""
        return self._contrast_term(self.contrast_presence(b))

    def _contrast_term(self, presence: torch.Tensor) -> torch.Tensor:
        """contrast_loss from the ``(2n,)`` presences of a contrast batch (photos, then class images)."""
        pos, neg = presence.clamp_min(1e-6).chunk(2)
        start = self.contrast_start
        return (F.relu(neg.log() - math.log(self.cfg.contrast_ratio * start)).mean()
                + F.relu(math.log(start) - pos.log()).mean())

    def train_step(self, step: int) -> float:
        """One optimizer step (``grad_accum`` micro-batches); returns the mean loss."""
        cfg, acc = self.cfg, self.acc
        if self.contrast is not None and cfg.contrast_hardest and step % cfg.contrast_mine_every == 0:
            self.hardest = self.mine_hardest()
        losses = []
        for micro in range(cfg.grad_accum):
            first = ((step * cfg.grad_accum + micro) * acc.num_processes + acc.process_index) * cfg.batch_size
            b = self.batch(first)
            with acc.accumulate(self.model):
                loss = self.loss(b)
                if self.contrast is not None or self.attention:  # one find-style forward serves both
                    cb = self.contrast_batch(first)
                    maps = self.token_maps(cb)  # (n photos [+ n class images], h, w)
                    if self.contrast is not None:
                        loss = loss + cfg.contrast_weight * self._contrast_term(t2m.presence(maps))
                    if self.attention:
                        loss = loss + cfg.attention_weight * self.attention_loss(maps, cb)
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm:
                    acc.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        mean = torch.stack(losses).mean()
        return float(acc.gather(mean[None]).mean()) if acc.num_processes > 1 else float(mean)

    # ------------------------------------------------------------------ state

    def named_trainable(self) -> dict[str, torch.Tensor]:
        """Trainable tensors by name (stable across runs of the same concept)."""
        model = self.acc.unwrap_model(self.model)
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this step ended."""
        scaler = self.acc.scaler
        return {
            "trainable": {n: p.detach() for n, p in self.named_trainable().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            "hardest": self.hardest,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        params = self.named_trainable()
        missing = set(params) ^ set(state["trainable"])
        if missing:  # a checkpoint of another run, or edited
            raise ConceptError(f"the checkpoint's tensors do not match the model: {sorted(missing)[:3]}",
                               hint="start again with --force")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["trainable"][n])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.acc.scaler is not None:
            self.acc.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.hardest = state.get("hardest")

    def result(self) -> dict[str, Any]:
        """The learned tensors: token rows, and the LoRA state dicts with their configs."""
        out: dict[str, Any] = {"rows": self.rows.rows.detach().float().cpu().clone()}
        if self.adapter is not None:
            out["unet_lora"] = {k: v.detach().float().cpu().clone() for k, v in self.adapter.state_dict().items()}
            out["unet_meta"] = self.adapter.metadata()
            if self.cfg.lora_train_text_encoder:
                name = f"personaseg-{self.name}"
                out["te_lora"] = text_encoder_lora_state_dict(self.text_encoder, name)
                out["te_meta"] = self.text_encoder.peft_config[name].to_dict()
        return out
