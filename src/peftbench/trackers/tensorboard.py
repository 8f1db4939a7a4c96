"""TensorBoard: event files under ``ROOT/tensorboard/<group>/<run>``, written by PyTorch's
`SummaryWriter` (needs the ``tensorboard`` package); view with ``tensorboard --logdir``.

Steps log ``train/loss``, ``train/learning_rate`` and ``valid/<metric>``; the end logs every
figure as ``final/<figure>`` together with the spec as hyper-parameters (the HParams tab), and
the artifacts' paths as text (TensorBoard stores no files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftbench.trackers.base import Artifacts, RunInfo

#: the Python modules this tracker needs
MODULES = ("tensorboard",)


def run_folder(folder: Path, run: RunInfo) -> Path:
    """The event folder of ``run``: one per run, grouped by tournament."""
    return folder / (run.group or "runs") / run.name


class TensorBoardTracker:
    """Writes a run's events with `torch.utils.tensorboard.SummaryWriter`."""

    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer: Any = None
        self.params: dict[str, Any] = {}

    def start(self, run: RunInfo) -> None:
        """Open the run's event file and write its spec and tags as text."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_folder(self.folder, run)))
        self.params = {**run.params, **{f"tag.{k}": v for k, v in run.tags.items()}}
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(self.params.items()))
        self.writer.add_text("spec", f"| parameter | value |\n|---|---|\n{table}")

    def log(self, metrics: dict[str, float], step: int) -> None:
        """One scalar per metric at ``step``."""
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        """The figures as ``final/…`` scalars and hyper-parameter metrics; paths as text."""
        finals = {f"final/{k}": v for k, v in figures.items()}
        finals["final/succeeded"] = float(ok)
        self.writer.add_hparams(self.params, finals, run_name=".")
        paths = {"result": artifacts.result, "answers": artifacts.answers,
                 "adapter": artifacts.adapter_folder()}
        listed = {k: str(v) for k, v in paths.items() if v is not None}
        self.writer.add_text("artifacts", f"```json\n{json.dumps(listed, indent=1)}\n```")
        self.writer.close()
