"""`personaseg segment`: label every pixel with one of several classes (the paper's VOC setting).

Examples:

    personaseg segment street.jpg --labels "person,car,bicycle"
    personaseg segment room.jpg --labels "cat,sofa" --preset voc --crf
    personaseg segment ./photos --labels "dog,sofa" --no-background-words --out labels
    personaseg segment kitchen.jpg --labels "<mymug>,cup"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError
from .common import ensure_out_dir, err_console, make_segmenter
from .find import Preset
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ForceOpt, ModelOpt, RecursiveOpt, SeedOpt
from .outputs import ImageRun, image_run


def segment(
    images: Annotated[list[str], typer.Argument(help="Images to label: files, folders or glob patterns.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help="Comma-separated class names or learned concepts, e.g. 'cat,dog,sofa' or '<mymug>,cup'.")],
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("personaseg-out"),
    recursive: RecursiveOpt = False,
    force: ForceOpt = False,
    prompt: Annotated[Optional[str], typer.Option(help="Full prompt containing every label (default: the paper's 'a photo including ...', with its background words).")] = None,
    background_words: Annotated[bool, typer.Option(
        "--background-words/--no-background-words",
        help="Add the paper's background words (tree, river, sea, ...; per class for boat, cow, train, tv monitor) "
        "to the default prompt: they draw attention away from the labels' maps. Not used with --prompt.")] = True,
    preset: Annotated[Optional[Preset], typer.Option(help="voc or coco settings.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML file of FindConfig fields.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Noise draws averaged (paper: 10).")] = None,
    seed: SeedOpt = None,
    crf: Annotated[bool, typer.Option("--crf", help="Refine with a dense CRF (pip install 'personaseg[crf]').")] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Label each pixel of every image as background or one of --labels (the paper's VOC setting).

    Writes <stem>.labels.png (palette PNG: 0 = background, i = the i-th label) and <stem>.legend.json
    to --out (images from several folders mirror their folders there; existing files are replaced
    only with --force). The default prompt is the paper's: "a photo including <labels>, <background
    words>, and <last>.", with background words (tree, river, sea, lake, ...) that soak up attention
    the labels would otherwise get; --no-background-words leaves them out.

    Examples:

      personaseg segment street.jpg --labels 'person,car,bicycle'

      personaseg segment room.jpg --labels 'cat,sofa' --crf

      personaseg segment ./photos 'more/*.png' --labels 'dog,sofa' --no-background-words --out labels

      personaseg segment kitchen.jpg --labels '<mymug>,cup'
    """
    from ..prompts import background_words as paper_background_words
    from ..runtime import is_main, process_device

    names = [x.strip() for x in labels.split(",") if x.strip()]
    if not names:
        raise InputError("--labels has no label", hint="e.g. --labels 'cat,dog,sofa'")
    run = image_run(images, recursive, out, force, (".labels.png", ".legend.json"))
    added = paper_background_words(names) if background_words and prompt is None else []
    seg = make_segmenter(model, device or process_device(), dtype, preset.value if preset else None, recipe,
                         concepts_dir, phrases=[*names, prompt], draws=draws, seed=seed, crf=crf or None)
    used = {"prompt": prompt}

    def work(path: Path, image, start: float) -> None:
        used["prompt"] = _segment_one(seg, names, prompt, background_words, added, image, path, run, out)

    done, failed = run.each(f"segment {','.join(names)}", work)
    if is_main():
        err_console.print(f"prompt: {used['prompt']!r}")
        if added:
            err_console.print(f"background words added to the prompt: {', '.join(added)} "
                              "(the paper's; --no-background-words leaves them out)")
        err_console.print(f"{done} image(s) labelled: <stem>.labels.png and <stem>.legend.json in {out}"
                          + (f", {failed} skipped" if failed else ""))
    if done == 0 and failed:
        raise typer.Exit(1)


def _segment_one(seg, names: list[str], prompt: str | None, background_words: bool, added: list[str], image,
                 path: Path, run: ImageRun, out: Path) -> str:
    """Label one image, write its label map and legend; returns the prompt it used."""
    from ..io import atomic_write, save_png_atomic
    from ..viz import palette_png

    seg.set_image(image)
    r = seg.segment(names, prompt, background=background_words)
    ensure_out_dir(out)  # made at the first result: a failed run leaves no folder
    stem = run.stems[path]
    save_png_atomic(run.outputs.claim(f"{stem}.labels.png"), palette_png(r.label_map))
    legend = {"image": str(path), "prompt": r.prompt, "background_words": added,
              "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(names)}},
              "area_fraction": {n: float((r.label_map == i + 1).mean()) for i, n in enumerate(names)}}
    with atomic_write(run.outputs.claim(f"{stem}.legend.json")) as fh:
        fh.write(json.dumps(legend, indent=2).encode())
    return r.prompt


def register(app: typer.Typer) -> None:
    app.command("segment", help=segment.__doc__)(segment)
