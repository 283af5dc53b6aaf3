"""``learn``: a few photos and a token in, a :class:`Concept` in the store out.

    >>> from personaseg.concepts import learn, LearnConfig
    >>> c = learn("photos/", "<mymug>", LearnConfig(class_word="mug"), model="toy")
    >>> c.path   # <store>/mymug/ with concept.json and learned_embeds.safetensors

The loop saves a checkpoint every ``checkpoint_every`` steps (atomically) and on Ctrl-C (after the
step in progress); ``resume=True`` continues from it and ends exactly where an uninterrupted run
with the same seed ends, because every random draw is seeded by its sample index and the
optimizer, scheduler, scaler and RNG states are restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from .. import __version__
from ..config import to_dict
from ..errors import ConceptError, ConfigError, InputError
from ..io import save_png_atomic
from ..runtime import make_accelerator
from . import calibrate
from .checkpoint import CHECKPOINT_FILE
from .concept import Concept
from .config import DEFAULT_RESOLUTION, LearnConfig, card_defaults, fill_template
from .data import LearnWarning, PhotoSet, load_photos
from .lora import check_text_encoder_lora, save_lora
from .loop import LearnInterrupted, run_steps
from .masks import Guidance
from .progress import StepCallback
from .resume import previous_run, restore, resume_command, resume_model, run_config
from .store import ConceptStore, now
from .textual_inversion import EMBEDS_FILE, parse_token, save_embeds
from .trainer import Trainer

MASKS_DIR = "masks"  # a concept's folder: the masks it was learned with (given, or drawn from a box or click)

__all__ = ["LearnInterrupted", "learn", "make_accelerator", "weight_dtype"]


def learn(
    photos: str | Path | list[Path],
    token: str,
    config: LearnConfig | None = None,
    *,
    model: str | None = None,
    pipe=None,
    concepts_dir: Path | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool | StepCallback = True,
    masks: str | Path | dict | None = None,
    boxes: dict | list[str] | None = None,
    clicks: dict | list[str] | None = None,
) -> Concept:
    """Learn ``token`` (``"<mymug>"``) from ``photos`` and store it as a concept.

    ``model``: hub id, folder, ``.safetensors`` file or ``"toy"`` (loaded for training), or
    ``pipe``: a loaded ``StableDiffusionPipeline`` to train on; it is trained in place and restored
    on return (adapter and token rows removed, flags reset, tokenizer untouched). ``force`` replaces
    an existing concept or unfinished run; ``resume`` continues an interrupted run (``config=None``
    takes the interrupted run's settings). ``progress``: a bar on stderr, or a function called after
    every step with ``(step, total, loss)`` (the mean of recent losses); when it returns True the run
    stops after that step and saves a checkpoint, as Ctrl-C does (:class:`LearnInterrupted`).

    Where the object is (optional, see :mod:`personaseg.concepts.masks`): ``masks`` a folder of
    ``<photo stem>.png`` or a dict photo -> mask (a ``<stem>.mask.png`` beside a photo is read too);
    ``boxes`` / ``clicks`` photo -> ``(x0, y0, x1, y1)`` / ``(x, y)`` (or ``"PHOTO=..."`` strings),
    made into masks by the model (the class word's region) and saved in the concept's ``masks/``.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    name, token = parse_token(token)  # a name that cannot be a folder fails here, before any model loads
    store = ConceptStore(concepts_dir)
    # one learn of a token at a time (its checkpoint and its concept folder are its own); under
    # `accelerate launch` the main process holds the lock for all
    with store.lock(name) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
        return _learn(photos, name, token, store, config, model=model, pipe=pipe, force=force, resume=resume,
                      progress=progress, concepts_dir=concepts_dir, pointers=(masks, boxes, clicks),
                      started=(t_start, cpu_start))


def _learn(photos, name: str, token: str, store: ConceptStore, config: LearnConfig | None, *, model, pipe,
           force: bool, resume: bool, progress: bool | StepCallback, concepts_dir: Path | None,
           pointers: tuple, started: tuple[float, float]) -> Concept:
    ckpt = store.run_dir(name) / CHECKPOINT_FILE
    state = previous_run(ckpt, token, force, resume)
    force = force or bool(state and state.get("force"))
    if store.exists(name) and not force:
        raise ConceptError(
            f"concept {token} already exists in {store.root}",
            hint="use --force to replace it, or choose another --token",
        )
    owns_pipe = pipe is None
    if owns_pipe and state is not None:
        model = resume_model(model, state, token)
    cfg = _settings(config, state, model if owns_pipe else None, owns_pipe)
    photo_set, guidance = _read_inputs(photos, pointers, cfg, state, token)
    acc = make_accelerator(cfg.mixed_precision, cfg.grad_accum)
    if owns_pipe:
        pipe, base_model, card = _load_pipeline(model, cfg, acc)
    else:
        card, base_model = None, str(getattr(pipe, "name_or_path", None) or model or "unknown")
        _check_given_pipe(pipe, cfg)
    cfg, photo_set, derived = _guide(photos, photo_set, guidance, pipe, card, cfg)
    mask_record = photo_set.masks.record() if photo_set.masks is not None else None
    _check_same_run(state, token, mask_record, None if owns_pipe else base_model)
    attend = photo_set.masks is not None and bool(cfg.attention_weight)
    guided = photo_set.masks is not None
    stops = cfg.guided_stop_when_stable if guided and cfg.guided_stop_when_stable is not None else cfg.stop_when_stable
    reads_maps = cfg.contrast_weight or attend or stops  # a forward read as find reads
    contrast = calibrate.find_spec(pipe, card) if reads_maps else None  # refuses before class images
    class_set = _class_set(pipe, cfg, store, base_model, progress and acc.is_main_process)
    copy_te = not owns_pipe and cfg.method == "lora" and cfg.lora_train_text_encoder
    run = {"token": token, "force": force, "photos": photo_set.hashes, "config": to_dict(cfg),
           "base_model": base_model, "train_seconds": float(state.get("train_seconds", 0.0)) if state else 0.0,
           "resume_command": resume_command(photos, token, base_model, concepts_dir),
           "masks": mask_record}
    if guided and cfg.guided_steps:  # guidance learns in fewer steps (the config keeps both)
        cfg = dataclasses.replace(cfg, steps=cfg.guided_steps)
    if stops != cfg.stop_when_stable:  # and may stop by another rule (the config keeps both)
        cfg = dataclasses.replace(cfg, stop_when_stable=stops)
    with Trainer(pipe, token, cfg, acc, photo_set, class_set, copy_text_encoder=copy_te, contrast=contrast) as trainer:
        start, losses = 0, []
        if state is not None:
            restore(trainer, state, ckpt)
            start, losses = int(state["step"]), list(state["losses"])
        losses = run_steps(trainer, start, losses, ckpt, run, progress)
        result = trainer.result()
        width = trainer.base_embedding.weight.shape[-1]
    if acc.is_main_process:
        meta = _meta(name, token, cfg, base_model, width, pipe, photo_set, losses, run["train_seconds"])
        if mask_record is not None:
            meta["masks"] = mask_record
        if cfg.stop_when_stable:
            meta["steps_run"] = run.get("stopped_at", cfg.steps)
            meta["map_changes"] = run.get("map_changes", [])
        _save(store, name, force, meta, result, pipe, card, cfg, photo_set, guidance, derived, started)
        shutil.rmtree(store.run_dir(name), ignore_errors=True)
    acc.wait_for_everyone()
    return store.get(name)


def _settings(config: LearnConfig | None, state: dict | None, model: str | None, owns_pipe: bool) -> LearnConfig:
    """The run's settings: user < model card < method defaults, read before the model loads
    (grad_accum picks the accelerator); on resume, the interrupted run's."""
    cfg = run_config(config, state)
    if owns_pipe:
        from ..models import read_card

        cfg = card_defaults(cfg, read_card(model))
    cfg = cfg.resolved()
    if cfg.method == "lora" and cfg.lora_train_text_encoder:
        check_text_encoder_lora()
    return cfg


def _read_inputs(photos, pointers: tuple, cfg: LearnConfig, state: dict | None, token: str) -> tuple[PhotoSet, Guidance]:
    """The photos and what points at the object in them, checked before the model loads."""
    masks, boxes, clicks = pointers
    photo_set = load_photos(photos, cfg.resolution or DEFAULT_RESOLUTION)  # bad photos fail before the model loads
    guidance = Guidance(photo_set.paths, masks, boxes, clicks)  # so do bad masks, boxes and clicks
    if guidance.pointers and not cfg.class_word:
        raise InputError("a --box or --click is read with the class word's map, and no --class-word was given",
                         hint="add --class-word (what the object is, e.g. mug)")
    if state is not None and state["photos"] != photo_set.hashes:
        raise ConceptError(
            f"the photos differ from those of the interrupted run of {token}",
            hint="resume with the same photos, or start over with --force",
        )
    return photo_set, guidance


def _guide(photos, photo_set: PhotoSet, guidance: Guidance, pipe, card,
           cfg: LearnConfig) -> tuple[LearnConfig, PhotoSet, dict]:
    """The photos at the model's resolution with their masks (boxes and clicks drawn by the model),
    and the guidance defaults when a photo has one."""
    if cfg.resolution is None:
        cfg = dataclasses.replace(cfg, resolution=DEFAULT_RESOLUTION)
    if photo_set.pixels.shape[-1] != cfg.resolution:  # the model card chose another size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LearnWarning)  # the skipped files were reported above
            photo_set = load_photos(photos, cfg.resolution)
    derived = guidance.derive(calibrate.class_finder(pipe, card, cfg.class_word)) if guidance.pointers else {}
    photo_set.masks = guidance.photo_masks(cfg.resolution)
    if photo_set.masks is not None:
        cfg = _guidance_defaults(cfg)
    return cfg, photo_set, derived


def _check_same_run(state: dict | None, token: str, mask_record, given_model: str | None) -> None:
    """A resumed run must have the interrupted one's masks, and (a pipe given) its model's name."""
    if state is not None and state.get("masks") != mask_record:
        raise ConceptError(
            f"the masks differ from those of the interrupted run of {token}",
            hint="resume with the same masks, boxes and clicks, or start over with --force",
        )
    if state is not None and given_model is not None and state.get("base_model") != given_model:
        raise ConceptError(
            f"the interrupted run of {token} learned on {state.get('base_model')}, not {given_model}",
            hint="resume it on the same model, or start over with --force",
        )


def _class_set(pipe, cfg: LearnConfig, store: ConceptStore, base_model: str, progress) -> PhotoSet | None:
    """The images TI contrast stays off and the LoRA prior learns from (None when neither runs)."""
    if cfg.contrast_weight and cfg.contrast_images:
        return load_photos(cfg.contrast_images.replace("{class}", cfg.class_word or ""), cfg.resolution,
                           what="contrast images")
    if (cfg.method == "lora" and cfg.prior_preservation) or cfg.contrast_weight:
        from .prior import class_photos

        return class_photos(pipe, cfg, store.root, base_model, progress)
    return None


def _save(store: ConceptStore, name: str, force: bool, meta: dict, result: dict, pipe, card, cfg: LearnConfig,
          photo_set: PhotoSet, guidance: Guidance, derived: dict, started: tuple[float, float]) -> None:
    """Write the concept (embeddings, LoRA, masks, concept.json) and calibrate its presence, in one rename."""
    t_start, cpu_start = started
    token = meta["token"]
    with store.writing(name, force=force) as tmp:
        save_embeds(tmp / EMBEDS_FILE, token, result["rows"])
        for i, mask in sorted(guidance.masks.items()):  # what guided it, for the user to look at
            save_png_atomic(tmp / MASKS_DIR / f"{photo_set.paths[i].stem}.png", mask.astype("uint8") * 255)
        if derived:
            meta["derived_masks"] = [f"{MASKS_DIR}/{photo_set.paths[i].stem}.png" for i in sorted(derived)]
        if cfg.method == "lora":
            save_lora(tmp, result["unet_lora"], result["unet_meta"], result.get("te_lora"), result.get("te_meta"))
        store.write_meta(tmp, meta)
        if card is not None and cfg.measure_presence:  # a pipeline we loaded: we may add the token
            fields = calibrate.presence_on_photos(pipe, card, tmp, photo_set.paths)
            meta.update(fields)
            own = fields.get("token_presence_ref", fields["presence_ref"])  # the token's own map, as the class word's
            calibrate.warn_if_weak(token, cfg, own, fields["class_presence_ref"])
        meta["learn_seconds"] = round(time.perf_counter() - t_start, 3)  # the whole call: loading, training, presence
        meta["learn_cpu_seconds"] = round(time.process_time() - cpu_start, 3)  # the same in CPU time (steadier on a shared machine)
        store.write_meta(tmp, meta)


def _guidance_defaults(cfg: LearnConfig) -> LearnConfig:
    """The guidance settings neither the user nor the model card set: attention loss 1.0, masked loss on."""
    fills = {k: v for k, v in (("attention_weight", 1.0), ("masked_loss", True)) if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **fills) if fills else cfg


def weight_dtype(acc) -> torch.dtype:
    """dtype of the frozen weights: the AMP dtype when autocast is on, else fp32."""
    if not acc.native_amp:
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(acc.mixed_precision), torch.float32)


def _load_pipeline(model: str | None, cfg: LearnConfig, acc):
    from ..models import canonical_model_id, load_pipeline

    pipe, card = load_pipeline(model, device=acc.device, dtype=weight_dtype(acc))
    return pipe, canonical_model_id(model), card


def _check_given_pipe(pipe, cfg: LearnConfig) -> None:
    half = pipe.unet.dtype in (torch.float16, torch.bfloat16)
    if half and cfg.mixed_precision == "no":
        raise ConfigError(
            f"the pipeline's weights are {str(pipe.unet.dtype).replace('torch.', '')}",
            hint="train with --mixed-precision fp16 or bf16 (trainable weights stay fp32), or load it in float32",
        )


def _meta(name: str, token: str, cfg: LearnConfig, base_model: str, width: int, pipe, photos: PhotoSet,
          losses: list[float], train_seconds: float) -> dict:
    """concept.json."""
    from .lora import LORA_FILE
    from .textual_inversion import sub_tokens

    files = {"embeddings": EMBEDS_FILE}
    if cfg.method == "lora":
        files["lora"] = LORA_FILE
    return {
        "format": 1,
        "name": name,
        "token": token,
        "tokens": sub_tokens(token, cfg.vectors),
        "method": cfg.method,
        "base_model": base_model,
        "base_model_path": str(getattr(pipe, "name_or_path", "") or "") or None,
        "width": int(width),
        "cross_attention_dim": int(pipe.unet.config.cross_attention_dim),
        "num_vectors": cfg.vectors,
        "class_word": cfg.class_word,
        "prompt_template": fill_template(cfg.find_prompt, "{}", cfg.class_word),
        "files": files,
        "config": to_dict(cfg),
        "photos": [{"file": p.name, "sha256": h} for p, h in zip(photos.paths, photos.hashes)],
        "steps": cfg.steps,
        "final_loss": sum(losses) / len(losses) if losses else None,
        "train_seconds": round(train_seconds, 3),  # the training loop (all resumed parts), not loading
        "steps_per_second": round(cfg.steps / train_seconds, 4) if train_seconds > 0 else None,
        "created": now(),
        "personaseg_version": __version__,
    }
