"""`personaseg ui`: the local web app (pip install 'personaseg[ui]').

Examples:

    personaseg ui --model toy
    personaseg ui --model toy --port 8080 --concepts-dir ./concepts
    personaseg ui --host 0.0.0.0 --allow-remote      # other machines may use it: read the warning
"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import err_console, warn
from .options import ConceptsDirOpt, DeviceOpt, DtypeOpt, ModelOpt


def ui(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback needs --allow-remote.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a --host other machines can reach (no password, no TLS).")] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    concepts_dir: ConceptsDirOpt = None,
) -> None:
    """Open a local web app: learn a concept from photos, find it in images, manage the store.

    Listens on 127.0.0.1:7860 only; no share link, no telemetry. Uploads and results live in a temporary folder removed on exit.

    Needs the ui extra: pip install 'personaseg\\[ui]'.

    Examples:

      personaseg ui --model toy

      personaseg ui --model toy --port 8080 --concepts-dir ./concepts
    """
    from ..ui import serve

    serve(model, host, port, concepts_dir=concepts_dir, device=device, dtype=dtype, allow_remote=allow_remote,
          say=lambda line: err_console.print(line, highlight=False, markup=False), warn=warn)


def register(app: typer.Typer) -> None:
    """Add `ui` to the app."""
    app.command("ui", help=ui.__doc__)(ui)
