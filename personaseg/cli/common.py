"""Pieces shared by the find / segment / explain commands."""

from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from ..errors import InputError, PersonasegWarning

# soft_wrap: a message is one line however narrow the terminal, so a path in it stays whole (copyable).
# markup=False: a string prints as written; rich markup would eat "[crf]" in "pip install
# 'personaseg[crf]'", a "[1]" in a file name, a "[find]" recipe table. Styles are given as Text
# (see styled()), never as markup inside a message.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def styled(label: str, style: str, message: str = "") -> Text:
    """``label`` in ``style``, then ``message`` as plain text (never read as markup)."""
    return Text.assemble((label, style), f" {message}" if message else "")


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show personaseg's own warnings (one photo, a mismatched presence reference) as one yellow line each."""
    with warnings.catch_warnings():
        original = warnings.showwarning
        warnings.simplefilter("always", PersonasegWarning)

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, PersonasegWarning):
                err_console.print(styled("warning:", "yellow", str(message)))
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def make_segmenter(model, device, dtype, preset=None, recipe=None, concepts_dir=None, phrases=(), **overrides):
    """Load the model behind a spinner and build a Segmenter (flags override recipe and preset).
    Without ``model``, a learned concept named in ``phrases`` brings its own (the one it was learned on)."""
    from ..segmenter import Segmenter, concept_model

    model = model or concept_model(list(phrases), concepts_dir)

    with err_console.status(f"Loading model {model or '(default)'}…"):
        return Segmenter.from_pretrained(
            model, device=device, dtype=dtype, preset=preset, recipe=recipe,
            concepts_dir=concepts_dir, **overrides,
        )


def check_out_dir(out: Path) -> Path:
    """Fail now, before a slow model load, if ``out`` could not be created or written; creates
    nothing (a run stopped by a bad recipe or model leaves no empty folder behind)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the nearest folder that exists: where ``out`` would be made
    try:
        if not existing.is_dir():
            raise NotADirectoryError(existing)
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".personaseg-probe-"):
            pass
    except OSError:
        raise InputError(f"output folder {out} is not writable", hint="choose another with --out") from None
    return out


def ensure_out_dir(out: Path) -> Path:
    """Create ``out`` (checked by :func:`check_out_dir`) once the work is about to be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise InputError(f"output folder {out} is not writable", hint="choose another with --out") from None
    return out


@contextmanager
def progress(total: int, label: str) -> Iterator[Any]:
    """A rich progress bar on stderr (stdout stays clean for --json)."""
    bar = Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[item]}", markup=False),
        console=err_console, transient=False, disable=total <= 1 and not os.environ.get("PERSONASEG_PROGRESS"),
    )
    with bar:
        task = bar.add_task(label, total=total, item="")
        yield lambda item="": bar.update(task, advance=1, item=str(item))


def warn(message: str) -> None:
    err_console.print(styled("warning:", "yellow", message))
