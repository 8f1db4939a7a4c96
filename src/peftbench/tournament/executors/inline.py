"""The inline executor: runs in this process, for debugging and fast tests of the logic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from peftbench.engine.results import STATUS_FAILED
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.executors.base import (
    EventHandler,
    RunRecord,
    record_failure,
    result_path,
)
from peftbench.trackers import TrackingConfig


class InlineExecutor:
    """Runs specs in this process, one after another: for debugging (a breakpoint reaches the
    run) and fast tests of the tournament's logic. No containment of crashes or hangs, and the
    memory figures include the caller's own; tournaments use `LocalExecutor`."""

    name = "inline"

    @classmethod
    def from_options(cls, *, jobs: int = 1, address: str | None = None,
                     timeout: float | None = None) -> InlineExecutor:
        """The executor the CLI's options ask for (all unused: one run at a time, no time
        limit, in this process)."""
        return cls()

    def slots(self) -> int:
        """One run at a time."""
        return 1

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None,
            tracking: TrackingConfig | None = None) -> Iterator[RunRecord]:
        """Run each spec with `run_experiment` (reporting to the trackers ``tracking`` names);
        a user error becomes a failed result."""
        from peftbench.engine.experiment import run_experiment

        for spec in specs:
            if on_start:
                on_start(spec)
            started = time.perf_counter()
            try:
                outcome = run_experiment(spec, out_dir, progress=False,
                                         save_adapter=save_adapter, tracking=tracking)
            except UserError as exc:
                yield record_failure(spec, result_path(spec, out_dir), STATUS_FAILED, str(exc),
                                      time.perf_counter() - started)
                continue
            yield RunRecord.from_result(spec, outcome.path, outcome.result,
                                        time.perf_counter() - started)

    def close(self) -> None:
        """Nothing to release."""
