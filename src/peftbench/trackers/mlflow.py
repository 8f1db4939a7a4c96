"""MLflow: a local store under ``ROOT/mlflow`` (runs in the SQLite database ``mlflow.db``,
artifacts in ``artifacts/``), written through `MlflowClient`; no server involved. View it with
``mlflow ui --backend-store-uri sqlite:///ROOT/mlflow/mlflow.db`` (the UI needs the full
``mlflow`` package; logging needs only ``mlflow-skinny`` with SQLAlchemy and Alembic).

A tournament's runs share one experiment named after the tournament; each run carries the
tags ``peftbench.stage`` (search or final), ``peftbench.method`` and ``peftbench.spec_hash``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from peftbench.trackers.base import Artifacts, RunInfo

#: the Python modules this tracker needs (the SQLite store needs SQLAlchemy and Alembic)
MODULES = ("mlflow", "sqlalchemy", "alembic")
#: MLflow's limits: characters of a parameter's value, entries of one batch
MAX_VALUE, MAX_BATCH = 6000, 100


def tracking_uri(folder: Path) -> str:
    """The SQLite store's URI for the tracker folder ``folder``."""
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def client(folder: Path) -> Any:
    """An `MlflowClient` on the local store (created on first use; MLflow's INFO logs off)."""
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # after the import: MLflow sets its levels then
        logging.getLogger(name).setLevel(logging.WARNING)

    folder.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri(folder))


def experiment_id(mlflow_client: Any, folder: Path, name: str) -> str:
    """The id of the experiment ``name``, created (artifacts under ``folder/artifacts``) when
    missing."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (folder / "artifacts").resolve().as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # another run created it meanwhile
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def prepare(folder: Path, project: str) -> None:
    """Create the store and the experiment once, before worker processes share them."""
    experiment_id(client(folder), folder, project)


class MlflowTracker:
    """Logs a run to the local MLflow store."""

    name = "mlflow"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client: Any = None
        self.run_id = ""
        self.last_step = 0

    def start(self, run: RunInfo) -> None:
        """Create the run in its experiment with its tags, and log the spec as parameters."""
        from mlflow.entities import Param

        self.client = client(self.folder)
        exp = experiment_id(self.client, self.folder, run.project)
        tags = {f"peftbench.{k}": v for k, v in run.tags.items()}
        self.run_id = self.client.create_run(exp, run_name=run.name, tags=tags).info.run_id
        params = [Param(k, str(v)[:MAX_VALUE]) for k, v in sorted(run.params.items())]
        for i in range(0, len(params), MAX_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_BATCH])

    def log(self, metrics: dict[str, float], step: int) -> None:
        """The metrics at ``step``, in one batch."""
        self._metrics(metrics, step)
        self.last_step = max(self.last_step, step)

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        """The figures (at the last step), the files and the adapter folder, then the status."""
        self._metrics(figures, self.last_step)
        for path in artifacts.files():
            self.client.log_artifact(self.run_id, str(path))
        adapter = artifacts.adapter_folder()
        if adapter is not None:
            self.client.log_artifacts(self.run_id, str(adapter), "adapter")
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i:i + MAX_BATCH])
