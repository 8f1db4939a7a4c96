"""Rich progress bars with ETA, shared by training and evaluation."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

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


# A tournament runs each experiment in a worker process; the worker reports its progress as
# lines on stdout that start with this marker, and the parent draws them as its own bar.
EVENT_PREFIX = "@@peftbench "


class EventProgress:
    """Rich-`Progress`-compatible reporter that writes progress events as JSON lines.

    Used by a tournament worker: ``phase()`` and ``run_experiment`` call ``add_task`` and
    ``update`` as they would on a Rich display; each call becomes (at most every
    ``min_interval`` seconds, and always at a phase's start and end) one line
    ``@@peftbench {"description": ..., "completed": ..., "total": ..., "info": ...}``.
    """

    def __init__(self, stream: Any, min_interval: float = 0.25) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self.tasks: dict[int, dict[str, Any]] = {}
        self._last = 0.0

    def __enter__(self) -> EventProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        """Start a phase; returns its id."""
        task_id = len(self.tasks)
        self.tasks[task_id] = {"description": description, "completed": 0, "total": total,
                               "info": fields.get("info", "")}
        self._emit(task_id, force=True)
        return task_id

    def update(self, task_id: int, *, advance: float | None = None,
               completed: float | None = None, **fields: Any) -> None:
        """Advance or set a phase's progress (and its free-text info)."""
        task = self.tasks[task_id]
        if advance is not None:
            task["completed"] += advance
        if completed is not None:
            task["completed"] = completed
        if "info" in fields:
            task["info"] = fields["info"]
        done = task["total"] is not None and task["completed"] >= task["total"]
        self._emit(task_id, force=done)

    def _emit(self, task_id: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write(EVENT_PREFIX + json.dumps(self.tasks[task_id]) + "\n")
        self.stream.flush()


def parse_event(line: str) -> dict[str, Any] | None:
    """The event carried by a worker's output line, or None for any other line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
