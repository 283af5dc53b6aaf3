"""Where `find` and `segment` write: one output name per input image, never two images on one file,
never over a file this run did not write (unless --force).

Images of one folder are written flat into --out under their stem (``kitchen.jpg`` ->
``OUT/kitchen.mask.png``). Images from several folders (two folders, ``a/x.png b/x.png``, a
``--recursive`` walk) mirror their folders below the folders' common parent (``OUT/a/x.mask.png``,
``OUT/b/x.mask.png``). Two images of one folder that differ only in suffix (``good.jpg``,
``good.png``) keep it in their names (``good.jpg.mask.png``, ``good.png.mask.png``).

:func:`image_run` and :meth:`ImageRun.each` are the image loop both commands share.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import InputError
from .common import check_out_dir, one_line_warnings, progress, warn

if TYPE_CHECKING:
    from PIL import Image


def output_stems(paths: list[Path], out: Path) -> dict[Path, Path]:
    """Each image's output stem under ``out`` (append ``.mask.png`` etc.); distinct for distinct images."""
    if not paths:
        return {}
    folders = [p.absolute().parent for p in paths]
    root = Path(os.path.commonpath(folders))
    rel = [f.relative_to(root) for f in folders]
    taken = Counter((r, p.stem) for p, r in zip(paths, rel))
    stems: dict[Path, Path] = {}
    owner: dict[Path, Path] = {}
    for p, r in zip(paths, rel):
        stem = out / r / (p.name if taken[(r, p.stem)] > 1 else p.stem)
        if stem in owner:  # e.g. "x.jpg" beside "x.jpg.png": no naming keeps both apart
            raise InputError(f"{owner[stem]} and {p} would be written to the same files {stem}.*",
                             hint="rename one of them, or give them to two runs with different --out")
        owner[stem] = p
        stems[p] = stem
    return stems


def outside(paths: list[Path], out: Path) -> list[Path]:
    """``paths`` without the files inside ``out`` (a walk over '.' must not read the masks it wrote)."""
    o = out.absolute()
    return [p for p in paths if not p.absolute().is_relative_to(o)]


class Outputs:
    """The files one run writes; refuses to replace one it did not write itself unless ``force``."""

    def __init__(self, force: bool):
        self.force = force
        self.written: set[Path] = set()

    def check_free(self, files: list[Path]) -> None:
        """Fail before any work (and before a slow model load) if a file exists already."""
        if self.force:
            return
        there = [f for f in files if f.exists() or f.is_symlink()]
        if there:
            more = f" and {len(there) - 1} more output file(s)" if len(there) > 1 else ""
            raise InputError(f"{there[0]}{more} exist already (from an earlier run, or not ours)",
                             hint="add --force to replace them, or choose another --out")

    def claim(self, path: str | Path) -> Path:
        """``path``, to be written now: refused if it appeared since the check (another run)."""
        path = Path(path)
        if not self.force and path not in self.written and (path.exists() or path.is_symlink()):
            raise InputError(f"{path} appeared while this run was writing (another run into the same --out?)",
                             hint="give each run its own --out, or add --force")
        self.written.add(path)
        return path


@dataclass
class ImageRun:
    """The images one `find` or `segment` reads and where each one's outputs go (see :func:`image_run`)."""

    paths: list[Path]  # every input image
    mine: list[Path]  # this process's share under `accelerate launch`, else all
    stems: dict[Path, Path]  # each image's output stem under --out
    outputs: Outputs

    def each(self, label: str, work: Callable[[Path, Image.Image, float], None],
             skipped: Callable[[Path], None] = lambda path: None) -> tuple[int, int]:
        """``work(path, image, start time)`` on each image of this process's share, behind a progress bar.
        An image that cannot be read is a warning and ``skipped(path)`` (its error, when it is the only
        input). Returns (images done, images skipped)."""
        from ..images import load_image

        done = failed = 0
        with one_line_warnings(), progress(len(self.mine), label) as step:
            for path in self.mine:
                start = time.perf_counter()
                try:
                    image = load_image(path)
                except InputError as err:
                    if len(self.paths) == 1:
                        raise
                    warn(f"skipped: {err}")
                    failed += 1
                    skipped(path)
                    step(path.name)
                    continue
                work(path, image, start)
                done += 1
                step(path.name)
        return done, failed


def image_run(images: list[str], recursive: bool, out: Path, force: bool, suffixes: tuple[str, ...]) -> ImageRun:
    """The images named on the command line, checked before the model loads: --out writable, and none of
    this process's output files (stem + each of ``suffixes``) there already unless ``force``."""
    from ..images import collect_images
    from ..runtime import shard

    paths, warnings = collect_images(images, recursive=recursive)
    for w in warnings:
        warn(w)
    if recursive:
        paths = outside(paths, out) or paths  # a walk over '.' must not read what it writes
    check_out_dir(out)
    stems = output_stems(paths, out)
    mine = shard(paths)  # this process's share under `accelerate launch`, else all
    outputs = Outputs(force)
    outputs.check_free([Path(f"{stems[p]}{k}") for p in mine for k in suffixes])
    return ImageRun(paths, mine, stems, outputs)
