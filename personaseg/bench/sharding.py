"""Sharding over processes (accelerate) and the append-only JSONL log that resume and sharding share.

Under ``accelerate launch --multi_gpu --num_processes N -m personaseg ...`` (on a machine without
GPUs too: the processes then join over gloo on the CPU; ``accelerate launch --cpu`` starts only one
process unless MPI is set up) every process runs the same command; each takes its
share of the work with :func:`shard`, appends one JSON line per finished item to its own part file
(:func:`part_path`), and after :func:`wait` the main process folds the parts into the run's log
(:func:`merge_parts`). A plain ``python -m personaseg`` is one process and writes the log directly.

    >>> for path in shard(files):        # `find` over a photo library, any number of processes
    ...     ...
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@lru_cache(maxsize=1)
def _state():
    """accelerate's PartialState. On a machine without CUDA, several launched processes (torchrun
    sets WORLD_SIZE) are joined as CPU processes (gloo); plain ``PartialState()`` would leave each
    one alone there. ``learn``'s Accelerator then reuses this state."""
    import torch
    from accelerate import PartialState

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or (launched and not torch.cuda.is_available())
    return PartialState(cpu=cpu)


def process_index() -> int:
    """This process's rank (0 without accelerate)."""
    return _state().process_index


def num_processes() -> int:
    """How many processes share the work (1 without accelerate)."""
    return _state().num_processes


def is_main() -> bool:
    """Whether this is the main process (writes reports, merges parts)."""
    return _state().is_main_process


def process_device() -> str | None:
    """This process's device under ``accelerate launch`` with several processes (``cuda:<local
    rank>`` on GPUs), else None (let the loader choose)."""
    device = _state().device
    return str(device) if num_processes() > 1 and device.type != "cpu" else None


def wait() -> None:
    """Barrier: every process reaches this line before any goes on (no-op for one process)."""
    if num_processes() > 1:
        _state().wait_for_everyone()


def shard(items: Sequence[T] | Iterable[T]) -> list[T]:
    """This process's share of ``items``: contiguous, near-equal chunks in order (accelerate's
    ``split_between_processes``); concatenating the shares of ranks 0..n-1 gives ``items`` back."""
    items = list(items)
    if num_processes() == 1:
        return items
    with _state().split_between_processes(items) as mine:
        return list(mine)


def split(items: Sequence[T], index: int, count: int) -> list[T]:
    """The ``index``-th of ``count`` contiguous chunks (the same split as :func:`shard`)."""
    n, extra = divmod(len(items), count)
    start = index * n + min(index, extra)
    return list(items[start:start + n + (1 if index < extra else 0)])


# --------------------------------------------------------------------------- the JSONL log


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


def part_path(path: str | Path, index: int | None = None) -> Path:
    """Where process ``index`` (default: this one) appends: ``path`` itself for a single process,
    ``<path>.part<index>`` when several share the run."""
    path = Path(path)
    if index is None:
        if num_processes() == 1:
            return path
        index = process_index()
    return path.with_name(f"{path.name}.part{index}")


def merge_parts(path: str | Path, key: Callable[[dict[str, Any]], Any]) -> int:
    """Fold every ``<path>.part*`` into ``path`` (records whose ``key`` is new), delete the parts.

    Main process only. Returns the number of records added. Each record is appended atomically, so
    a merge interrupted half-way is finished by the next one without duplicates.
    """
    path = Path(path)
    seen = {key(r) for r in read_jsonl(path)}
    added = 0
    for part in sorted(path.parent.glob(path.name + ".part*")):
        for record in read_jsonl(part):
            k = key(record)
            if k not in seen:
                append_jsonl(path, record)
                seen.add(k)
                added += 1
        part.unlink()
    return added


__all__ = [
    "append_jsonl", "is_main", "merge_parts", "num_processes", "part_path", "process_device", "process_index",
    "read_jsonl", "shard", "split", "wait",
]
