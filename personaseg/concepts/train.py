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
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import build_config, to_dict
from ..errors import ConceptError, ConfigError, InputError
from ..io import save_png_atomic
from ..runtime import make_accelerator
from .checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from .concept import Concept
from .config import DEFAULT_RESOLUTION, LearnConfig, card_defaults, fill_template
from .data import LearnWarning, PhotoSet, load_photos
from .lora import check_text_encoder_lora, save_lora
from .masks import Guidance
from .progress import StepCallback, learn_progress
from .store import ConceptStore, now
from .textual_inversion import EMBEDS_FILE, parse_token, save_embeds
from .trainer import ContrastSpec, Trainer

MASKS_DIR = "masks"  # a concept's folder: the masks it was learned with (given, or drawn from a box or click)
LOSS_WINDOW = 50  # final_loss = mean loss of the last this many steps
# A learned token whose presence on its own photos is below this share of its class word's is
# "dead": on the toy benchmarks (seeds 202 and 303, 11 tokens) working TI tokens scored 2.5-5.4x
# their class word, the one that failed (mIoU 0.6, a plain red triangle started from "triangle") 0.10x.
WEAK_TOKEN_RATIO = 0.5


class LearnInterrupted(ConceptError):
    """Training stopped by Ctrl-C; the message says where the checkpoint is and how to resume."""

    exit_code = 130


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
    masks, boxes, clicks = pointers
    t_start, cpu_start = started
    ckpt = store.run_dir(name) / CHECKPOINT_FILE
    state = _previous_run(ckpt, token, force, resume)
    force = force or bool(state and state.get("force"))
    if store.exists(name) and not force:
        raise ConceptError(
            f"concept {token} already exists in {store.root}",
            hint="use --force to replace it, or choose another --token",
        )
    owns_pipe, card = pipe is None, None
    if owns_pipe and state is not None:
        model = _resume_model(model, state, token)
    cfg = _config(config, state)
    if owns_pipe:  # user < card < method defaults, read before the model loads (grad_accum picks the accelerator)
        from ..models import read_card

        cfg = card_defaults(cfg, read_card(model))
    cfg = cfg.resolved()
    if cfg.method == "lora" and cfg.lora_train_text_encoder:
        check_text_encoder_lora()
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
    acc = make_accelerator(cfg.mixed_precision, cfg.grad_accum)
    if owns_pipe:
        pipe, base_model, card = _load_pipeline(model, cfg, acc)
    else:
        base_model = str(getattr(pipe, "name_or_path", None) or model or "unknown")
        _check_given_pipe(pipe, cfg)
    if cfg.resolution is None:
        cfg = dataclasses.replace(cfg, resolution=DEFAULT_RESOLUTION)
    if photo_set.pixels.shape[-1] != cfg.resolution:  # the model card chose another size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LearnWarning)  # the skipped files were reported above
            photo_set = load_photos(photos, cfg.resolution)
    derived = guidance.derive(_class_finder(pipe, card, cfg.class_word)) if guidance.pointers else {}
    photo_set.masks = guidance.photo_masks(cfg.resolution)
    if photo_set.masks is not None:
        cfg = _guidance_defaults(cfg)
    mask_record = photo_set.masks.record() if photo_set.masks is not None else None
    if state is not None and state.get("masks") != mask_record:
        raise ConceptError(
            f"the masks differ from those of the interrupted run of {token}",
            hint="resume with the same masks, boxes and clicks, or start over with --force",
        )
    if state is not None and not owns_pipe and state.get("base_model") != base_model:  # a pipe given: its name
        raise ConceptError(
            f"the interrupted run of {token} learned on {state.get('base_model')}, not {base_model}",
            hint="resume it on the same model, or start over with --force",
        )
    attend = photo_set.masks is not None and bool(cfg.attention_weight)
    contrast = _contrast_spec(pipe, card, acc) if cfg.contrast_weight or attend else None  # refuses before class images
    class_set = None
    if cfg.contrast_weight and cfg.contrast_images:
        class_set = load_photos(cfg.contrast_images.replace("{class}", cfg.class_word or ""), cfg.resolution,
                                what="contrast images")
    elif (cfg.method == "lora" and cfg.prior_preservation) or cfg.contrast_weight:
        from .prior import class_photos

        class_set = class_photos(pipe, cfg, store.root, base_model, progress and acc.is_main_process)
    copy_te = not owns_pipe and cfg.method == "lora" and cfg.lora_train_text_encoder
    run = {"token": token, "force": force, "photos": photo_set.hashes, "config": to_dict(cfg),
           "base_model": base_model, "train_seconds": float(state.get("train_seconds", 0.0)) if state else 0.0,
           "resume_command": _command("learn", *_photo_args(photos), "--token", token, *_model_args(base_model),
                                      *_store_args(concepts_dir), "--resume"),
           "masks": mask_record}
    if photo_set.masks is not None and cfg.guided_steps:  # guidance learns in fewer steps (the config keeps both)
        cfg = dataclasses.replace(cfg, steps=cfg.guided_steps)
    with Trainer(pipe, token, cfg, acc, photo_set, class_set, copy_text_encoder=copy_te, contrast=contrast) as trainer:
        start, losses = 0, []
        if state is not None:
            _resume(trainer, state, ckpt)
            start, losses = int(state["step"]), list(state["losses"])
        losses = _loop(trainer, start, losses, ckpt, run, progress)
        result = trainer.result()
        width = trainer.base_embedding.weight.shape[-1]
    if acc.is_main_process:
        meta = _meta(name, token, cfg, base_model, width, pipe, photo_set, losses, run["train_seconds"])
        if mask_record is not None:
            meta["masks"] = mask_record
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
                ref, at, class_ref = presence_on_photos(pipe, card, tmp, photo_set.paths)
                meta.update(presence_ref=ref, presence_ref_at=at, class_presence_ref=class_ref)
                _warn_if_weak(token, cfg, ref, class_ref)
            meta["learn_seconds"] = round(time.perf_counter() - t_start, 3)  # the whole call: loading, training, presence
            meta["learn_cpu_seconds"] = round(time.process_time() - cpu_start, 3)  # the same in CPU time (steadier on a shared machine)
            store.write_meta(tmp, meta)
        shutil.rmtree(store.run_dir(name), ignore_errors=True)
    acc.wait_for_everyone()
    return store.get(name)


