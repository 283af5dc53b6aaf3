"""The ``personaseg`` command: a Typer app with one module per command group.

Each module ``personaseg/cli/<name>.py`` exposes ``register(app)``. Known errors
(:class:`~personaseg.errors.PersonasegError`) become one red line on stderr and a non-zero exit;
set ``PERSONASEG_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from ..errors import PersonasegError
from . import bench, concepts, demo, explain, find, learn, segment, toyworld, track, video_bench
from .common import err_console

app = typer.Typer(
    name="personaseg",
    help=(
        "Personalized segmentation with Stable Diffusion's attention (the T2M method).\n\n"
        "Learn your own object from a few photos, then outline it in new images:\n\n"
        "  personaseg learn ./photos --token '<mymug>' --class-word mug\n\n"
        "  personaseg find '<mymug>' kitchen.jpg\n\n"
        "Start with `personaseg demo` (offline, CPU, a few minutes)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)



@app.callback()
def _root() -> None:
    """Personalized segmentation with Stable Diffusion's attention (the T2M method)."""


for module in (find, segment, explain, learn, concepts, bench, demo, toyworld, track, video_bench):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning known errors into one line and an exit code."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # import-time notices are not for our users
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app(args=argv)
    except PersonasegError as err:
        if os.environ.get("PERSONASEG_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
