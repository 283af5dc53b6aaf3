"""Option aliases shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="Hub id, local diffusers folder, single .safetensors file, or 'toy' (the shipped toy "
        "model). Default: $PERSONASEG_MODEL or stable-diffusion-v1-5/stable-diffusion-v1-5.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    Optional[str],
    typer.Option("--device", help="cuda, cuda:1, mps or cpu. Default: cuda, then mps, then cpu."),
]
DtypeOpt = Annotated[
    Optional[str],
    typer.Option("--dtype", help="float16, bfloat16 or float32. Default: float16 on cuda, else float32."),
]
BenchConceptsDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--concepts-dir", help="Cache of learned bench concepts. Default: $PERSONASEG_HOME/bench-concepts "
        "or the user cache folder.", show_default=False),
]
ConceptsDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--concepts-dir",
        help="Concept store folder. Default: $PERSONASEG_HOME/concepts (user data dir).",
        show_default=False,
    ),
]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (results are reproducible).")]
RecursiveOpt = Annotated[
    bool, typer.Option("--recursive", "-r", help="Also read the images in the folders' subfolders.")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace output files that exist already (an earlier run's, or others').")
]
