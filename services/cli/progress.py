"""Progress bars for long CLI operations, shown only on a terminal, in the units shown everywhere (MiB, MiB/s)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from services.cli.fmt import human_bytes, human_rate, printable


class BytesColumn(ProgressColumn):
    """``12.5 MiB/100.0 MiB``, in the binary units of `emma downloads`."""

    def render(self, task: Task) -> Text:
        total = f"/{human_bytes(task.total)}" if task.total is not None else ""
        return Text(f"{human_bytes(task.completed)}{total}", style="progress.download")


class RateColumn(ProgressColumn):
    """``1.5 MiB/s`` (``-`` before the first bytes)."""

    def render(self, task: Task) -> Text:
        return Text(human_rate(task.finished_speed or task.speed or 0.0), style="progress.data.speed")


def columns() -> tuple[ProgressColumn, ...]:
    return (TextColumn("{task.description}", markup=False), BarColumn(), BytesColumn(), RateColumn(),
            TimeRemainingColumn())


@contextmanager
def byte_progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """Yield an ``advance(nbytes)`` callback, or None when stderr is not a TTY.

    ``label`` is shown as text (escaped, never read as rich markup): it often holds a file name.
    """
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(*columns(), transient=True) as bar:
        task = bar.add_task(printable(label), total=total)
        yield lambda n: bar.advance(task, n)
