"""What every executor shares: the record of a run, where its result goes, and the result
file written for a run that could not write its own (crashed, killed, timed out, rejected)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.engine.inputs import InputRecord, record_inputs
from peftbench.engine.record import ResultRecord, ResultView, train_config_of
from peftbench.engine.results import atomic_write_json, result_filename
from peftbench.engine.spec import ExperimentSpec

#: the status of a run stopped by the tournament's own interruption: no file, run it again
STATUS_INTERRUPTED = "interrupted"

#: called with (spec, event) for each progress event of a running spec
EventHandler = Callable[[ExperimentSpec, dict[str, Any]], None]


@dataclass
class RunRecord:
    """What the tournament learns from one run: its status and where its result file is."""

    spec: ExperimentSpec
    status: str
    path: Path
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    reused: bool = False  # found finished in the output folder (resume), not run now

    @classmethod
    def from_result(cls, spec: ExperimentSpec, path: Path, result: dict[str, Any],
                    seconds: float = 0.0, reused: bool = False) -> RunRecord:
        """The record of a run whose result file holds ``result``."""
        view = ResultView(result)
        return cls(spec, view.status or "", path, result, view.error, seconds, reused)

    @property
    def view(self) -> ResultView:
        """Typed reads of the run's result."""
        return ResultView(self.result)

    @property
    def train_info(self) -> dict[str, Any]:
        """The result's ``train_info`` (empty when there is none)."""
        return self.view.train_info


def result_path(spec: ExperimentSpec, out_dir: Path) -> Path:
    """Where a spec's result file goes: its name and content hash make it unique."""
    return out_dir / result_filename(spec.display_name(), spec.content_hash())


def failure_result(spec: ExperimentSpec, status: str, error: str, seconds: float) -> dict[str, Any]:
    """A result file for a run that could not write its own (killed, timed out, rejected):
    the PEFT-suite layout with the spec, the status and the error, and no measurements."""
    from peftbench.engine.measure import package_versions

    return ResultRecord(
        spec=spec, status=status, error=error,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), total_time=seconds,
        train_config=train_config_of(spec), meta_info={"package_info": package_versions()},
        inputs=_inputs(spec),
    ).to_json()


def _inputs(spec: ExperimentSpec) -> list[InputRecord]:
    """The spec's inputs by content, as they are now ([] when a file cannot be read)."""
    try:
        return record_inputs(spec)
    except OSError:
        return []


def record_failure(spec: ExperimentSpec, target: Path, status: str, error: str,
                   seconds: float) -> RunRecord:
    """Write `failure_result` to ``target`` and return the failed run's record."""
    result = failure_result(spec, status, error, seconds)
    atomic_write_json(target, result)
    return RunRecord(spec, status, target, result, error, seconds)
