"""The ``personaseg`` command: a Typer app with one module per command group.

Each module ``personaseg/cli/<name>.py`` exposes ``register(app)``. Known errors
(:class:`~personaseg.errors.PersonasegError`) become one red line on stderr and a non-zero exit;
set ``PERSONASEG_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings

import click
import typer

from ..errors import PersonasegError
from . import bench, concepts, demo, explain, find, learn, segment, toyworld, track, ui, video_bench
from .common import err_console, styled

DEBUG_VAR = "PERSONASEG_DEBUG"  # set: tracebacks instead of one-line errors

app = typer.Typer(
    name="personaseg",
    help=(
        "Personalized segmentation with Stable Diffusion's attention (the T2M method).\n\n"
        "Learn your own object from a few photos, then outline it in new images. "
        "Start with `personaseg demo` (offline, CPU, a few minutes); every command's --help has examples.\n\n"
        "Examples:\n\n"
        "  personaseg demo\n\n"
        "  personaseg learn ./photos --token '<mymug>' --class-word mug\n\n"
        "  personaseg find '<mymug>' kitchen.jpg"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",  # help text is escaped in main(): it prints as written
)



@app.callback()
def _root() -> None:
    """Personalized segmentation with Stable Diffusion's attention (the T2M method)."""


for module in (find, segment, explain, learn, concepts, bench, demo, toyworld, track, video_bench, ui):
    module.register(app)


def _help_as_written(cmd: click.Command) -> click.Command:
    """Escape every help text of ``cmd`` and its subcommands for rich: as written, "pip install
    'personaseg[crf]'" would print as "pip install 'personaseg'" and a "[learn]" table would vanish."""
    from rich.markup import escape

    for obj in (cmd, *cmd.params):
        for attr in ("help", "short_help"):
            if isinstance(getattr(obj, attr, None), str):
                setattr(obj, attr, escape(getattr(obj, attr)))
    for sub in getattr(cmd, "commands", {}).values():
        _help_as_written(sub)
    return cmd


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning known errors into one line and an exit code."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # import-time notices are not for our users
    diffusers_logging.set_verbosity_error()  # "Couldn't connect to the Hub" chatter before our one line
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        _help_as_written(typer.main.get_command(app))(args=argv, prog_name="personaseg")
    except PersonasegError as err:
        if os.environ.get(DEBUG_VAR):
            raise
        err_console.print(styled("error:", "bold red", str(err)))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # a bug or an unforeseen failure: still one line, and where to look
        if os.environ.get(DEBUG_VAR):
            raise
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        err_console.print(styled("error:", "bold red", f"{type(err).__name__}: {text}" if text else type(err).__name__)
                          + f" (unexpected; set {DEBUG_VAR}=1 for the traceback)")
        sys.exit(1)