def _class_finder(pipe, card, class_word: str):
    """``path -> bool (H, W)``: the class word's mask on a photo, as ``find`` draws it with the
    model's defaults (every region), from which a box or click picks the object."""
    from ..config import FindConfig
    from ..segmenter import Segmenter

    seg = Segmenter(pipe, card, FindConfig(keep="all"))

    def find_class(path: Path):
        seg.set_image(path)
        return seg.find(class_word).mask

    find_class.class_word = class_word
    return find_class


def _guidance_defaults(cfg: LearnConfig) -> LearnConfig:
    """The guidance settings neither the user nor the model card set: attention loss 1.0, masked loss on."""
    fills = {k: v for k, v in (("attention_weight", 1.0), ("masked_loss", True)) if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **fills) if fills else cfg


def _previous_run(ckpt: Path, token: str, force: bool, resume: bool) -> dict | None:
    """The interrupted run to resume, or None; refuses to silently drop or reuse one."""
    if resume:
        if not ckpt.exists():
            raise ConceptError(
                f"no interrupted run of {token} to resume (looked for {ckpt})",
                hint="start it without --resume",
            )
        state = load_checkpoint(ckpt)
        if state.get("token") != token:
            raise ConceptError(f"checkpoint {ckpt} belongs to {state.get('token')}, not {token}")
        return state
    if ckpt.exists():
        if not force:
            raise ConceptError(
                f"an interrupted run of {token} exists ({ckpt})",
                hint="add --resume to continue it, or --force to start over",
            )
        shutil.rmtree(ckpt.parent, ignore_errors=True)
    return None


def _resume(trainer: Trainer, state: dict, ckpt: Path) -> None:
    """Put the interrupted run's state into ``trainer``; a checkpoint that does not fit is one line."""
    try:
        trainer.load_state_dict(state)
    except ConceptError as err:
        raise ConceptError(f"checkpoint {ckpt} does not fit this run ({err.message})", hint=err.hint) from None
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        raise ConceptError(
            f"checkpoint {ckpt} does not fit this run ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]})",
            hint="start again with --force",
        ) from None


