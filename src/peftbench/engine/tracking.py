"""What a run reports to its experiment trackers (`peftbench.trackers`): its name, stage, spec
and tags when it starts, and every figure of its result file when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.engine.spec import ExperimentSpec
from peftbench.trackers import Artifacts, RunInfo, RunTracking, TrackingConfig, flatten


def run_stage(spec: ExperimentSpec, config: TrackingConfig | None) -> str:
    """"search" for a tuning run (test never scored), "final" for a tournament's reported run,
    "run" for a single `peftbench run`."""
    if not spec.train.eval_test:
        return "search"
    return "final" if config is not None and config.group else "run"


def run_info(spec: ExperimentSpec, name: str, config: TrackingConfig | None) -> RunInfo:
    """What the run tells its trackers when it starts: the spec as flat parameters."""
    stage = run_stage(spec, config)
    tags = {"stage": stage, "method": spec.method, "model": spec.model,
            "task": spec.task, "spec_hash": spec.content_hash()}
    if config is not None and config.group:
        tags["tournament"] = config.group
    params = flatten(spec.model_dump(mode="json"))
    return RunInfo(name=name, stage=stage, group=config.group if config else None,
                   params=params, tags=tags)


def open_tracking(spec: ExperimentSpec, name: str, config: TrackingConfig | None
                  ) -> RunTracking:
    """The run's trackers (none without ``config``), not started yet."""
    return RunTracking.open(config, run_info(spec, name, config))


def final_figures(result: dict[str, Any]) -> dict[str, float]:
    """Every figure the result file measured: the numbers of its ``train_info`` (booleans as
    0/1; lists, texts and missing values left out)."""
    info = result.get("train_info") or {}
    figures = {}
    for key, value in info.items():
        if isinstance(value, bool):
            figures[key] = float(value)
        elif isinstance(value, int | float) and value == value:  # NaN is no figure
            figures[key] = float(value)
    return figures


def finish_tracking(tracking: RunTracking, result: dict[str, Any], path: Path,
                    answers: Path | None, adapter: Path | None, ok: bool) -> None:
    """Close the run in its trackers with its figures and files."""
    tracking.finish(final_figures(result), Artifacts(path, answers, adapter), ok)
