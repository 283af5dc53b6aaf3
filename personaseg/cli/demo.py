"""`personaseg demo`: the whole job on the shipped toy model, offline, in a few minutes.

Examples:

    personaseg demo
    personaseg demo --out /tmp/demo --seed 3
    personaseg demo --scenes 12 --steps 150
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import InputError
from .common import check_out_dir, console


MARK = ".personaseg-demo"  # in the demo's folder: a later demo may replace that folder, and no other


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's files: a new one, or one an earlier demo wrote (it is replaced).")] = Path("personaseg-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the scenes and of learning.")] = 0,
    scenes: Annotated[int, typer.Option(help="Test scenes (a third each: alone, with look-alikes, absent).")] = 6,
    steps: Annotated[Optional[int], typer.Option(help="Textual Inversion steps (default: the toy card's, from recipes/ti-cpu.toml).")] = None,
) -> None:
    """Learn a personal toy object from 4 photos (Textual Inversion) and find it among look-alikes,
    next to what the plain class word finds; writes OUT/demo.png and prints the IoUs.

    Offline, on the CPU, about 2 minutes. Run again, it replaces the folder it wrote before (and only
    a folder it wrote: it marks it with a .personaseg-demo file).

    Examples:

      personaseg demo

      personaseg demo --out /tmp/demo --seed 3

      personaseg demo --scenes 12 --steps 150
    """
    from ..toyworld.demo import run_demo

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"--out {out} is not a folder", hint="choose a new folder")
    if out.exists() and any(out.iterdir()) and not (out / MARK).is_file():
        raise InputError(f"--out {out} exists, is not empty and was not written by personaseg demo",
                         hint="choose a new folder, or remove it")
    check_out_dir(out)
    # Written beside it and swapped in at the end: a failed or interrupted run leaves the old demo whole.
    work = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        r = run_demo(work, seed=seed, scenes=scenes, steps=steps)
        (work / MARK).write_text("written by `personaseg demo`: a later demo may replace this folder\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    picture = out / r.picture.relative_to(work) if r.picture else None
    table = Table(title=f"IoU with the true mask: class word {r.class_word!r} vs personal token {r.concept}")
    for col in ("scenes", "n", "class word", "personal"):
        table.add_column(col, justify="right" if col != "scenes" else "left")
    for tag, d in r.iou.items():
        table.add_row(tag, str(d["n"]), f"{d['class-word']:.2f}", f"{d['personal']:.2f}")
    console.print(table)
    console.print("(on 'absent' scenes the object is not there: IoU 1.0 means an empty mask)")
    s = r.seconds
    console.print(f"picture: {picture}   time: {s['total']:.0f} s (learn {s['learn']:.0f} s, find {s['find']:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("demo", help=demo.__doc__)(demo)
