"""`personaseg segment`: label every pixel with one of several classes (the paper's VOC setting).

Examples:

    personaseg segment street.jpg --labels "person,car,bicycle"
    personaseg segment room.jpg --labels "cat,sofa" --preset voc --crf
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_out_dir, ensure_out_dir, err_console, make_segmenter
from .find import Preset
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ModelOpt, SeedOpt


def segment(
    image: Annotated[Path, typer.Argument(help="The image to label.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help="Comma-separated class names or learned concepts, e.g. 'cat,dog,sofa' or '<mymug>,cup'.")],
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("personaseg-out"),
    prompt: Annotated[Optional[str], typer.Option(help="Full prompt containing every label (default: the paper's 'a photo including ...').")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help="voc or coco settings.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML file of FindConfig fields.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Noise draws averaged (paper: 10).")] = None,
    seed: SeedOpt = None,
    crf: Annotated[bool, typer.Option("--crf", help="Refine with a dense CRF (pip install 'personaseg[crf]').")] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Label each pixel of IMAGE as background or one of --labels (the paper's VOC setting).

    Writes <stem>.labels.png (palette PNG: 0 = background, i = the i-th label) and <stem>.legend.json.

    Examples:

      personaseg segment street.jpg --labels 'person,car,bicycle'

      personaseg segment room.jpg --labels 'cat,sofa' --crf

      personaseg segment kitchen.jpg --labels '<mymug>,cup'
    """
    from ..images import atomic_write, load_image, save_png_atomic
    from ..viz import palette_png

    names = [x.strip() for x in labels.split(",") if x.strip()]
    img = load_image(image)
    check_out_dir(out)
    seg = make_segmenter(model, device, dtype, preset.value if preset else None, recipe, concepts_dir,
                         phrases=[*names, prompt], draws=draws, seed=seed, crf=crf or None)
    seg.set_image(img)
    r = seg.segment(names, prompt)
    stem = ensure_out_dir(out) / image.stem
    save_png_atomic(f"{stem}.labels.png", palette_png(r.label_map))
    legend = {"image": str(image), "prompt": r.prompt, "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(names)}},
              "area_fraction": {n: float((r.label_map == i + 1).mean()) for i, n in enumerate(names)}}
    with atomic_write(f"{stem}.legend.json") as fh:
        fh.write(json.dumps(legend, indent=2).encode())
    err_console.print(f"wrote {stem}.labels.png and {stem}.legend.json")


def register(app: typer.Typer) -> None:
    app.command("segment", help=segment.__doc__)(segment)
