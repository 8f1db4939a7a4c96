"""What every executor shares: the record of a run, where its result goes, and the result
file written for a run that could not write its own (crashed, killed, timed out, rejected)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    @property
    def train_info(self) -> dict[str, Any]:
        """The result's ``train_info`` (empty when there is none)."""
        return self.result.get("train_info", {})


def result_path(spec: ExperimentSpec, out_dir: Path) -> Path:
    """Where a spec's result file goes: its name and content hash make it unique."""
    return out_dir / result_filename(spec.display_name(), spec.content_hash())


def failure_result(spec: ExperimentSpec, status: str, error: str, seconds: float) -> dict[str, Any]:
    """A result file for a run that could not write its own (killed, timed out, rejected):
    the PEFT-suite layout with the spec, the status and the error, and no measurements."""
    from peftbench.engine.measure import package_versions

    return {
        "run_info": {
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "total_time": seconds,
            "experiment_name": f"{spec.method}/{spec.display_name()}",
            "train_config": {"model_id": spec.model, "seed": spec.train.seed,
                             "optimizer_kwargs": {"lr": spec.train.lr},
                             "max_steps": spec.train.max_steps, "task": spec.task},
            "peft_config": {"method": spec.method, **spec.adapter_config},
            "error_msg": error,
            "peftbench": {"spec": spec.model_dump(mode="json"),
                          "spec_hash": spec.content_hash(), "method": spec.method,
                          "lr": spec.train.lr, "adapter_path": None},
        },
        "train_info": {"status": status, "metrics": [], "total_time": seconds},
        "meta_info": {"package_info": package_versions()},
    }


def record_failure(spec: ExperimentSpec, target: Path, status: str, error: str,
                   seconds: float) -> RunRecord:
    """Write `failure_result` to ``target`` and return the failed run's record."""
    result = failure_result(spec, status, error, seconds)
    atomic_write_json(target, result)
    return RunRecord(spec, status, target, result, error, seconds)
