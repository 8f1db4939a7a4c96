"""A tournament's folder: finished results (what a resume skips), the lock that keeps two
tournaments out of one folder, leftovers of a killed one, and the ``tournament.json`` manifest.

Resume comes from content hashes: every run's result file is named by the hash of its spec, so
`existing_results` finds the finished runs of a repeated command by their specs alone.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import Any

from peftbench.engine.record import ResultView
from peftbench.engine.results import STATUS_FAILED, STATUS_SUCCESS, atomic_write_json
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.executors.base import RunRecord
from peftbench.tournament.outcome import TournamentOutcome

#: results with these statuses are final: a resumed tournament does not run them again
FINISHED = (STATUS_SUCCESS, STATUS_FAILED)


def existing_results(out_dir: Path, finished: tuple[str, ...] = FINISHED
                     ) -> dict[str, RunRecord]:
    """Finished results already in ``out_dir``, by spec hash (what a resumed run skips);
    ``finished`` names the statuses that count as finished."""
    found: dict[str, RunRecord] = {}
    for path in sorted(out_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            view = ResultView(data)
            spec = ExperimentSpec.model_validate(view.spec_data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if view.status in finished and spec.content_hash() == view.spec_hash:
            found[view.spec_hash] = RunRecord.from_result(spec, path, data, reused=True)
    return found


class FolderLock:
    """An exclusive lock on a tournament folder: two tournaments never write one folder.
    The kernel releases it when the process dies, even by SIGKILL."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".tournament.lock"

    def __enter__(self) -> FolderLock:
        self.fh = open(self.path, "w")  # noqa: SIM115 - held for the context's lifetime
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise UserError(f"{self.path.parent}: another tournament is running in this "
                            "folder") from None
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def remove_leftovers(out_dir: Path) -> int:
    """Delete temp files a killed tournament left (never a finished result); returns how many."""
    removed = 0
    for pattern in (".spec-*.tmp", ".*.json.*.tmp"):
        for path in out_dir.glob(pattern):
            path.unlink(missing_ok=True)
            removed += 1
    adapters = out_dir / "adapters"
    if adapters.is_dir():
        for path in adapters.glob(".*.tmp"):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def write_manifest(outcome: TournamentOutcome) -> Path:
    """``tournament.json``: the config, the plan and each technique's chosen rate and runs."""
    plan = outcome.plan
    data = {
        "config": plan.cfg.model_dump(mode="json"),
        "excluded": plan.excluded,
        "rungs": plan.rungs,
        "seconds": outcome.seconds,
        "estimate": outcome.estimate,
        "techniques": {
            m: {"grid": plan.grids[m], "extended": t.extended, "chosen_lr": t.chosen_lr,
                "note": t.note,
                "selected_on": "validation",
                "search": [_run_entry(r) for r in t.search],
                "finals": [_run_entry(r) for r in t.finals]}
            for m, t in outcome.techniques.items()
        },
    }
    return atomic_write_json(outcome.out_dir / "tournament.json", data)


def _run_entry(record: RunRecord) -> dict[str, Any]:
    view = record.view
    return {"file": record.path.name, "status": record.status, "lr": record.spec.train.lr,
            "seed": record.spec.train.seed, "steps": record.spec.train.steps_to_run(),
            "valid_score": view.valid_score, "test_score": view.test_score,
            "error": record.error or None}