def _resume_model(model: str | None, state: dict, token: str) -> str:
    """The model an interrupted run learned on: the checkpoint's, and a conflicting ``model`` refused."""
    from ..models import same_model

    saved = state.get("base_model")
    if model is None or saved is None:
        return model if saved is None else saved
    if not same_model(model, saved):
        raise ConceptError(
            f"the interrupted run of {token} learned on {saved}, not {model}",
            hint="resume without --model (the checkpoint names its model), or start over with --force",
        )
    return saved


def _command(*args: Any) -> str:
    """A personaseg command line that pastes into a shell as it is (every argument quoted as needed)."""
    import shlex

    return shlex.join(["personaseg", *(str(a) for a in args)])


def _photo_args(photos) -> list[str]:
    return [str(photos)] if isinstance(photos, (str, Path)) else [str(p) for p in photos]


def _model_args(base_model: str) -> list[str]:
    from ..models import DEFAULT_MODEL

    return [] if base_model == DEFAULT_MODEL else ["--model", base_model]


def _store_args(concepts_dir: Path | None) -> list[str]:
    return [] if concepts_dir is None else ["--concepts-dir", str(concepts_dir)]


def _config(config: LearnConfig | None, state: dict | None) -> LearnConfig:
    """The run's config as given (``None`` fields left to the model card and the method); on resume,
    the interrupted run's, which the given settings must match."""
    if state is None:
        return config or LearnConfig()
    saved = build_config(LearnConfig, state["config"], source="the checkpoint")
    if config is None:
        return saved
    cfg = config
    # a field left None is one the card and the method filled in the interrupted run: they fill it the same way
    diff = [k for k, v in to_dict(cfg).items()
            if k != "checkpoint_every" and v is not None and v != state["config"].get(k)]
    if diff:
        shown = ", ".join(f"{k} {state['config'].get(k)!r} -> {getattr(cfg, k)!r}" for k in diff[:3])
        raise ConceptError(
            f"the interrupted run used other settings ({shown})",
            hint="resume with the same settings (or none: they are taken from the checkpoint), "
            "or start over with --force",
        )
    return dataclasses.replace(saved, checkpoint_every=cfg.checkpoint_every)


def weight_dtype(acc) -> torch.dtype:
    """dtype of the frozen weights: the AMP dtype when autocast is on, else fp32."""
    if not acc.native_amp:
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(acc.mixed_precision), torch.float32)


def _load_pipeline(model: str | None, cfg: LearnConfig, acc):
    from ..models import canonical_model_id, load_pipeline

    pipe, card = load_pipeline(model, device=acc.device, dtype=weight_dtype(acc))
    return pipe, canonical_model_id(model), card


def presence_on_photos(pipe, card, folder: Path, photos: list[Path]) -> tuple[float, dict[str, Any], float | None]:
    """Mean presence score of the concept in ``folder`` on its own photos, with the model's find
    defaults: what ``FindConfig.min_relative_presence`` compares a new image's presence with;
    the settings it was read with (:meth:`Segmenter.presence_settings`); and the class word's
    mean presence on the same photos (None without a class word), to tell a dead token."""
    from ..config import FindConfig
    from ..segmenter import Segmenter
    from .concept import Concept

    concept = Concept.from_folder(folder)
    # presence is read before the refinement (skip it: the UNet can stop after the cross blocks) and
    # from the token's own map, whatever outline the card sets
    seg = Segmenter(pipe, card, FindConfig(refine=False, outline="token"))
    seg.load_concept(concept)
    values, class_values = [], []
    for path in photos:
        seg.set_image(path)
        result = seg.find(concept.token)
        values.append(result.presence)
        if concept.class_word:
            class_values.append(seg.find(concept.class_word).presence)
    class_ref = float(sum(class_values) / len(class_values)) if class_values else None
    return float(sum(values) / len(values)), seg.presence_settings(result.prompt), class_ref


