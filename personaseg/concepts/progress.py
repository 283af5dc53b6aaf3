"""The rich progress bar of ``learn``: steps, loss, steps/s, elapsed time and ETA (on stderr)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class _Rate(ProgressColumn):
    """Optimizer steps per second, as rich measures the task's speed."""

    def render(self, task) -> Text:
        speed = task.speed
        return Text(f"{speed:.2f} steps/s" if speed else "-- steps/s", style="progress.data.speed")


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self.progress, self.task = progress, task

    def update(self, step: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}")


@contextmanager
def learn_progress(token: str, total: int, start: int, enabled: bool) -> Iterator[_Bar]:
    """Yield an object with ``update(step, loss)``; a no-op when ``enabled`` is False."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn(f"learning {token}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        refresh_per_second=4,  # the render thread holds the GIL; training needs it more
    )
    with progress:
        task = progress.add_task("learn", total=total, completed=start, loss="-")
        yield _Bar(progress, task)
