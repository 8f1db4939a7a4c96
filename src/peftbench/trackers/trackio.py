"""Trackio, local: runs in SQLite databases under ``ROOT/trackio`` (Trackio's ``TRACKIO_DIR``);
view them with ``TRACKIO_DIR=ROOT/trackio trackio show``.

Runs go to the project "peftbench"; a tournament's runs share a group named after the
tournament, and their config says search or final. Trackio reads ``TRACKIO_DIR`` when it is
first imported, so the adapter sets it first (a run is its own process). What Trackio prints
(how to open its dashboard, run created, run finished) is dropped: stdout belongs to peftbench
(a run's result path, a worker's progress events), and peftbench says where the runs are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peftbench.trackers.base import Artifacts, RunInfo

#: the Python modules this tracker needs
MODULES = ("trackio",)
PROJECT = "peftbench"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Trackio's printed messages dropped (its warnings still go to stderr)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


class TrackioTracker:
    """Logs a run with `trackio` to its local store (no system-metrics sampling)."""

    name = "trackio"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.run: Any = None
        self.last_step = 0

    def start(self, run: RunInfo) -> None:
        """Start the run with the spec and tags as its config."""
        self.folder.mkdir(parents=True, exist_ok=True)
        os.environ["TRACKIO_DIR"] = str(self.folder.resolve())
        with quiet():
            import trackio

            config = {**run.params, **{f"peftbench.{k}": v for k, v in run.tags.items()}}
            self.run = trackio.init(project=PROJECT, name=run.name, group=run.group,
                                    config=config, auto_log_cpu=False, auto_log_gpu=False)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """The metrics at ``step``."""
        with quiet():
            self.run.log(metrics, step=step)
        self.last_step = max(self.last_step, step)

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        """The figures as ``final/…`` (at the last step), the files and the adapter as
        artifacts, then the end of the run."""
        with quiet():
            finals = {f"final/{k}": v for k, v in figures.items()}
            self.run.log({**finals, "final/succeeded": float(ok)}, step=self.last_step)
            for path in artifacts.files():
                self.run.log_artifact(path, type="result")
            adapter = artifacts.adapter_folder()
            if adapter is not None:
                self.run.log_artifact(adapter, type="model")
            import trackio

            trackio.finish()  # the run, and Trackio's own record of the current run
