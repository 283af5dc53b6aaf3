"""`personaseg explain`: what each word of the prompt attends to, on a real image.

Examples:

    personaseg explain "red mug" kitchen.jpg
    personaseg explain "<mymug>" kitchen.jpg --prompt "a photo of a {} on a table"
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_out_dir, ensure_out_dir, err_console, make_segmenter
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ForceOpt, ModelOpt, SeedOpt
from .outputs import Outputs


def explain(
    phrase: Annotated[str, typer.Argument(help="A phrase or concept; the prompt is built around it.")],
    image: Annotated[Path, typer.Argument(help="The image.")],
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("personaseg-out"),
    force: ForceOpt = False,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt template with {} for the phrase.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="TOML file of FindConfig fields.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Noise draws averaged.")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Heat maps of every prompt token's cross-attention on IMAGE, in one grid (<stem>.explain.png;
    an existing file is replaced only with --force).

    Examples:

      personaseg explain 'red mug' kitchen.jpg

      personaseg explain '<mymug>' kitchen.jpg --prompt 'a photo of a {} on a table'
    """
    from ..images import load_image
    from ..io import save_png_atomic
    from ..viz import heatmap_grid

    img = load_image(image)
    check_out_dir(out)
    outputs = Outputs(force)
    path = out / f"{image.stem}.explain.png"
    outputs.check_free([path])
    seg = make_segmenter(model, device, dtype, recipe=recipe, concepts_dir=concepts_dir, phrases=[phrase, prompt],
                         draws=draws, seed=seed)
    seg.set_image(img)
    r = seg.explain(phrase, prompt)
    titles = [t.replace("</w>", "") for t in r.tokens]
    ensure_out_dir(out)
    save_png_atomic(outputs.claim(path), heatmap_grid(img, list(r.maps), titles, letterbox=False))
    err_console.print(f"prompt: {r.prompt!r}\nwrote {path}")


def register(app: typer.Typer) -> None:
    app.command("explain", help=explain.__doc__)(explain)
