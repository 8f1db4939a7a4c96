"""Where a tournament's runs execute: local worker processes (the default) or a Ray cluster.

Both run every experiment in its own process (`peftbench.engine.worker`) and contain its failures:
a run that crashes, is killed, or exceeds the time limit becomes a result file with status
``failed`` or ``timeout``, and the tournament goes on. Results land in one folder either way;
a Ray run's result and adapter files are sent back to the driver and written there.
`InlineExecutor` runs in this process instead, for debugging and fast tests.

Modules, each importing only those listed above it: `base` (the run record and failure
results), `local` (worker processes), `ray` (a Ray cluster), `inline` (this process). Every
executor offers what `Executor` names; `EXECUTORS` finds one by the name the CLI is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.executors.base import (
    STATUS_INTERRUPTED,
    EventHandler,
    RunRecord,
    failure_result,
    record_failure,
    result_path,
)
from peftbench.tournament.executors.inline import InlineExecutor
from peftbench.tournament.executors.local import (
    LocalExecutor,
    kill_group,
    run_in_subprocess,
    threads_per_run,
)
from peftbench.tournament.executors.ray import RayExecutor, run_remotely, write_payload
from peftbench.trackers import TrackingConfig

__all__ = [
    "EXECUTORS",
    "STATUS_INTERRUPTED",
    "EventHandler",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "RayExecutor",
    "RunRecord",
    "failure_result",
    "get_executor",
    "kill_group",
    "record_failure",
    "result_path",
    "run_in_subprocess",
    "run_remotely",
    "threads_per_run",
    "write_payload",
]


class Executor(Protocol):
    """What every executor offers a tournament."""

    #: the name the CLI's ``--executor`` gives it
    name: str

    @classmethod
    def from_options(cls, *, jobs: int = 1, address: str | None = None,
                     timeout: float | None = None) -> Executor:
        """The executor for the CLI's ``--jobs``, ``--ray-address`` and ``--run-timeout``
        (each executor uses those that apply to it)."""
        ...

    def slots(self) -> int:
        """How many runs go at once."""
        ...

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None,
            tracking: TrackingConfig | None = None) -> Iterator[RunRecord]:
        """Run ``specs``, writing their results into ``out_dir``; yield each record as its
        run ends (a failed run too: its result file says why). Each run reports to the
        experiment trackers ``tracking`` names, from its own process."""
        ...

    def close(self) -> None:
        """Release what the executor holds (a Ray connection, ...)."""
        ...


#: executor name (the CLI's ``--executor``) -> class
EXECUTORS: dict[str, type[Executor]] = {
    "local": LocalExecutor,
    "ray": RayExecutor,
    "inline": InlineExecutor,
}


def get_executor(name: str) -> type[Executor]:
    """The executor class called ``name``; an unknown name is a `UserError`."""
    try:
        return EXECUTORS[name]
    except KeyError:
        known = ", ".join(f"'{n}'" for n in list(EXECUTORS)[:-1])
        raise UserError(f"unknown executor '{name}'; use {known} or "
                        f"'{list(EXECUTORS)[-1]}'") from None
