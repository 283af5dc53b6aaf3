"""`personaseg find`: outline a phrase or a learned concept in images.

Examples:

    personaseg find mug kitchen.jpg
    personaseg find "<mymug>" ./photos --out masks --json > found.jsonl
    personaseg find dog "shots/*.jpg" --preset coco --min-presence 0.05
    accelerate launch -m personaseg find "<mymug>" /photos --out masks   # one share per process
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..errors import InputError
from .common import check_out_dir, ensure_out_dir, err_console, make_segmenter, one_line_warnings, progress, warn
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ModelOpt, SeedOpt


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

    Writes <stem>.mask.png (0/255, the image's size and orientation) and <stem>.overlay.png to --out;
    with --json, one record per image on stdout (mask as COCO RLE, regions, presence score, timings).

    Examples:

      personaseg find mug kitchen.jpg

      personaseg find '<mymug>' ./photos --out masks --json > found.jsonl

      personaseg find dog 'shots/*.jpg' --preset coco --min-presence 0.05

      accelerate launch -m personaseg find '<mymug>' /photos --out masks
    """
    from ..bench.sharding import is_main, process_device, shard
    from ..images import collect_images, load_image, save_npy_atomic, save_png_atomic
    from ..masks import mask_summary
    from ..viz import overlay

    if not phrase.strip():
        raise InputError("the phrase is empty", hint='give a word such as "mug" or a concept like "<mymug>"')
    paths, warnings = collect_images(images)
    for w in warnings:
        warn(w)
    check_out_dir(out)
    seg = make_segmenter(
        model, device or process_device(), dtype,
        preset.value if preset else None, recipe, concepts_dir, phrases=[phrase, prompt],
        draws=draws, draw_batch=draw_batch, timestep=timestep, min_presence=min_presence,
        min_relative_presence=min_relative_presence,
        seed=seed, crf=crf or None, keep=keep.value if keep else None,
        outline=outline.value if outline else None,
    )
    done = failed = 0
    mine = shard(paths)  # this process's share under `accelerate launch`, else all
    with one_line_warnings(), progress(len(mine), f"find {phrase}") as step:
        for path in mine:
            start = time.perf_counter()
            try:
                image = load_image(path)
            except InputError as err:
                if len(paths) == 1:
                    raise
                warn(f"skipped: {err}")
                failed += 1
                step(path.name)
                continue
            seg.set_image(image)
            r = seg.find(phrase, prompt)
            stem = ensure_out_dir(out) / path.stem  # made at the first result: a failed run leaves no folder
            save_png_atomic(f"{stem}.mask.png", r.mask.astype(np.uint8) * 255)
            save_png_atomic(f"{stem}.overlay.png", overlay(image, r.mask, phrase if r.found else f"{phrase}: not found"))
            if scores:
                save_npy_atomic(f"{stem}.scores.npy", r.scores.astype(np.float16))
            if as_json:
                record = {"path": str(path), "phrase": phrase, "prompt": r.prompt, "found": r.found,
                          "presence": round(r.presence, 6),
                          "relative_presence": None if r.relative_presence is None else round(r.relative_presence, 4),
                          "size": [image.width, image.height],
                          **mask_summary(r.mask), "mask_path": f"{stem}.mask.png",
                          "timings": {**{k: round(v, 4) for k, v in r.timings.items()},
                                      "total_s": round(time.perf_counter() - start, 4)}}
                print(json.dumps(record), flush=True)
            done += 1
            step(path.name)
    if not as_json and is_main():
        err_console.print(f"{done} image(s) written to {out}" + (f", {failed} skipped" if failed else ""))
    if done == 0 and failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("find", help=find.__doc__)(find)
