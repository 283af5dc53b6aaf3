"""The run folder (RUNDIR) the three benchmark runners write, and the bookkeeping they share.

    RUNDIR/samples.jsonl           one JSON line per scored unit, appended as it is made (flushed and
                                   fsynced): a killed run resumes from it (``resume``), a unit whose
                                   line is an error (a bad sample) is tried again
    RUNDIR/samples.jsonl.part<r>   process r's lines under ``accelerate launch``, merged by the main one
    RUNDIR/learn.jsonl             one line per concept learned or taken from the cache (personal, video)
    RUNDIR/photos/<concept>/       in-memory photos staged for learn (HF datasets)
    RUNDIR/report.json, report.md  written atomically when the run ends; grid.png (personal)
    RUNDIR/masks/...               with ``save_masks``: :func:`mask_path`, :func:`voc_mask_path`,
                                   :func:`video_mask_dir`

A record's key names its unit: ``(method, image, concept)`` for ``bench personal`` and ``bench voc``
(:func:`sample_key`), ``(mode, method, target)`` for ``bench video``. The runners' progress bar is here
too (:func:`progress_bar`): UI the runners own, on stderr, shown by the main process only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import append_jsonl, atomic_write, read_jsonl
from ..runtime import is_main, merge_parts, part_path, wait

SAMPLES = "samples.jsonl"  # per scored unit records; other tools read this name
LEARNED = "learn.jsonl"  # per (concept, method) learn records: token, seconds, cache hit

Key = Callable[[dict[str, Any]], tuple]


def sample_key(r: dict[str, Any]) -> tuple[str, str, str]:
    """(method, image, concept): one scored sample of ``bench personal`` or ``bench voc``."""
    return r["method"], r["image"], r["concept"]


def latest(records: Iterable[dict[str, Any]], key: Key = sample_key) -> dict[tuple, dict[str, Any]]:
    """One record per key: the last result, else the last error."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in records:
        k = key(r)
        if k not in out or "error" in out[k] or "error" not in r:
            out[k] = r
    return out


class RunDir:
    """One run's folder: its log of records (each named by ``key``), the processes' parts, the report."""

    def __init__(self, path: Path, key: Key = sample_key):
        self.path = Path(path)
        self.key = key

    @classmethod
    def start(cls, path: Path, resume: bool, key: Key = sample_key) -> RunDir:
        """Check RUNDIR (main process): refuse to mix runs without ``resume``; fold a killed
        multi-process run's leftover parts. Every process returns once it is ready."""
        run = cls(path, key)
        if is_main():
            existing = (run.path / SAMPLES).exists() or any(run.path.glob(SAMPLES + ".part*"))
            if existing and not resume:
                raise InputError(f"{run.path} already holds a run ({SAMPLES})",
                                 hint="pass --resume to continue it, or choose another --out")
            run.path.mkdir(parents=True, exist_ok=True)
            run._merge()
        wait()
        return run

    def _merge(self) -> None:
        merge_parts(self.path / SAMPLES, lambda r: (*self.key(r), "error" in r))

    def done(self) -> set[tuple]:
        """The keys that already have a result (resume skips them)."""
        return {self.key(r) for r in read_jsonl(self.path / SAMPLES) if "error" not in r}

    def append(self, record: dict[str, Any]) -> None:
        """Log one record in this process's part (durable before it returns)."""
        append_jsonl(part_path(self.path / SAMPLES), record)

    def log_learned(self, record: dict[str, Any]) -> None:
        """Log one learn record (main process; every process learns the same concepts)."""
        if is_main():
            append_jsonl(self.path / LEARNED, record)

    def finish(self) -> list[dict[str, Any]]:
        """Merge the processes' parts (main process) and return every record of the run folder."""
        self._merge()
        return read_jsonl(self.path / SAMPLES)

    def learned(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / LEARNED)

    def write_report(self, report: dict[str, Any], markdown: str) -> None:
        """report.json and report.md, each atomically."""
        with atomic_write(self.path / "report.json") as fh:
            fh.write((json.dumps(report, indent=2) + "\n").encode())
        with atomic_write(self.path / "report.md") as fh:
            fh.write(markdown.encode())

    def report(self) -> dict[str, Any]:
        """report.json as written (what every process returns)."""
        return json.loads((self.path / "report.json").read_text())


def mask_path(rundir: Path, method: str, sample: Any, grid: bool = False) -> Path:
    """``bench personal``: ``RUNDIR/masks/<method>/<image-stem>/<concept>.png`` (``grid-masks/`` for
    the copies kept for grid.png only)."""
    return rundir / ("grid-masks" if grid else "masks") / method / sample.stem / f"{sample.concept}.png"


def voc_mask_path(rundir: Path, method: str, image_id: str) -> Path:
    """``bench voc``: ``RUNDIR/masks/<method>/<id>.png`` (a VOC palette PNG)."""
    return rundir / "masks" / method / f"{image_id}.png"


def video_mask_dir(rundir: Path, mode: str, method: str, seq: str, obj: int) -> Path:
    """``bench video``: ``RUNDIR/masks/<method>[-per-frame]/<seq>/<obj>/`` (one PNG per frame)."""
    name = method if mode == "temporal" else f"{method}-per-frame"
    return rundir / "masks" / name / seq / str(obj)


def progress_bar(enabled: bool):
    """The runners' rich progress bar on stderr, or None when disabled (other processes, tests)."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))


__all__ = ["LEARNED", "SAMPLES", "RunDir", "latest", "mask_path", "progress_bar",
           "sample_key", "video_mask_dir", "voc_mask_path"]
