"""What every tracker adapter shares: the settings a run is given, what a run tells its
trackers, and the protocol each adapter follows.

A run tells its trackers three things, in order: `Tracker.start` (its name, group, stage, the
spec as parameters and a few tags), `Tracker.log` once per training step (loss, learning rate)
and per validation (the score), and `Tracker.finish` once at the end (every figure the result
file holds, and the result file, test answers and adapter folder as artifacts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

#: the name of each tracker's sub-folder under the tracking folder, and of its adapter module
TRACKER_NAMES = ("tensorboard", "mlflow", "wandb", "trackio")


class TrackingConfig(BaseModel):
    """Where a run reports: the trackers, the folder of their local stores, the group.

    It travels to a worker process as one command-line argument (`to_arg`); it is never part
    of the spec, so it never changes a run's content hash.
    """

    model_config = ConfigDict(extra="forbid")

    report_to: list[str] = Field(default_factory=list, description="tracker names")
    root: str = Field(description="the tracking folder (absolute): one sub-folder per tracker")
    group: str | None = Field(None, description="the tournament's name (its folder's name)")

    def folder(self, tracker: str) -> Path:
        """The local store of ``tracker`` (``ROOT/<tracker>``)."""
        return Path(self.root) / tracker

    def to_arg(self) -> str:
        """The config as one command-line argument (JSON)."""
        return self.model_dump_json()

    @classmethod
    def from_arg(cls, text: str) -> TrackingConfig:
        """The config from `to_arg`'s text."""
        return cls.model_validate_json(text)


@dataclass
class RunInfo:
    """What a run tells its trackers when it starts."""

    name: str  # the result file's stem: unique, and the same in every tracker
    stage: str  # "search" (a tuning run), "final" (a reported run) or "run" (`peftbench run`)
    group: str | None = None  # the tournament's name; None for a single run
    params: dict[str, str | int | float | bool] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def project(self) -> str:
        """The project or experiment the run belongs to: its tournament, else "peftbench"."""
        return self.group or "peftbench"


@dataclass
class Artifacts:
    """The files a finished run leaves: its result file, test answers and adapter folder."""

    result: Path
    answers: Path | None = None
    adapter: Path | None = None

    def files(self) -> list[Path]:
        """The result and answers files that exist."""
        return [p for p in (self.result, self.answers) if p is not None and p.is_file()]

    def adapter_folder(self) -> Path | None:
        """The adapter folder, when the run saved one."""
        return self.adapter if self.adapter is not None and self.adapter.is_dir() else None


class Tracker(Protocol):
    """One tracker's adapter; each writes to its own local store, offline."""

    #: the name ``--report-to`` gives it
    name: str

    def start(self, run: RunInfo) -> None:
        """Open the run (import the tracker, create the run, log its parameters)."""
        ...

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log metrics at an optimizer step."""
        ...

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        """Log the final figures and the artifacts, then close the run (failed unless ``ok``)."""
        ...


def flatten(data: Any, prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested mappings as one level of dotted keys; lists become JSON text, None "None"."""
    if isinstance(data, dict):
        out: dict[str, str | int | float | bool] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    key = prefix.rstrip(".")
    if isinstance(data, bool | int | float | str):
        return {key: data}
    if data is None:
        return {key: "None"}
    return {key: json.dumps(data, sort_keys=True)}
