"""`personaseg toyworld`: the toy world's scenes, model and benchmark.

Examples:

    personaseg toyworld sample "a red circle and a blue square" --out sample.png
    personaseg toyworld make-bench --seed 1 --out toybench --concepts 4 --scenes 12
    personaseg toyworld train --recipe recipes/toyworld.toml --out toy-model
    personaseg toyworld train --recipe recipes/toyworld.toml --mixed-precision bf16 --out toy-model-bf16
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import console
from .options import DeviceOpt, SeedOpt

toy_app = typer.Typer(
    help="The toy world: synthetic scenes, the shipped toy model, a toy benchmark.\n\n"
    "Examples:\n\n"
    "  personaseg toyworld sample 'a red circle and a blue square' --out sample.png\n\n"
    "  personaseg toyworld make-bench --seed 1 --out toybench\n\n"
    "  personaseg toyworld train --recipe recipes/toyworld.toml --out toy-model",
    no_args_is_help=True,
)


@toy_app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the diffusers model to.")],
    recipe: Annotated[Optional[Path], typer.Option("--recipe", help="TOML of ToyTrainConfig fields.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Denoiser steps (overrides the recipe).")] = None,
    seed: SeedOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run from OUT.resume/.")] = False,
    mixed_precision: Annotated[Optional[str], typer.Option(
        "--mixed-precision", metavar="no|bf16",
        help="bf16: forward passes under bf16 autocast, ~1.3x faster on a CPU with bf16 (AMX) units; "
             "overrides the recipe.")] = None,
) -> None:
    """Train the toy model on this CPU (VAE, then UNet + text encoder) and write a diffusers folder.

    Examples:

      personaseg toyworld train --recipe recipes/toyworld.toml --out toy-model

      personaseg toyworld train --recipe recipes/toyworld.toml --mixed-precision bf16 --out toy-model-bf16

      personaseg toyworld train --out toy-model --resume
    """
    # OpenMP workers spin briefly, then sleep. Measured on 2 cores, shipped-size bf16 steps: libgomp's
    # default spin made a step 8.5x slower beside one busy process (11.0 s vs 1.30 s alone);
    # OMP_WAIT_POLICY=PASSIVE 3.3 s beside it but 1.50 s alone; 10000 spins 3.8 s and 1.33 s.
    # Must be set before torch is imported; a value in the environment wins.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..toyworld.config import toy_train_config
    from ..toyworld.train import train

    cfg = toy_train_config(recipe, steps=steps, seed=seed, mixed_precision=mixed_precision)
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, refresh_per_second=2) as progress:  # a redraw takes the GIL from the step
        tasks: dict[str, int] = {}

        def tick(stage: str, done: int, total: int, info: str) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, info="")
            progress.update(tasks[stage], completed=done, info=info)

        report = train(cfg, out, tick=tick, log=progress.console.log, resume_run=resume)
    params = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in report.params.items())
    console.print(f"wrote {out}: {report.steps} steps, final loss {report.final_loss:.4f}, "
                  f"VAE mse {report.vae_loss:.4f}, params {params}")
    console.print(f"wall time {time.perf_counter() - start:.0f}s (VAE {report.vae_s:.0f}s, "
                  f"denoiser {report.denoiser_s:.0f}s)")


@toy_app.command("sample")
def sample_cmd(
    prompt: Annotated[str, typer.Argument(help='What to draw, e.g. "a red circle and a blue square".')],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("toy-sample.png"),
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps.")] = 25,
    n: Annotated[int, typer.Option("--n", help="Images side by side.")] = 4,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 4.0,
    seed: SeedOpt = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="A trained toy folder (default: shipped).")] = None,
    device: DeviceOpt = None,
) -> None:
    """Draw images from the toy model: a check that it learned the world.

    Examples:

      personaseg toyworld sample 'a red circle and a blue square' --out sample.png

      personaseg toyworld sample 'a green triangle' --n 8 --seed 3 --model toy-model
    """
    from ..toyworld.sample import grid, sample

    with console.status("sampling…"):
        images = sample(prompt, model=model, steps=steps, seed=seed or 0, n=n, guidance=guidance, device=device)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent or ".", prefix=f".{out.name}.", suffix=".png")
    os.close(fd)
    grid(images).save(tmp)
    os.replace(tmp, out)
    console.print(f"wrote {out} ({n} images for {prompt!r})")


@toy_app.command("make-bench")
def make_bench_cmd(
    out: Annotated[Path, typer.Option("--out", help="New folder for the benchmark.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (the benchmark is reproducible).")] = 0,
    concepts: Annotated[int, typer.Option("--concepts", help="Personal instances.")] = 4,
    scenes: Annotated[int, typer.Option("--scenes", help="Test images per concept (alone/distractor/absent).")] = 12,
    photos: Annotated[int, typer.Option("--photos", help="Photos per concept to learn from.")] = 4,
) -> None:
    """Write a personal-RIS benchmark (Mug19-style layout) of toy scenes.

    Examples:

      personaseg toyworld make-bench --seed 1 --out toybench

      personaseg toyworld make-bench --seed 1 --out toybench --concepts 4 --scenes 12

      personaseg bench personal toybench --model toy     # then score it
    """
    from ..toyworld.bench import make_bench

    summary = make_bench(out, seed=seed, concepts=concepts, scenes=scenes, photos=photos)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()))
    console.print(f"wrote {summary.root}: {len(summary.concepts)} concepts ({', '.join(summary.concepts)}); "
                  f"test samples: {counts}")


def register(app: typer.Typer) -> None:
    """Add the ``toyworld`` command group to the app."""
    app.add_typer(toy_app, name="toyworld")