def _contrast_spec(pipe, card, acc) -> ContrastSpec:
    """The blocks and timestep ``find`` reads this model with (its card's, else the defaults)."""
    from ..config import FindConfig
    from ..segmenter import Segmenter

    seg = Segmenter(pipe, card, FindConfig(refine=False))
    return ContrastSpec(seg.layer_map.cross_modules_with_factor(pipe.unet), seg.config.timestep)


def _warn_if_weak(token: str, cfg: LearnConfig, ref: float, class_ref: float | None) -> None:
    """Warn when the learned token draws far less attention on its photos than its class word."""
    if class_ref is None or class_ref <= 0 or ref >= WEAK_TOKEN_RATIO * class_ref:
        return
    warnings.warn(
        f"{token} barely draws attention on its own photos (presence {ref:.3f} vs {class_ref:.3f} for the class "
        f"word {cfg.class_word!r}): finds will miss it; learn it again from another word the model finds on "
        "these photos (--init-word, or init_word in a recipe)",
        LearnWarning, stacklevel=3,
    )


def _check_given_pipe(pipe, cfg: LearnConfig) -> None:
    half = pipe.unet.dtype in (torch.float16, torch.bfloat16)
    if half and cfg.mixed_precision == "no":
        raise ConfigError(
            f"the pipeline's weights are {str(pipe.unet.dtype).replace('torch.', '')}",
            hint="train with --mixed-precision fp16 or bf16 (trainable weights stay fp32), or load it in float32",
        )


class _StopFlag:
    """First Ctrl-C: finish the step, save, stop. Second Ctrl-C: stop at once."""

    def __enter__(self) -> "_StopFlag":
        self.hit, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        print("\nstopping after this step to save a checkpoint (Ctrl-C again stops at once)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)

    def requested(self, acc) -> bool:
        if acc.num_processes == 1:
            return self.hit
        flag = torch.tensor([float(self.hit)], device=acc.device)
        return bool(acc.reduce(flag, reduction="sum").item() > 0)  # all processes stop together


def _loop(trainer: Trainer, start: int, losses: list[float], ckpt: Path, run: dict,
          progress: bool | StepCallback) -> list[float]:
    cfg, acc = trainer.cfg, trainer.acc
    saved_at = start if start else None
    base, t0 = run["train_seconds"], time.perf_counter()

    def save(step: int) -> None:
        if acc.is_main_process:
            run["train_seconds"] = base + time.perf_counter() - t0
            save_checkpoint(ckpt, {**trainer.state_dict(), **run, "step": step, "losses": losses})
        acc.wait_for_everyone()

    resume_cmd = run["resume_command"]
    shown = progress if acc.is_main_process else False
    with _StopFlag() as stop, learn_progress(run["token"], cfg.steps, start, shown) as bar:
        step = start
        try:
            for step in range(start, cfg.steps):
                loss = trainer.train_step(step)
                if not math.isfinite(loss):
                    raise ConceptError(
                        f"training diverged: loss is {loss} at step {step + 1}",
                        hint="lower --lr, or use --mixed-precision bf16 or no",
                    )
                losses = (losses + [loss])[-LOSS_WINDOW:]
                if bar.update(step + 1, sum(losses) / len(losses)):
                    stop.hit = True  # the caller's progress function asked to stop: as a first Ctrl-C
                if stop.requested(acc):
                    save(step + 1)
                    raise LearnInterrupted(
                        f"interrupted at step {step + 1}/{cfg.steps}; checkpoint saved to {ckpt}",
                        hint=f"resume with: {resume_cmd}",
                    )
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                    save(step + 1)
                    saved_at = step + 1
        except KeyboardInterrupt:
            where = f"the checkpoint of step {saved_at} is in {ckpt}" if saved_at else "no checkpoint was saved"
            raise LearnInterrupted(
                f"stopped at step {step + 1}/{cfg.steps} without saving; {where}",
                hint=f"resume with: {resume_cmd}" if saved_at else "start again (one Ctrl-C saves a checkpoint)",
            ) from None
    run["train_seconds"] = base + time.perf_counter() - t0  # the loop only: no loading or set-up
    return losses


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
