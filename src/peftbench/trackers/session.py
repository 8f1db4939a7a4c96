"""One run's trackers together: `RunTracking` forwards each event to every tracker.

A tracker that fails (a full disk, a locked database) is reported once on stderr and dropped;
the run goes on, since its result file is what matters. Tracker packages are imported only
when `RunTracking.start` runs, which the experiment calls before training's memory figures are
reset, so that a tracker's imports never count as the training's memory.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from peftbench.trackers.base import Artifacts, RunInfo, Tracker, TrackingConfig

#: tracker name -> (module, adapter class) under `peftbench.trackers`
ADAPTERS = {"tensorboard": "TensorBoardTracker", "mlflow": "MlflowTracker",
            "wandb": "WandbTracker", "trackio": "TrackioTracker"}


def make_tracker(config: TrackingConfig, name: str) -> Tracker:
    """The adapter of tracker ``name``, writing under its folder of ``config``."""
    module = importlib.import_module(f"peftbench.trackers.{name}")
    return getattr(module, ADAPTERS[name])(config.folder(name))


class RunTracking:
    """The trackers of one run: `start`, then `log` per step, then `finish` once."""

    def __init__(self, trackers: list[Tracker], run: RunInfo) -> None:
        self.trackers, self.run = list(trackers), run
        self.started = False

    @classmethod
    def open(cls, config: TrackingConfig | None, run: RunInfo) -> RunTracking:
        """The trackers ``config`` asks for (none when it is None); nothing is imported or
        written before `start`."""
        names = config.report_to if config is not None else []
        return cls([make_tracker(config, n) for n in names] if config else [], run)

    def start(self) -> None:
        """Open the run in every tracker (once)."""
        if not self.started:
            self.started = True
            self._each("start", lambda t: t.start(self.run))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at ``step`` in every tracker."""
        if self.started:
            self._each("log", lambda t: t.log(metrics, step))

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        """Close the run in every tracker, with its figures and artifacts."""
        if self.started:
            self._each("finish", lambda t: t.finish(figures, artifacts, ok))
            self.trackers = []

    def _each(self, what: str, call: Callable[[Tracker], Any]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:  # a tracker's failure never fails the run
                self.trackers.remove(tracker)
                message = " ".join(str(exc).split())[:300]
                print(f"note: tracker {tracker.name} failed ({what}: {type(exc).__name__}: "
                      f"{message}); the run goes on without it", file=sys.stderr, flush=True)
