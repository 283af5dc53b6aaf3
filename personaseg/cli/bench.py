"""`personaseg bench`: score personal segmentation and VOC pseudo-masks end to end.

Examples:

    personaseg bench personal data/mug19 --model stable-diffusion-v1-5/stable-diffusion-v1-5 --out runs/mug19
    personaseg bench personal data/toy-bench --model toy --method ti --baselines class-word,lora
    personaseg bench personal data/PerSeg --layout perseg --shots 1 --limit 20
    personaseg bench personal data/PerSeg --shots 1 --photo-masks        # PerSAM's protocol: 00.jpg + its mask
    personaseg bench personal data/toy-bench --model toy --photo-masks --baselines ti,class-word
    personaseg bench personal user/my-hf-dataset --layout hf --split test
    personaseg bench voc VOCdevkit/VOC2012 --split train --crf
    accelerate launch -m personaseg bench personal data/mug19 --out runs/mug19   # one share per GPU
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import console, one_line_warnings, styled
from .options import BenchConceptsDirOpt, DeviceOpt, DtypeOpt, ModelOpt, SeedOpt

bench_app = typer.Typer(
    help="Benchmarks: personalized segmentation (Mug19-style, PerSeg, HF datasets) and VOC pseudo-masks.\n\n"
    "Examples:\n\n"
    "  personaseg bench personal data/toy-bench --model toy\n\n"
    "  personaseg bench personal data/PerSeg --layout perseg --shots 1\n\n"
    "  personaseg bench voc VOCdevkit/VOC2012 --split train --crf",
    no_args_is_help=True,
)


class Method(str, Enum):
    ti = "ti"
    lora = "lora"


class Layout(str, Enum):
    auto = "auto"
    mug19 = "mug19"
    perseg = "perseg"
    hf = "hf"


def comma_list(value: str | None) -> list[str]:
    """A comma-separated option as a list ("none" and blanks dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip() and v.strip() != "none"]


