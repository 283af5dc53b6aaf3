"""Where `find` and `segment` write: one output name per input image, never two images on one file,
never over a file this run did not write (unless --force).

Images of one folder are written flat into --out under their stem (``kitchen.jpg`` ->
``OUT/kitchen.mask.png``). Images from several folders (two folders, ``a/x.png b/x.png``, a
``--recursive`` walk) mirror their folders below the folders' common parent (``OUT/a/x.mask.png``,
``OUT/b/x.mask.png``). Two images of one folder that differ only in suffix (``good.jpg``,
``good.png``) keep it in their names (``good.jpg.mask.png``, ``good.png.mask.png``).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..errors import InputError


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
