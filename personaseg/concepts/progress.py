"""The rich progress bar of ``learn``: steps, loss, steps/s, elapsed time and ETA (on stderr); or a
function of the caller's (a web page, a notebook) told each step, which may ask to stop."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Union

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

# called after every step with (step done, total steps, mean recent loss); True asks to stop
StepCallback = Callable[[int, int, float], Union[bool, None]]


class _Rate(ProgressColumn):
    """Optimizer steps per second, as rich measures the task's speed."""

    def render(self, task) -> Text:
        speed = task.speed
        return Text(f"{speed:.2f} steps/s" if speed else "-- steps/s", style="progress.data.speed")


class _Bar:
    def __init__(self, progress: Progress | None, task, total: int = 0, callback: StepCallback | None = None):
        self.progress, self.task, self.total, self.callback = progress, task, total, callback

    def update(self, step: int, loss: float) -> bool:
        """Show the step; True when the callback asks to stop."""
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}")
        return bool(self.callback(step, self.total, loss)) if self.callback is not None else False


@contextmanager
def learn_progress(token: str, total: int, start: int, enabled: bool | StepCallback) -> Iterator[_Bar]:
    """Yield an object with ``update(step, loss)``: a rich bar, a no-op when ``enabled`` is False, or
    ``enabled`` itself called when it is a function."""
    if callable(enabled):
        yield _Bar(None, None, total, enabled)
        return
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
