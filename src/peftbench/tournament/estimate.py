"""How long a plan will take: one short calibration run, then an estimate for every run."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from peftbench.engine.results import STATUS_SUCCESS, atomic_write_json
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.executors import Executor
from peftbench.tournament.plan import Plan, TournamentConfig, final_spec, search_spec


@dataclass
class Calibration:
    """Seconds measured on one short run, for the plan's time estimate."""

    startup: float  # process start, model and data loading, everything outside train/eval
    step: float  # one optimizer step
    validation: float  # one pass over the validation split
    test_ratio: float = 2.0  # test split size / validation split size

    def estimate(self, spec: ExperimentSpec) -> float:
        """Seconds one run of ``spec`` should take."""
        train = spec.train
        steps = train.steps_to_run()
        validations = max(1, steps // train.resolved_eval_every()) + (
            1 if steps % train.resolved_eval_every() else 0)
        seconds = self.startup + steps * self.step + validations * self.validation
        if train.eval_test:
            # test, plus forgetting and inference probes: about one more validation pass
            seconds += self.validation * (self.test_ratio + 1)
        if train.eval_base:
            seconds += self.validation * self.test_ratio
        return seconds


def calibrate(cfg: TournamentConfig, plan: Plan, out_dir: Path, executor: Executor
              ) -> Calibration:
    """Time a short run (a few steps and one validation) of the first technique; cached in
    ``out_dir/.calibration.json`` for the same model, task and training parameters."""
    probe_steps = min(3, cfg.train.max_steps)
    method = plan.methods[0]
    spec = search_spec(cfg, method, plan.grids[method][len(plan.grids[method]) // 2], None)
    spec = spec.model_copy(update={
        "name": "calibration",
        "train": spec.train.model_copy(update={"stop_after": probe_steps,
                                               "eval_every": probe_steps})})
    key = spec.content_hash()
    cache = out_dir / ".calibration.json"
    if cache.exists():
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return Calibration(**data["calibration"])
        except (OSError, ValueError, TypeError):
            pass
    probe_dir = out_dir / ".calibration"
    record = next(iter(executor.run([spec], probe_dir, save_adapter=False)))
    view = record.view
    if record.status != STATUS_SUCCESS:
        raise UserError(f"the calibration run ({method}) failed: {record.error}")
    eval_time = view.eval_seconds
    step = (view.train_time or 0.0) / probe_steps
    startup = max(0.0, record.seconds - (view.train_time or 0.0) - eval_time)
    sizes = view.dataset_sizes
    ratio = (sizes.get("test", 2) / sizes["validation"]) if sizes.get("validation") else 2.0
    calibration = Calibration(startup, step, eval_time, ratio)
    atomic_write_json(cache, {"key": key, "calibration": vars(calibration)})
    shutil.rmtree(probe_dir, ignore_errors=True)
    return calibration


def estimate_seconds(plan: Plan, calibration: Calibration) -> float:
    """Estimated seconds of the whole plan: every search run of every rung, and the finals at
    the technique's middle rate."""
    cfg = plan.cfg
    total = 0.0
    for method, grid in plan.grids.items():
        for index, (steps, runs) in enumerate(cfg.rung_sizes(len(grid))):
            last = index == len(plan.rungs) - 1
            total += runs * calibration.estimate(
                search_spec(cfg, method, grid[0], None if last else steps))
        for seed in cfg.final_seeds():
            total += calibration.estimate(final_spec(cfg, method, grid[len(grid) // 2], seed))
    return total
