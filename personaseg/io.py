"""Files out, never half-written: atomic file and folder writes, and append-only JSONL logs.

Everything personaseg writes goes through here: a file is written to a temp file beside it and
renamed over it (:func:`atomic_write`, :func:`save_png_atomic`, :func:`save_npy_atomic`); a folder
is built in a temp folder and renamed into place (:func:`new_folder`, :func:`replace_folder`); a
log gets whole lines, one ``write`` each (:func:`append_jsonl`), and a line cut short by a killed
run is skipped when read (:func:`read_jsonl`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from .errors import InputError

# --------------------------------------------------------------------------- atomic writes


def check_new_folder(out: Path) -> None:
    """``out`` may become a new folder: it does not exist, or is an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not empty", hint="choose a new folder or remove it")


@contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """Build a folder in a temp folder beside ``out`` (yielded) and rename it into place on success,
    so ``out`` appears whole or not at all; on any error the temp folder is removed."""
    check_new_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextmanager
def folder_swap(out: Path) -> Iterator[Path]:
    """Build a folder that replaces ``out`` (if any) whole: a temp folder beside ``out`` is yielded
    and on success swapped in (:func:`replace_folder`); on any error it is removed and ``out`` is
    left as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        yield tmp
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def replace_folder(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an existing ``out`` is moved aside first and
    removed after, or put back if the second rename fails."""
    old = None
    if os.path.lexists(out):
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a binary temp file beside ``path``; on success it replaces ``path`` atomically.

    On any error the temp file is removed and ``path`` is left as it was. The folder is created
    if missing; one that cannot be written raises :class:`InputError` naming it.
    """
    path = Path(path)
    folder = path.parent
    tmp = folder / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(tmp, "xb")  # honours the umask, unlike mkstemp's 0600
    except OSError:
        raise _unwritable(folder) from None
    try:
        with fh:
            yield fh
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, InputError):
            raise _unwritable(folder) from err
        raise


def _unwritable(folder: Path) -> InputError:
    return InputError(f"output folder {folder} is not writable", hint="choose another with --out")


def save_png_atomic(path: str | Path, array_or_image: np.ndarray | Image.Image) -> None:
    """Write a PNG atomically. Arrays: bool -> 0/255 grey; uint8 (H, W) grey, (H, W, 3|4) RGB(A)."""
    im = array_or_image if isinstance(array_or_image, Image.Image) else _array_to_image(array_or_image)
    with atomic_write(path) as fh:
        im.save(fh, format="PNG")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """Write a ``.npy`` atomically (no pickles: object arrays are refused)."""
    array = np.asarray(array)
    with atomic_write(path) as fh:
        np.save(fh, array, allow_pickle=False)


def _array_to_image(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        raise ValueError(f"save_png_atomic needs a bool or uint8 array, got {a.dtype}")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(a))
    raise ValueError(f"save_png_atomic needs (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")


# --------------------------------------------------------------------------- JSONL logs


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as one line with a single ``write`` (O_APPEND), then fsync.

    A run killed mid-write leaves at most a truncated last line: :func:`read_jsonl` skips it and
    the next append starts a new line after it.
    """
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # end a line cut short by a killed run; read_jsonl skips it
        written = os.write(fd, data)
        while written < len(data):  # regular files write whole buffers; be safe anyway
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL log (missing file: none); a damaged line is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{no}: damaged line skipped (an interrupted write); it will be redone")
    return out


__all__ = [
    "append_jsonl", "atomic_write", "check_new_folder", "folder_swap", "new_folder", "read_jsonl", "replace_folder",
    "save_npy_atomic", "save_png_atomic",
]
