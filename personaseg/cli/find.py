"""`personaseg find`: outline a phrase or a learned concept in images.

Examples:

    personaseg find mug kitchen.jpg
    personaseg find "<mymug>" ./photos --out masks --json > found.jsonl
    personaseg find dog "shots/*.jpg" --preset coco --min-presence 0.05
    accelerate launch -m personaseg find "<mymug>" /photos --out masks   # one share per process
"""

from __future__ import annotations

import json
import os
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from ..errors import InputError
from .common import console, ensure_out_dir, err_console, make_segmenter
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ForceOpt, ModelOpt, RecursiveOpt, SeedOpt
from .outputs import ImageRun, image_run


class Preset(str, Enum):
    voc = "voc"
    coco = "coco"


class Keep(str, Enum):
    auto = "auto"
    all = "all"
    strongest = "strongest"


class Outline(str, Enum):
    token = "token"
    with_class = "with-class"


def find(
    phrase: Annotated[str, typer.Argument(help="A word or phrase ('mug'), or a learned concept ('<mymug>').")],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("personaseg-out"),
    recursive: RecursiveOpt = False,
    force: ForceOpt = False,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt template with {} for the phrase, e.g. 'a photo of a {}'.")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help="The paper's settings: voc (tau_box 0.2, tau 0.5, 10 draws) or coco (0.5, 0.35, 1).")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML file of FindConfig fields.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Noise draws averaged (paper: 10).")] = None,
    draw_batch: Annotated[Optional[int], typer.Option(help="Draws per UNet call; lower it to save memory.")] = None,
    timestep: Annotated[Optional[int], typer.Option(help="Diffusion timestep of the single step (paper: 150).")] = None,
    min_presence: Annotated[Optional[float], typer.Option(help="Below this presence score the phrase is 'not found' and the mask is empty.")] = None,
    min_relative_presence: Annotated[Optional[float], typer.Option(help="A <concept> whose presence is below this share of its presence on its own photos is 'not found' (e.g. 0.5).")] = None,
    seed: SeedOpt = None,
    crf: Annotated[bool, typer.Option("--crf", help="Refine with a dense CRF (pip install 'personaseg[crf]').")] = False,
    keep: Annotated[Optional[Keep], typer.Option(help="Regions of the mask to keep: all, only the strongest (one object), or auto (default): strongest for a <concept>, all for a phrase.")] = None,
    outline: Annotated[Optional[Outline], typer.Option(help="A <concept>'s map: its token's own (the paper's), or with-class: the geometric mean with its class word's map, where the token picks the object and the class word gives its shape (one more UNet pass). Default: the model card's, else token.")] = None,
    scores: Annotated[bool, typer.Option("--scores", help="Also write the score map as float16 .npy.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per image on stdout.")] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Outline PHRASE (a word, or a learned concept like '<mymug>') in every image.

    Writes <stem>.mask.png (0/255, the image's size and orientation) and <stem>.overlay.png (the
    mask over the image, the phrase above it) to --out
    (images from several folders mirror their folders there) and prints a line per image (found,
    presence, area); with --json, one record per image on stdout instead (mask as COCO RLE, bbox
    [x, y, w, h], regions with their RLE, presence score, timings). Files already in --out are
    replaced only with --force.

    Examples:

      personaseg find mug kitchen.jpg

      personaseg find '<mymug>' ./photos --out masks --json > found.jsonl

      personaseg find dog 'shots/*.jpg' --preset coco --min-presence 0.05

      personaseg find cat ./albums --recursive --out cats --force

      accelerate launch -m personaseg find '<mymug>' /photos --out masks
    """
    from ..runtime import is_main, process_device

    if not phrase.strip():
        raise InputError("the phrase is empty", hint='give a word such as "mug" or a concept like "<mymug>"')
    run = image_run(images, recursive, out, force, (".mask.png", ".overlay.png") + ((".scores.npy",) if scores else ()))
    seg = make_segmenter(
        model, device or process_device(), dtype,
        preset.value if preset else None, recipe, concepts_dir, phrases=[phrase, prompt],
        draws=draws, draw_batch=draw_batch, timestep=timestep, min_presence=min_presence,
        min_relative_presence=min_relative_presence,
        seed=seed, crf=crf or None, keep=keep.value if keep else None,
        outline=outline.value if outline else None,
    )
    rows = []  # (image, found, presence, relative presence, area fraction, regions) for the table

    def work(path: Path, image, start: float) -> None:
        rows.append(_find_one(seg, phrase, prompt, image, path, start, run, out, scores, as_json))

    done, failed = run.each(f"find {phrase}", work,
                            skipped=lambda path: rows.append((_shown(path, run.stems[path], out),) + (None,) * 5))
    if not as_json:
        console.print(_table(phrase, Path(os.path.commonpath([p.absolute().parent for p in run.paths])), rows))
    if not as_json and is_main():
        err_console.print(f"{done} image(s) written to {out}" + (f", {failed} skipped" if failed else ""))
    if done == 0 and failed:
        raise typer.Exit(1)


def _find_one(seg, phrase: str, prompt: str | None, image, path: Path, start: float, run: ImageRun, out: Path,
              scores: bool, as_json: bool) -> tuple:
    """Find ``phrase`` in one image, write its files (and its JSON line); returns its table row."""
    from ..io import save_npy_atomic, save_png_atomic
    from ..masks import find_record
    from ..viz import overlay, titled

    seg.set_image(image)
    r = seg.find(phrase, prompt)
    ensure_out_dir(out)  # made at the first result: a failed run leaves no folder
    stem = run.stems[path]
    save_png_atomic(run.outputs.claim(f"{stem}.mask.png"), r.mask.astype(np.uint8) * 255)
    save_png_atomic(run.outputs.claim(f"{stem}.overlay.png"),
                    titled(overlay(image, r.mask), phrase if r.found else f"{phrase}: not found"))
    if scores:
        save_npy_atomic(run.outputs.claim(f"{stem}.scores.npy"), r.scores.astype(np.float16))
    record = find_record(str(path), phrase, r, image.size, f"{stem}.mask.png", time.perf_counter() - start)
    if as_json:
        print(json.dumps(record), flush=True)
    return (_shown(path, stem, out), r.found, r.presence, r.relative_presence, record["area_fraction"],
            len(record["instances"]))


def _shown(path: Path, stem: Path, out: Path) -> str:
    """The image as the table names it: below the images' common folder, as its outputs are under --out."""
    return str(stem.parent.relative_to(out) / path.name)


def _table(phrase: str, folder: Path, rows: list[tuple]) -> Table:
    """One line per image: found or not, presence (and relative presence for a concept), mask area."""
    table = Table(title=f"find {phrase} in {folder}", title_justify="left")
    relative = any(r[3] is not None for r in rows)
    for col in ("image", "found", "presence", *(["relative"] if relative else []), "area", "regions"):
        table.add_column(col, justify="left" if col == "image" else "right", overflow="fold")
    for path, found, presence, rel, area, regions in rows:
        if found is None:
            table.add_row(path, "skipped", "-", *(["-"] if relative else []), "-", "-")
            continue
        table.add_row(path, "yes" if found else "no", f"{presence:.3f}",
                      *([f"{rel:.2f}" if rel is not None else "-"] if relative else []),
                      f"{100 * area:.1f}%", str(regions))
    return table


def register(app: typer.Typer) -> None:
    app.command("find", help=find.__doc__)(find)
