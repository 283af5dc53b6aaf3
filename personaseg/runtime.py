"""Where the work runs: the accelerator (device, mixed precision, processes), sharding over
processes, the per-process parts of a JSONL log, and the user's personaseg home folder.

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

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, PersonasegWarning
from .io import append_jsonl, read_jsonl

T = TypeVar("T")


@lru_cache(maxsize=1)
def _state():
    """accelerate's PartialState. On a machine without CUDA, several launched processes (torchrun
    sets WORLD_SIZE) are joined as CPU processes (gloo); plain ``PartialState()`` would leave each
    one alone there. ``learn``'s Accelerator then reuses this state."""
    from accelerate import PartialState

    return PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or _join_on_cpu())


def _join_on_cpu() -> bool:
    """Several processes launched (torchrun sets WORLD_SIZE) on a machine without CUDA: they must
    join over gloo on the CPU, or each would work alone."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


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


# --------------------------------------------------------------------------- logs shared by processes


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


# --------------------------------------------------------------------------- the accelerator


class AccelerateWarning(PersonasegWarning):
    """A requested mixed precision the device lacks (training goes on in fp32)."""


def make_accelerator(mixed_precision: str = "no", grad_accum: int = 1, cpu: bool = False):
    """accelerate's ``Accelerator`` for device, mixed precision and gradient accumulation
    (``cpu=True``: on the CPU even where a GPU is visible)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    kwargs = dict(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum, cpu=cpu or _join_on_cpu())
    try:
        acc = Accelerator(**kwargs)
    except ValueError as err:
        if "already been initialized" not in str(err):
            raise ConfigError(f"cannot train with mixed precision {mixed_precision}: {err}") from None
        AcceleratorState._reset_state()  # an earlier run in this process used other settings
        acc = Accelerator(**kwargs)
    if mixed_precision != "no" and not acc.native_amp:
        warnings.warn(
            f"{mixed_precision} mixed precision is not available on {acc.device.type}: training in "
            "fp32 (on CPU, bf16 works)",
            AccelerateWarning,
            stacklevel=3,
        )
    return acc


# --------------------------------------------------------------------------- the home folder

HOME_ENV = "PERSONASEG_HOME"


def home_dir(kind: str) -> Path:
    """The user's ``kind`` folder (``concepts``, ``bench-concepts``): ``$PERSONASEG_HOME/<kind>``;
    without it ``<user data dir>/personaseg/concepts`` for the concept store, and the user cache
    folder for the rest (benchmark concepts are not the user's own)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / kind
    import platformdirs

    if kind == "concepts":
        return Path(platformdirs.user_data_dir()) / "personaseg" / kind
    return Path(platformdirs.user_cache_dir("personaseg")) / kind


__all__ = [
    "HOME_ENV", "AccelerateWarning", "home_dir", "is_main", "make_accelerator", "merge_parts", "num_processes",
    "part_path", "process_device", "process_index", "shard", "wait",
]
