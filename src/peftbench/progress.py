"""Rich progress bars with ETA, shared by training and evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def make_progress(enabled: bool = True) -> Progress:
    """A progress display: description, bar, done/total, elapsed, ETA, and a free-text field."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )


@contextlib.contextmanager
def phase(progress: Progress, description: str, total: int) -> Iterator[Callable[..., None]]:
    """A bar for one phase; yields ``advance(n=1, info=None)`` (info: text shown after it)."""
    task = progress.add_task(description, total=total, info="")

    def advance(n: int = 1, info: str | None = None) -> None:
        progress.update(task, advance=n, **({"info": info} if info is not None else {}))

    try:
        yield advance
    finally:
        progress.update(task, completed=total)
