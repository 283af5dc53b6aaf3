"""`personaseg bench video` and `personaseg toyworld make-video-bench`: the video benchmark.

Examples:

    personaseg toyworld make-video-bench --seed 7 --out toy-videos --sequences 6
    personaseg bench video toy-videos --model toy --modes temporal,per-frame --out runs/toy-video
    personaseg bench video DAVIS --split val --model stable-diffusion-v1-5/stable-diffusion-v1-5
    accelerate launch -m personaseg bench video DAVIS --out runs/davis     # one share per GPU
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from .bench import Method, bench_app, comma_list, flags_over
from .common import console, one_line_warnings, styled
from .options import BenchConceptsDirOpt, DeviceOpt, DtypeOpt, ModelOpt, SeedOpt
from .toyworld import toy_app


def video(
    root: Annotated[Path, typer.Argument(help="DAVIS 2017 layout (JPEGImages/480p, Annotations/480p), e.g. "
                                              "from `personaseg toyworld make-video-bench`.")],
    model: ModelOpt = None,
    method: Annotated[Method, typer.Option(help="How each object is learned.")] = Method.ti,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML of LearnConfig fields, or \\[learn] and \\[find] tables.")] = None,
    baselines: Annotated[str, typer.Option(help="Comma-separated: class-word, ti, lora ('none' for none).")] = "class-word",
    modes: Annotated[str, typer.Option(help="Comma-separated: temporal, per-frame (results: the first).")] = "temporal",
    subset: Annotated[Optional[str], typer.Option(help="Only sequences with one of these comma-separated tags.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N targets.")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", help="Only the first N frames of each sequence.")] = None,
    split: Annotated[str, typer.Option(help="ImageSets/2017/<split>.txt (else every sequence).")] = "val",
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (RUNDIR).")] = Path("runs/video"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out, skipping scored targets.")] = False,
    save_masks: Annotated[bool, typer.Option("--save-masks", help="Write RUNDIR/masks/<method>/<seq>/<obj>/<frame>.png.")] = False,
    steps: Annotated[Optional[int], typer.Option(help="Learn: optimizer steps (overrides the recipe).")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Per-frame mode: noise draws per frame (paper: 10).")] = None,
    draws_per_frame: Annotated[Optional[int], typer.Option("--draws-per-frame", help="Temporal: draws per frame.")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Temporal: neighbouring frames on each side whose presence joins the frame's own (median).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad sequence instead of skipping it.")] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    seed: SeedOpt = None,
    concepts_dir: BenchConceptsDirOpt = None,
) -> None:
    """Learn each object of ROOT, track it through its sequence, score J, F and J&F (DAVIS's measures).

    Writes RUNDIR/report.json (results\\[method]\\[subset]: J, F, J&F; subsets all and each tag), report.md
    and samples.jsonl (one line per mode, method and target; --resume continues from it). A bad
    sequence is one warning line and is left out (the exit code is then 1).

    Examples:

      personaseg bench video toy-videos --model toy --out runs/toy-video

      personaseg bench video toy-videos --model toy --modes temporal,per-frame --out runs/toy-video

      personaseg bench video DAVIS --split val --out runs/davis
    """
    from ..bench.config import read_recipe
    from ..bench.video import VideoBenchConfig, run_video
    from ..runtime import is_main

    chosen = comma_list(modes)
    if draws is not None and "per-frame" not in chosen:
        raise InputError(f"--draws {draws} sets per-frame find's draws, and --modes {modes} has no per-frame",
                         hint="use --draws-per-frame for temporal mode, or add per-frame to --modes")
    if (draws_per_frame is not None or window is not None) and "temporal" not in chosen:
        raise InputError(f"--draws-per-frame and --window are temporal mode's, and --modes {modes} has no temporal",
                         hint="add temporal to --modes, or use --draws for per-frame find")
    learn, find = read_recipe(recipe)
    config = VideoBenchConfig(
        model=model, method=method.value, baselines=comma_list(baselines), modes=chosen,
        learn=flags_over(learn, steps=steps, seed=seed), find=flags_over(find, draws=draws),
        track=flags_over({}, draws=draws_per_frame, window=window), subsets=comma_list(subset) or None, limit=limit,
        max_frames=max_frames, split=split, out=out, resume=resume, save_masks=save_masks, strict=strict,
        device=device, dtype=dtype, seed=seed if seed is not None else 0, concepts_dir=concepts_dir,
    )
    with one_line_warnings():
        report = run_video(root, config, progress=True)
    if is_main():
        _print(report, out)
        if report["skipped"]:
            raise typer.Exit(1)


def _print(report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    from ..bench.report import pct

    groups = ["all", *report["dataset"]["tags"]]
    for mode, res in report["modes"].items():
        table = Table(title=f"J&F x100, {mode}", title_justify="left")
        for col in ["method", *groups, "J", "F", "absent reported", "frames/s"]:
            table.add_column(col, justify="left" if col == "method" else "right")
        for m, rows in res.items():
            fps = report["timing"][mode][m]["frames_per_s"]
            table.add_row(m, *[pct(rows[g]["J&F"]) for g in groups], pct(rows["all"]["J"]), pct(rows["all"]["F"]),
                          pct(rows["all"]["absent_reported"]), "-" if fps is None else f"{fps:.2f}")
        console.print(table)
    if report["skipped"]:
        console.print(styled(f"{len(report['skipped'])} sequence(s) skipped", "yellow", "(listed in report.md)"))
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}")


def make_video_bench_cmd(
    out: Annotated[Path, typer.Option("--out", help="New folder for the benchmark.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (the benchmark is reproducible).")] = 0,
    sequences: Annotated[int, typer.Option("--sequences", help="Clips; tags cycle alone, distractor, leaves.")] = 6,
    frames: Annotated[int, typer.Option("--frames", help="Frames per clip.")] = 24,
    photos: Annotated[int, typer.Option("--photos", help="Photos of each instance to learn from.")] = 4,
) -> None:
    """Write toy video sequences (DAVIS 2017 layout) with photos of each personal instance.

    Examples:

      personaseg toyworld make-video-bench --seed 7 --out toy-videos

      personaseg toyworld make-video-bench --seed 7 --out toy-videos --sequences 6 --frames 24
    """
    from ..toyworld.video import make_video_bench

    s = make_video_bench(out, seed=seed, sequences=sequences, frames=frames, photos=photos)
    console.print(f"wrote {s.root}: {len(s.sequences)} sequences of {s.frames} frames "
                  f"({', '.join(f'{k}: {v[0]}' for k, v in s.sequences.items())}); "
                  f"{s.absent_frames} frames without the instance")


def register(app: typer.Typer) -> None:
    """Add `bench video` and `toyworld make-video-bench` to their groups."""
    bench_app.command("video", help=video.__doc__)(video)
    toy_app.command("make-video-bench", help=make_video_bench_cmd.__doc__)(make_video_bench_cmd)
