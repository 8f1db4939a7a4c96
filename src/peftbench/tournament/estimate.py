"""How long a plan will take: two short calibration runs, then an estimate for every run.

The calibration does what the tournament's runs will do, on the executor that then runs them:
a tuning-like run first (it pays the one-off costs: the fork server's start, first-use
kernels), then a final-like run, warm, whose figures the estimate uses: start-up per run,
seconds per step, per validation (real generation: the task's ``max_new_tokens``), the
forgetting and inference probes, and the base-model probes, which a tournament measures once
per final seed (the calibration's are kept for the finals to reuse). Test is scored at the
validation's seconds per item.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from peftbench.engine.base_probes import BASE_PROBES_DIR
from peftbench.engine.results import STATUS_SUCCESS, atomic_write_json
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.executors import Executor
from peftbench.tournament.plan import Plan, TournamentConfig, final_spec, search_spec

#: bump when what the calibration measures changes: older caches are measured again
CALIBRATION_VERSION = 3


@dataclass
class Calibration:
    """Seconds measured on short runs, for the plan's time estimate."""

    startup: float  # per run, warm: everything outside training, validation and the probes
    step: float  # one optimizer step
    validation: float  # one pass over the validation split
    test_ratio: float = 2.0  # test split size / validation split size
    final_probes: float = 0.0  # a final run's forgetting and inference probes
    base_probes: float = 0.0  # the base model's probes, once per final seed
    base_probes_kept: int = 0  # final seeds whose base probes the calibration already measured

    def estimate(self, spec: ExperimentSpec) -> float:
        """Seconds one run of ``spec`` should take (the base-model probes apart: see
        `estimate_seconds`)."""
        train = spec.train
        steps = train.steps_to_run()
        validations = max(1, steps // train.resolved_eval_every()) + (
            1 if steps % train.resolved_eval_every() else 0)
        seconds = self.startup + steps * self.step + validations * self.validation
        if train.eval_test:
            seconds += self.validation * self.test_ratio + self.final_probes
        return seconds


def calibrate(cfg: TournamentConfig, plan: Plan, out_dir: Path, executor: Executor
              ) -> Calibration:
    """Time two short runs (a few steps and one validation each) of the first technique, a
    tuning-like one and then a final-like one; cached in ``out_dir/.calibration.json`` for the
    same model, task and training parameters. The base-model probes measured on the way are
    left in ``out_dir`` for the first final seed's runs to reuse."""
    probe_steps = min(4, cfg.train.max_steps)
    method = plan.methods[0]
    lr = plan.grids[method][len(plan.grids[method]) // 2]
    short = {"stop_after": probe_steps, "eval_every": probe_steps}
    first = search_spec(cfg, method, lr, None)
    first = first.model_copy(update={"name": "calibration",
                                     "train": first.train.model_copy(update=short)})
    seed = cfg.final_seeds()[0]
    final = final_spec(cfg, method, lr, seed)
    final = final.model_copy(update={
        "name": "calibration-final",
        "train": final.train.model_copy(update={**short, "eval_test": False})})
    key = f"{CALIBRATION_VERSION}:{first.content_hash()}:{final.content_hash()}"
    cache = out_dir / ".calibration.json"
    if cache.exists():
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return Calibration(**data["calibration"])
        except (OSError, ValueError, TypeError):
            pass
    probe_dir = out_dir / ".calibration"
    _probe(executor, first, probe_dir, method)  # one-off costs are paid here
    record = _probe(executor, final, probe_dir, method)
    view = record.view
    phases = view.train_info.get("phase_seconds") or {}
    train_time = view.train_time or 0.0
    eval_time = view.eval_seconds
    base = float(phases.get("base_probes", 0.0))
    probes = float(phases.get("forgetting", 0.0)) + float(phases.get("inference", 0.0))
    # the first step pays one-off costs (allocations, first-use kernels): the estimate counts
    # it as start-up, and steps at the pace of those after it
    first = min(float(phases.get("first_step", 0.0)), train_time)
    step = ((train_time - first) / (probe_steps - 1) if probe_steps > 1 and first
            else train_time / probe_steps)
    startup = max(0.0, record.seconds - probe_steps * step - eval_time - base - probes)
    sizes = view.dataset_sizes
    ratio = (sizes.get("test", 2) / sizes["validation"]) if sizes.get("validation") else 2.0
    kept = _keep_base_probes(probe_dir, out_dir)
    calibration = Calibration(startup, step, eval_time, ratio, probes, base, kept)
    atomic_write_json(cache, {"key": key, "calibration": vars(calibration)})
    shutil.rmtree(probe_dir, ignore_errors=True)
    return calibration


def _probe(executor: Executor, spec: ExperimentSpec, folder: Path, method: str) -> object:
    record = next(iter(executor.run([spec], folder, save_adapter=False)))
    if record.status != STATUS_SUCCESS:
        raise UserError(f"the calibration run ({method}) failed: {record.error}")
    return record


def _keep_base_probes(probe_dir: Path, out_dir: Path) -> int:
    """Move the base-model probes the calibration measured to ``out_dir``, where runs with the
    same inputs reuse them; 1 when there were some, else 0."""
    found = sorted((probe_dir / BASE_PROBES_DIR).glob("*.json"))
    if not found:
        return 0
    target = out_dir / BASE_PROBES_DIR
    target.mkdir(parents=True, exist_ok=True)
    for path in found:
        if not (target / path.name).exists():
            atomic_write_json(target / path.name, json.loads(path.read_text()))
    return 1


def estimate_seconds(plan: Plan, calibration: Calibration) -> float:
    """Estimated seconds of the whole plan: every search run of every rung, the finals at the
    technique's middle rate, and the base-model probes once per final seed (less those the
    calibration already measured)."""
    cfg = plan.cfg
    total = 0.0
    for method, grid in plan.grids.items():
        for index, (steps, runs) in enumerate(cfg.rung_sizes(len(grid))):
            last = index == len(plan.rungs) - 1
            total += runs * calibration.estimate(
                search_spec(cfg, method, grid[0], None if last else steps))
        for seed in cfg.final_seeds():
            total += calibration.estimate(final_spec(cfg, method, grid[len(grid) // 2], seed))
    if plan.grids:
        total += calibration.base_probes * max(0, len(cfg.final_seeds())
                                               - calibration.base_probes_kept)
    return total


def extension_seconds(plan: Plan, calibration: Calibration) -> float:
    """Estimated seconds of every grid extension the plan allows (``lr_extend`` more search
    runs per technique, taken only when its best rate sits at an edge): the upper end of the
    plan's time, which `estimate_seconds` leaves out."""
    cfg = plan.cfg
    return sum(cfg.lr_extend * calibration.estimate(search_spec(cfg, method, grid[-1], None))
               for method, grid in plan.grids.items())


def estimate_record(plan: Plan, calibration: Calibration) -> dict[str, float]:
    """The estimate as ``tournament.json`` keeps it, to set against the measured seconds: the
    plan, one grid extension's runs per technique and the calibration's per-run figures."""
    return {"planned_seconds": estimate_seconds(plan, calibration),
            "extension_run_seconds": {
                method: calibration.estimate(search_spec(plan.cfg, method, grid[-1], None))
                for method, grid in plan.grids.items()},
            "all_extensions_seconds": extension_seconds(plan, calibration),
            "startup": calibration.startup, "step": calibration.step,
            "validation": calibration.validation}

