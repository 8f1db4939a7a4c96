"""Experiment trackers: a run's progress and results in TensorBoard, MLflow, W&B or Trackio.

``--report-to tensorboard,mlflow,wandb,trackio`` (any subset) makes each run report, from its
own process, to every tracker named: per step the training loss and learning rate, per
validation the score, at the end every figure of its result file, with the spec as parameters
and the result file, test answers and adapter as artifacts. Each tracker writes to its own
local store under one tracking folder, offline (`TrackingConfig`); a tournament's runs share a
group named after the tournament and are tagged search or final.

Its modules, each importing only those listed above it: `base` (the settings, what a run
tells its trackers, the `Tracker` protocol), one adapter per tracker (`tensorboard`, `mlflow`,
`wandb`, `trackio`, each importing its package only when a run starts), `session`
(`RunTracking`, one run's trackers together). The packages come with the extra
``peftbench[trackers]``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from peftbench.errors import UserError, did_you_mean
from peftbench.trackers.base import (
    TRACKER_NAMES,
    Artifacts,
    RunInfo,
    Tracker,
    TrackingConfig,
    flatten,
)
from peftbench.trackers.session import RunTracking, make_tracker

__all__ = ["EXTRA", "TRACKER_NAMES", "Artifacts", "RunInfo", "RunTracking", "Tracker",
           "TrackingConfig", "check_installed", "flatten", "make_tracker", "missing_modules",
           "parse_report_to", "prepare_stores", "tracking_config", "viewing_hints"]

#: how to install every tracker's packages
EXTRA = "pip install 'peftbench[trackers]'"
#: the trackers' names as people write them
LABELS = {"tensorboard": "TensorBoard", "mlflow": "MLflow", "wandb": "Weights & Biases",
          "trackio": "Trackio"}


def parse_report_to(text: str | None) -> list[str]:
    """The tracker names in ``--report-to`` text (``none`` or empty: none); an unknown name
    is a `UserError` with the closest known one."""
    names: list[str] = []
    for raw in (text or "").split(","):
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        if name not in TRACKER_NAMES:
            raise UserError(f"unknown tracker '{raw.strip()}'"
                            f"{did_you_mean(name, TRACKER_NAMES)} (known: "
                            f"{', '.join(TRACKER_NAMES)}, none)")
        if name not in names:
            names.append(name)
    return names


def missing_modules(name: str) -> list[str]:
    """The Python modules tracker ``name`` needs that are not installed."""
    module = importlib.import_module(f"peftbench.trackers.{name}")
    return [m for m in module.MODULES if importlib.util.find_spec(m) is None]


def check_installed(names: list[str]) -> None:
    """A `UserError` naming the extra to install when a tracker's package is missing."""
    for name in names:
        missing = missing_modules(name)
        if missing:
            raise UserError(f"{LABELS[name]} is not installed (missing "
                            f"{', '.join(missing)}); {EXTRA}")


def tracking_config(report_to: str | None, root: Path, group: str | None = None,
                    results: Path | None = None) -> TrackingConfig | None:
    """The tracking settings of a command (None when ``--report-to`` names no tracker): the
    trackers checked installed, the folder outside the results folder ``results`` (MLflow
    keeps a copy of each result file, which a folder of results must not hold twice)."""
    names = parse_report_to(report_to)
    if not names:
        return None
    check_installed(names)
    root = root.expanduser().resolve()
    if results is not None and root.is_relative_to(results.expanduser().resolve()):
        raise UserError(f"--tracking-dir {root}: must be outside the results folder "
                        f"{results} (the trackers keep copies of the result files)")
    return TrackingConfig(report_to=names, root=str(root), group=group)


def prepare_stores(config: TrackingConfig | None) -> None:
    """Create the stores that runs in several processes share (MLflow's database and the
    tournament's experiment), once, before the runs start."""
    if config is not None and "mlflow" in config.report_to:
        from peftbench.trackers import mlflow as mlflow_tracker

        project = RunInfo("", "", config.group).project
        mlflow_tracker.prepare(config.folder("mlflow"), project)


def viewing_hints(config: TrackingConfig) -> list[str]:
    """One line per tracker: where its runs are and the command that shows them."""
    hints = {
        "tensorboard": f"tensorboard --logdir {config.folder('tensorboard')}",
        "mlflow": "mlflow ui --backend-store-uri sqlite:///"
                  f"{config.folder('mlflow') / 'mlflow.db'}",
        "wandb": f"wandb sync {config.folder('wandb') / 'wandb'}/offline-run-*",
        "trackio": f"TRACKIO_DIR={config.folder('trackio')} trackio show",
    }
    return [f"{LABELS[n]}: {hints[n]}" for n in config.report_to]
