"""The training loop of ``learn``: steps, periodic checkpoints, Ctrl-C and stop requests."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from ..errors import ConceptError
from .checkpoint import save_checkpoint
from .progress import StepCallback, learn_progress
from .stopping import StopWhenStable
from .trainer import Trainer

LOSS_WINDOW = 50  # final_loss = mean loss of the last this many steps


class LearnInterrupted(ConceptError):
    """Training stopped by Ctrl-C; the message says where the checkpoint is and how to resume."""

    exit_code = 130


class StopFlag:
    """First Ctrl-C: finish the step, save, stop. Second Ctrl-C: stop at once."""

    def __enter__(self) -> "StopFlag":
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


def run_steps(trainer: Trainer, start: int, losses: list[float], ckpt: Path, run: dict,
              progress: bool | StepCallback) -> list[float]:
    """Train from step ``start`` to the end, saving a checkpoint every ``checkpoint_every`` steps and
    on a stop request; returns the last ``LOSS_WINDOW`` losses (``run["train_seconds"]`` updated)."""
    cfg, acc = trainer.cfg, trainer.acc
    saved_at = start if start else None
    base, t0 = run["train_seconds"], time.perf_counter()

    def save(step: int) -> None:
        if acc.is_main_process:
            run["train_seconds"] = base + time.perf_counter() - t0
            save_checkpoint(ckpt, {**trainer.state_dict(), **run, "step": step, "losses": losses})
        acc.wait_for_everyone()

    rule = StopWhenStable(trainer, cfg.stop_when_stable) if cfg.stop_when_stable else None
    resume_cmd = run["resume_command"]
    shown = progress if acc.is_main_process else False
    with StopFlag() as stop, learn_progress(run["token"], cfg.steps, start, shown) as bar:
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
                if rule and (step + 1) % cfg.stop_check_every == 0 and step + 1 < cfg.steps and rule.settled():
                    run["stopped_at"] = step + 1  # the token's maps on its photos stopped moving
                    break
        except KeyboardInterrupt:
            where = f"the checkpoint of step {saved_at} is in {ckpt}" if saved_at else "no checkpoint was saved"
            raise LearnInterrupted(
                f"stopped at step {step + 1}/{cfg.steps} without saving; {where}",
                hint=f"resume with: {resume_cmd}" if saved_at else "start again (one Ctrl-C saves a checkpoint)",
            ) from None
    run["train_seconds"] = base + time.perf_counter() - t0  # the loop only: no loading or set-up
    if rule is not None:
        run["map_changes"] = rule.changes
    return losses
