"""An interrupted ``learn`` and how to continue it: find its checkpoint, check it fits, put it back.

A run saves its state in ``<store>/.runs/<name>/`` (:mod:`personaseg.concepts.checkpoint`); the
checkpoint also records the run's settings, photos, masks, model and the command that resumes it.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
from pathlib import Path
from typing import Any

from ..config import build_config, to_dict
from ..errors import ConceptError
from .checkpoint import load_checkpoint
from .config import LearnConfig


def previous_run(ckpt: Path, token: str, force: bool, resume: bool) -> dict | None:
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


def restore(trainer, state: dict, ckpt: Path) -> None:
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


def resume_model(model: str | None, state: dict, token: str) -> str:
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


def run_config(config: LearnConfig | None, state: dict | None) -> LearnConfig:
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


def resume_command(photos, token: str, base_model: str, concepts_dir: Path | None) -> str:
    """The ``personaseg learn ... --resume`` line that continues this run, pasting into a shell as it is."""
    from ..models import DEFAULT_MODEL

    photo_args = [str(photos)] if isinstance(photos, (str, Path)) else [str(p) for p in photos]
    model_args = [] if base_model == DEFAULT_MODEL else ["--model", base_model]
    store_args = [] if concepts_dir is None else ["--concepts-dir", str(concepts_dir)]
    return _command("learn", *photo_args, "--token", token, *model_args, *store_args, "--resume")


def _command(*args: Any) -> str:
    """A personaseg command line that pastes into a shell as it is (every argument quoted as needed)."""
    return shlex.join(["personaseg", *(str(a) for a in args)])
