"""Weights & Biases, offline: each run is written under ``ROOT/wandb/wandb/offline-run-*``
and uploaded later, if wanted, with ``wandb sync``; nothing goes to the network.

Runs go to the project "peftbench"; a tournament's runs share a group named after the
tournament, and their job type and tags say search or final.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from peftbench.trackers.base import Artifacts, RunInfo

#: the Python modules this tracker needs
MODULES = ("wandb",)
PROJECT = "peftbench"


def artifact_name(text: str) -> str:
    """``text`` with the characters W&B refuses in an artifact name replaced."""
    return re.sub(r"[^\w.-]", "_", text)


class WandbTracker:
    """Logs a run with `wandb` in offline mode (no system-metrics sampling, no git probe)."""

    name = "wandb"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.run: Any = None
        self.info: RunInfo | None = None

    def start(self, run: RunInfo) -> None:
        """Start the offline run with the spec as its config."""
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", disable_git=True,
                                  disable_code=True, x_disable_stats=True,
                                  x_disable_machine_info=True)
        self.info = run
        self.run = wandb.init(
            project=PROJECT, group=run.group, job_type=run.stage, name=run.name,
            tags=[run.stage, run.tags.get("method", "")], config=run.params,
            dir=str(self.folder), mode="offline", settings=settings, reinit="create_new")

    def log(self, metrics: dict[str, float], step: int) -> None:
        """The metrics at ``step``."""
        self.run.log(metrics, step=step)

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        """The figures as the run's summary, the files and the adapter as artifacts."""
        import wandb

        self.run.summary.update(figures)
        name = artifact_name(self.info.name if self.info else "run")
        result = wandb.Artifact(f"result-{name}", type="result")
        for path in artifacts.files():
            result.add_file(str(path))
        self.run.log_artifact(result)
        adapter = artifacts.adapter_folder()
        if adapter is not None:
            model = wandb.Artifact(f"adapter-{name}", type="model")
            model.add_dir(str(adapter))
            self.run.log_artifact(model)
        self.run.finish(exit_code=0 if ok else 1)
