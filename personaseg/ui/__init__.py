"""``personaseg ui``: a local web app (Gradio) to learn a concept from photos and find it in images.

    >>> from personaseg.ui import serve
    >>> serve("toy")                      # http://127.0.0.1:7860, until Ctrl-C

Thin over the Python API (``workspace.py``: no Gradio; ``app.py``: the page). Safe by default:
loopback only unless asked, no share link, no telemetry, uploads and results in a temporary folder
removed on exit, size and count limits, one learn and one find at a time.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..errors import InputError, MissingExtraError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """Fail in one line, before loading the model, when ``port`` cannot be listened on."""
    if not 1 <= port <= 65535:
        raise InputError(f"port {port} is out of range", hint="use 1-65535, e.g. --port 7860")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host.strip("[]"), port))
        except OSError as err:
            raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err})",
                             hint="choose another --port, or stop what uses it") from None


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, *,
          concepts_dir: Path | None = None, device: str | None = None, dtype: str | None = None,
          allow_remote: bool = False, say: Callable[[str], None] = print,
          warn: Callable[[str], None] = lambda line: print(f"warning: {line}")) -> None:
    """Load ``model``, serve the app on ``host:port`` until Ctrl-C (or SIGTERM), then remove the
    temporary folder of uploads and results."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(f"--host {host} would let other machines use the app (and your concept store)",
                         hint="add --allow-remote if you mean it, or keep the default 127.0.0.1")
    check_port(host, port)
    scratch = Path(tempfile.mkdtemp(prefix="personaseg-ui-"))
    # Gradio reads these when imported: no telemetry or version check, uploads in our folder
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(scratch / "uploads")
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise MissingExtraError("personaseg ui", "ui") from None
        from .app import CSS, build_app
        from .workspace import MAX_UPLOAD, Workspace

        ws = Workspace(model, scratch / "results", concepts_dir, device, dtype)
        ws.segmenter()  # load the model now: a bad --model fails here, in one line, before serving
        demo = build_app(ws)
        demo.queue(max_size=32)
        if not is_loopback(host):
            warn(f"listening on {host}: anyone who can reach this machine on port {port} can use the "
                "app, read and change your concept store (no password, no TLS)")
        demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
                    max_file_size=MAX_UPLOAD, ssr_mode=False, show_error=True, quiet=True, footer_links=["api"],
                    allowed_paths=[str(ws.scratch)], mcp_server=False, pwa=False, enable_monitoring=False,
                    css=CSS)
        shown = f"[{host}]" if ":" in host else host
        say(f"personaseg ui on http://{shown}:{port} (model {model or '(default)'}, concepts in {ws.store.root}); "
            "Ctrl-C stops it")
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            demo.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(scratch, ignore_errors=True)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop as Ctrl-C does, removing the temporary folder


__all__ = ["check_port", "is_loopback", "serve"]
