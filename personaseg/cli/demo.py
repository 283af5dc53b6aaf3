"""`personaseg demo`: the whole job on the shipped toy model, offline, in a few minutes.

Examples:

    personaseg demo
    personaseg demo --out /tmp/demo --seed 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import InputError
from .common import console


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="A new folder for the demo's files.")] = Path("personaseg-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the scenes and of learning.")] = 0,
    scenes: Annotated[int, typer.Option(help="Test scenes (a third each: alone, with look-alikes, absent).")] = 6,
    steps: Annotated[Optional[int], typer.Option(help="Textual Inversion steps (default 300).")] = None,
) -> None:
    """Learn a personal toy object from 4 photos (Textual Inversion) and find it among look-alikes,
    next to what the plain class word finds; writes OUT/demo.png and prints the IoUs."""
    from ..demo import run_demo

    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} exists and is not empty", hint="choose a new folder or remove it")
    r = run_demo(out, seed=seed, scenes=scenes, steps=steps)
    table = Table(title=f"IoU with the true mask: class word {r.class_word!r} vs personal token {r.concept}")
    for col in ("scenes", "n", "class word", "personal"):
        table.add_column(col, justify="right" if col != "scenes" else "left")
    for tag, d in r.iou.items():
        table.add_row(tag, str(d["n"]), f"{d['class-word']:.2f}", f"{d['personal']:.2f}")
    console.print(table)
    console.print("(on 'absent' scenes the object is not there: IoU 1.0 means an empty mask)")
    s = r.seconds
    console.print(f"picture: {r.picture}   time: {s['total']:.0f} s (learn {s['learn']:.0f} s, find {s['find']:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("demo", help=demo.__doc__)(demo)