def flags_over(d: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Flags override the recipe; unset flags (None) leave it alone."""
    return {**d, **{k: v for k, v in values.items() if v is not None}}


@bench_app.command("personal")
def personal(
    root: Annotated[str, typer.Argument(help="Benchmark folder (see data/README.md), or a Hugging Face dataset id.")],
    model: ModelOpt = None,
    method: Annotated[Method, typer.Option(help="How each concept is learned.")] = Method.ti,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML of LearnConfig fields, or [learn] and [find] tables.")] = None,
    baselines: Annotated[str, typer.Option(help="Comma-separated: class-word, ti, lora ('none' for none).")] = "class-word",
    layout: Annotated[Layout, typer.Option(help="Dataset layout (auto: from the files).")] = Layout.auto,
    subset: Annotated[Optional[str], typer.Option(help="Only samples with one of these comma-separated tags.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N samples.")] = None,
    shots: Annotated[Optional[int], typer.Option(help="Photos per concept that learn it: the first K (PerSeg: of its images, the rest are tests; default 1 there, all elsewhere).")] = None,
    photo_masks: Annotated[bool, typer.Option("--photo-masks", help="Learn from the photos' masks too (concepts/<name>/masks/<stem>.png; PerSeg: Annotations/<obj>/): the method's row becomes METHOD+masks; --baselines ti adds the plain row.")] = False,
    photo_boxes: Annotated[bool, typer.Option("--photo-boxes", help="Learn from each photo mask's bounding box instead (the model draws the mask): a METHOD+box row.")] = False,
    photo_clicks: Annotated[bool, typer.Option("--photo-clicks", help="Learn from a click inside each photo mask (its most interior pixel): a METHOD+click row.")] = False,
    split: Annotated[str, typer.Option(help="Hugging Face datasets: the split to score.")] = "test",
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (RUNDIR).")] = Path("runs/bench"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out, skipping scored samples.")] = False,
    save_masks: Annotated[bool, typer.Option("--save-masks", help="Write RUNDIR/masks/<method>/<image>/<concept>.png.")] = False,
    steps: Annotated[Optional[int], typer.Option(help="Learn: optimizer steps (overrides the recipe).")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="Learn: training resolution in px.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Find: noise draws averaged (paper: 10).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad sample instead of skipping it.")] = False,
    grid: Annotated[bool, typer.Option("--grid/--no-grid", help="Draw RUNDIR/grid.png.")] = True,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    seed: SeedOpt = None,
    concepts_dir: BenchConceptsDirOpt = None,
) -> None:
    """Learn each concept of ROOT, find it in every test image, score it and the baselines.

    Writes RUNDIR/report.json, report.md, grid.png and samples.jsonl (one line per method and
    sample; --resume continues from it). Learned concepts are cached by photos, settings and model.
    The table shows mIoU (mean of per-sample IoUs) and objIoU (per object, then averaged: the figure
    PerSeg papers call mIoU).

    Examples:

      personaseg bench personal data/toy-bench --model toy --baselines class-word,lora

      personaseg bench personal data/mug19 --model stable-diffusion-v1-5/stable-diffusion-v1-5 --out runs/mug19

      personaseg bench personal data/PerSeg --layout perseg --shots 1 --limit 20

      personaseg bench personal user/my-hf-dataset --layout hf --split test

      personaseg bench personal data/mug19 --out runs/mug19 --resume
    """
    from ..bench import BenchConfig, run_personal
    from ..bench.config import read_recipe
    from ..runtime import is_main

    learn, find = read_recipe(recipe)
    config = BenchConfig(
        layout=layout.value, model=model, method=method.value, baselines=comma_list(baselines),
        learn=flags_over(learn, steps=steps, resolution=resolution, seed=seed),
        find=flags_over(find, draws=draws),
        subsets=comma_list(subset) or None, limit=limit, shots=shots, photo_masks=photo_masks,
        photo_boxes=photo_boxes, photo_clicks=photo_clicks, split=split, out=out, resume=resume,
        save_masks=save_masks, strict=strict, device=device, dtype=dtype, seed=seed,
        concepts_dir=concepts_dir, grid=grid,
    )
    with one_line_warnings():
        report = run_personal(root, config, progress=True)
    if is_main():
        _print_personal(report, out)


def _print_personal(report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    from ..bench.report import OBJIOU_NOTE, pct, reference_note

    res = report["results"]
    groups = ["all"] + [t for t in report["dataset"]["tags"] if any(res[m][t]["n"] for m in res)]
    table = Table(title="mIoU x100 by subset (n = samples with the concept), and objIoU x100", title_justify="left",
                  caption=OBJIOU_NOTE, caption_justify="left")
    table.add_column("method", no_wrap=True)
    for g in groups:
        table.add_column(f"{g} (n={res[next(iter(res))][g]['n']})", justify="right", overflow="fold")
    table.add_column("objIoU (all)", justify="right", overflow="fold")
    table.add_column("FP rate, absent", justify="right")
    for m, r in res.items():
        fp = report["absent"][m]["fp_rate"]
        table.add_row(m, *[pct(r[g]["mIoU"]) for g in groups], pct(r["all"]["objIoU"]),
                      "-" if fp is None else f"{100 * fp:.0f}%")
    console.print(table)
    if note := reference_note(report):
        console.print(styled("warning:", "yellow", note))
    if report["skipped"]:
        console.print(styled(f"{len(report['skipped'])} bad sample(s) skipped", "yellow", "(listed in report.md)"))
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'grid.png'}")


@bench_app.command("voc")
def voc(
    voc_root: Annotated[Path, typer.Argument(help="VOC2012 folder: JPEGImages, SegmentationClass(Aug), ImageSets.")],
    split: Annotated[str, typer.Option(help="ImageSets/Segmentation/<split>.txt (paper: train).")] = "train",
    crf: Annotated[bool, typer.Option("--crf", help="Also score dense-CRF masks (pip install 'personaseg[crf]').")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N images.")] = None,
    model: ModelOpt = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML of FindConfig fields (over the voc preset).")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Noise draws averaged (paper: 10).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/voc"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    save_masks: Annotated[bool, typer.Option("--save-masks", help="Write RUNDIR/masks/<method>/<id>.png.")] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Pseudo-masks for a VOC split from image-level labels, scored by 21-class mIoU.

    The paper's weakly supervised setting: each image's classes (read from its label PNG) make the
    prompt; --crf adds a row with the dense CRF.

    Examples:

      personaseg bench voc VOCdevkit/VOC2012 --split train

      personaseg bench voc VOCdevkit/VOC2012 --split val --limit 100 --crf --out runs/voc-val
    """
    from ..bench.report import pct
    from ..bench.voc import VocConfig, run_voc
    from ..config import load_recipe
    from ..runtime import is_main

    find = flags_over(load_recipe(recipe) if recipe else {}, draws=draws)
    config = VocConfig(split=split, crf=crf, limit=limit, model=model, find=find, out=out, resume=resume,
                       save_masks=save_masks, device=device, dtype=dtype, seed=seed)
    with one_line_warnings():  # a bad image: one warning line, the run goes on
        report = run_voc(voc_root, config, progress=True)
    if is_main():
        for m, r in report["results"].items():
            console.print(f"{m}: mIoU {pct(r['mIoU'])} over {r['n']} images ({r['n_skipped']} skipped)")
        console.print(f"report: {out / 'report.md'}, {out / 'report.json'}")


def register(app: typer.Typer) -> None:
    """Add `personaseg bench ...` to the app."""
    app.add_typer(bench_app, name="bench")
