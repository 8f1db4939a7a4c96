"""A fair tournament: many techniques, one model and task, the same budget for each.

    plan ─ (optional) calibration ─ learning-rate search ─ choose on validation ─ final seeds
         ─ table with the Pareto-optimal techniques marked

Fairness is what paper comparisons lack, so it is built into the specs themselves:

- every run of a tournament shares the model, task, data order (a function of the seed),
  steps, batch, sequence length, evaluation and hardware; only technique and rate differ;
- every technique gets the same tuning budget: a log-spaced learning-rate grid around its own
  default (``auto``) or a grid the user gives, run with the search seed;
- search runs never score the test split (``eval_test=False`` is part of their spec), so test
  cannot influence which rate is chosen; the rate with the best **validation** score wins;
- the winning rate is re-run with ``seeds`` fresh seeds (never the search seed, so the
  reported runs played no part in the choice); their test scores give mean and 95% CI.

Successive halving (``halving=True``) runs each technique's rates to rungs of growing length and
keeps the best ``1/eta`` of them (by validation) at every rung. It halves within a technique,
not across techniques: a technique that starts slowly still gets its best rate tuned.

Resume comes from content hashes: every run's result file is named by the hash of its spec, so
a repeated command skips finished runs (success, or a deterministic failure such as a NaN) and
redoes the rest (timed out, or killed with the tournament).
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peftbench.errors import UserError
from peftbench.executors import RunRecord
from peftbench.results import STATUS_FAILED, STATUS_SUCCESS, atomic_write_json
from peftbench.spec import ExperimentSpec, TrainParams

#: representative techniques, one per family: the habit (LoRA, additive low-rank), a
#: multiplicative scaling (IA3), an orthogonal rotation (OFT) and a prompt-only one (prompt
#: tuning); four, so that the quick budget fits about 10 minutes on a 2-core CPU
PRESETS: dict[str, list[str] | None] = {
    "quick": ["lora", "ia3", "oft", "prompt_tuning"],
    "full": None,  # every technique that applies to the model
}

#: what ``--preset NAME`` sets (options given explicitly win): techniques and a budget.
#: ``quick`` is sized for about 10 minutes with SmolLM2-135M on arith on a 2-core CPU (see
#: the README for the measured figures): two-step problems, which a few dozen steps of
#: fine-tuning visibly improve, small evaluation splits, one validation per run.
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"methods": "preset:quick", "steps": 24, "lr_points": 2, "eval_base": True,
              "train": {"eval_every": 24, "forgetting_samples": 8},
              "task_options": {"arith": {"difficulty": 2, "n_valid": 24, "n_test": 48}}},
    "full": {"methods": "preset:full"},
}

#: results with these statuses are final: a resumed tournament does not run them again
FINISHED = (STATUS_SUCCESS, STATUS_FAILED)


class TournamentConfig(BaseModel):
    """Everything that defines a tournament; equal configs give equal run specs."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    task: str = "arith"
    task_options: dict[str, Any] = Field(default_factory=dict)
    methods: list[str] = Field(default_factory=lambda: list(PRESETS["quick"] or []))
    targets: str | None = None
    general_text: str | None = None
    train: TrainParams = Field(default_factory=TrainParams)
    lr_grid: list[float] | None = Field(None, description="None = auto: around each default")
    lr_points: int = Field(3, ge=1, description="points of the auto grid")
    lr_step: float = Field(10 ** 0.5, gt=1, description="ratio between auto grid points")
    seeds: int = Field(1, ge=1, description="final runs of the chosen rate")
    search_seed: int = 0
    halving: bool = False
    eta: int = Field(3, ge=2, description="successive halving keeps 1/eta per rung")
    min_rung_steps: int = Field(4, ge=1)

    def learning_rates(self, default_lr: float) -> list[float]:
        """The rates searched for a technique whose default is ``default_lr``."""
        if self.lr_grid:
            return sorted(set(self.lr_grid))
        half = (self.lr_points - 1) / 2
        return [_round_lr(default_lr * self.lr_step ** (i - half)) for i in range(self.lr_points)]

    def rungs(self) -> list[int]:
        """Step counts at which successive halving compares rates (the last is the full run)."""
        steps = self.train.max_steps
        if not self.halving:
            return [steps]
        out = [steps]
        while len(out) < self._max_rungs() and out[0] // self.eta >= self.min_rung_steps:
            out.insert(0, out[0] // self.eta)
        return out

    def _max_rungs(self) -> int:
        points = len(self.lr_grid) if self.lr_grid else self.lr_points
        return 1 + max(0, math.ceil(math.log(max(points, 1), self.eta)))

    def survivors(self, rates: int) -> int:
        """How many of ``rates`` compared at a rung go on to the next one."""
        return max(1, math.ceil(rates / self.eta))

    def rung_sizes(self, rates: int) -> list[tuple[int, int]]:
        """(steps, rates run) per rung for a technique that starts with ``rates`` rates."""
        sizes = []
        for steps in self.rungs():
            sizes.append((steps, rates))
            rates = self.survivors(rates)
        return sizes

    def final_seeds(self) -> list[int]:
        """Seeds of the final runs: fresh ones, never the search seed."""
        return [self.search_seed + 1 + i for i in range(self.seeds)]


def _round_lr(lr: float) -> float:
    return float(f"{lr:.3g}")


# --------------------------------------------------------------------------------------------
# Specs


def search_spec(cfg: TournamentConfig, method: str, lr: float, stop_after: int | None
                ) -> ExperimentSpec:
    """A tuning run: validation only (test never scored), no probes, the search seed."""
    train = cfg.train.model_copy(update={
        "lr": lr, "seed": cfg.search_seed, "eval_test": False, "eval_base": False,
        "forgetting_samples": 0, "measure_inference": False,
        "stop_after": stop_after if stop_after and stop_after < cfg.train.max_steps else None,
    })
    rung = f"-rung{stop_after}" if train.stop_after else ""
    return _spec(cfg, method, train, f"{method}-lr{lr:g}-search{rung}")


def final_spec(cfg: TournamentConfig, method: str, lr: float, seed: int) -> ExperimentSpec:
    """A reported run: the chosen rate, a fresh seed, test scored once, every probe on
    (and the base model scored on test too when ``cfg.train.eval_base``)."""
    train = cfg.train.model_copy(update={"lr": lr, "seed": seed, "eval_test": True,
                                         "stop_after": None})
    return _spec(cfg, method, train, f"{method}-lr{lr:g}-seed{seed}")


def _spec(cfg: TournamentConfig, method: str, train: TrainParams, name: str) -> ExperimentSpec:
    return ExperimentSpec(model=cfg.model, task=cfg.task, task_options=cfg.task_options,
                          method=method, targets=cfg.targets, general_text=cfg.general_text,
                          train=train, name=name)


# --------------------------------------------------------------------------------------------
# Plan


@dataclass
class Plan:
    """The grid a tournament will run, before it runs."""

    cfg: TournamentConfig
    methods: list[str]
    excluded: dict[str, str]  # technique -> why it does not apply to the model
    grids: dict[str, list[float]]
    rungs: list[int]

    def search_runs(self) -> int:
        """Search runs, every rung counted (halving stops most rates before the last one)."""
        return sum(n for grid in self.grids.values()
                   for _, n in self.cfg.rung_sizes(len(grid)))

    def search_steps(self) -> int:
        """Optimizer steps of all search runs (each rung run starts from scratch)."""
        return sum(steps * n for grid in self.grids.values()
                   for steps, n in self.cfg.rung_sizes(len(grid)))

    def final_runs(self) -> int:
        """Final runs: one per technique and seed."""
        return len(self.methods) * self.cfg.seeds

    def rows(self) -> list[tuple[str, str, str]]:
        """(technique, rates, note) lines for printing."""
        out = [(m, ", ".join(f"{lr:g}" for lr in self.grids[m]), "") for m in self.methods]
        out += [(m, "—", f"not applicable: {why}") for m, why in self.excluded.items()]
        return out


def resolve_methods(text: str | list[str], kind: str) -> tuple[list[str], dict[str, str]]:
    """Technique names from ``lora,dora``, ``all`` or ``preset:NAME``; those that cannot run
    on a ``kind`` model are set aside with the reason. Unknown names are a `UserError`."""
    from peftbench.methods import all_methods, get_method

    names = text if isinstance(text, list) else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError("--methods is empty; give names, 'all' or 'preset:quick'")
    wanted: list[str] = []
    for name in names:
        if name == "all" or name.startswith("preset:"):
            preset = "full" if name == "all" else name.removeprefix("preset:")
            if preset not in PRESETS:
                raise UserError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
            members = PRESETS[preset]
            wanted += members if members is not None else [m.name for m in all_methods()]
        else:
            wanted.append(get_method(name).name)
    chosen, excluded = [], {}
    for name in dict.fromkeys(wanted):
        reason = get_method(name).why_not(kind)
        (excluded.__setitem__(name, reason) if reason else chosen.append(name))
    if not chosen:
        raise UserError("no technique of --methods applies to this model: "
                        + "; ".join(f"{k}: {v}" for k, v in excluded.items()))
    return chosen, excluded


def make_plan(cfg: TournamentConfig, kind: str) -> Plan:
    """The tournament's grid: techniques (applicable ones), their rates, and the rungs."""
    from peftbench.methods import get_method

    methods, excluded = resolve_methods(cfg.methods, kind)
    grids = {m: cfg.learning_rates(get_method(m).default_lr) for m in methods}
    return Plan(cfg, methods, excluded, grids, cfg.rungs())


# --------------------------------------------------------------------------------------------
# Choosing on validation


def validation_key(record: RunRecord, default_lr: float) -> tuple[float, float, float]:
    """Sort key (higher is better) of a search run: validation score, then lower final
    training loss, then the rate closest to the technique's default. Test plays no part."""
    info = record.train_info
    valid = info.get("valid_score")
    loss = info.get("last_loss")
    lr = record.spec.train.lr or default_lr
    return (
        valid if record.status == STATUS_SUCCESS and valid is not None else -math.inf,
        -loss if isinstance(loss, int | float) and math.isfinite(loss) else -math.inf,
        -abs(math.log(lr / default_lr)),
    )


def keep_best(records: list[RunRecord], keep: int, default_lr: float) -> list[RunRecord]:
    """The ``keep`` best successful search runs by `validation_key`."""
    ok = [r for r in records if r.status == STATUS_SUCCESS]
    return sorted(ok, key=lambda r: validation_key(r, default_lr), reverse=True)[:keep]


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class TechniqueOutcome:
    """One technique's path through the tournament."""

    method: str
    search: list[RunRecord] = field(default_factory=list)
    chosen_lr: float | None = None
    finals: list[RunRecord] = field(default_factory=list)
    note: str = ""


@dataclass
class TournamentOutcome:
    """All records of a tournament, by technique."""

    plan: Plan
    techniques: dict[str, TechniqueOutcome]
    out_dir: Path
    seconds: float = 0.0

    def all_records(self) -> list[RunRecord]:
        """Every search and final record."""
        return [r for t in self.techniques.values() for r in (*t.search, *t.finals)]

    def failed(self) -> list[RunRecord]:
        """Runs that failed or timed out."""
        return [r for r in self.all_records() if r.status != STATUS_SUCCESS]


class Hooks:
    """What a tournament tells its display; every method is optional to override."""

    def stage(self, name: str, total: int) -> None:
        """A stage starts with ``total`` runs to do (finished ones already counted)."""

    def started(self, spec: ExperimentSpec) -> None:
        """A run starts."""

    def event(self, spec: ExperimentSpec, event: dict[str, Any]) -> None:
        """A running run reports progress."""

    def finished(self, record: RunRecord) -> None:
        """A run ends (or was found finished)."""


def existing_results(out_dir: Path, finished: tuple[str, ...] = FINISHED
                     ) -> dict[str, RunRecord]:
    """Finished results already in ``out_dir``, by spec hash (what a resumed run skips);
    ``finished`` names the statuses that count as finished."""
    found: dict[str, RunRecord] = {}
    for path in sorted(out_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            info = data["run_info"]["peftbench"]
            spec = ExperimentSpec.model_validate(info["spec"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        status = data.get("train_info", {}).get("status")
        if status in finished and spec.content_hash() == info.get("spec_hash"):
            found[info["spec_hash"]] = RunRecord(spec, status, path, data,
                                                 data["run_info"].get("error_msg", ""),
                                                 reused=True)
    return found


class Tournament:
    """Runs a plan with an executor, writing results and ``tournament.json`` into a folder."""

    def __init__(self, plan: Plan, out_dir: Path, executor: Any, hooks: Hooks | None = None,
                 save_adapters: bool = True, retry_failed: bool = False) -> None:
        self.plan, self.cfg, self.out_dir = plan, plan.cfg, Path(out_dir)
        self.executor, self.hooks = executor, hooks or Hooks()
        self.save_adapters = save_adapters
        # after a fix, failed runs are worth another try; by default they are results
        self.finished = (STATUS_SUCCESS,) if retry_failed else FINISHED
        self.outcomes = {m: TechniqueOutcome(m) for m in plan.methods}

    def run(self) -> TournamentOutcome:
        """Search, choose, run the finals; returns every record."""
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.out_dir):
            remove_leftovers(self.out_dir)
            self._search()
            self._choose()
            self._finals()
            outcome = TournamentOutcome(self.plan, self.outcomes, self.out_dir,
                                        time.perf_counter() - started)
            write_manifest(outcome)
        return outcome

    def _search(self) -> None:
        from peftbench.methods import get_method

        alive = {m: list(self.plan.grids[m]) for m in self.plan.methods}
        for index, steps in enumerate(self.plan.rungs):
            last = index == len(self.plan.rungs) - 1
            specs = {(m, lr): search_spec(self.cfg, m, lr, None if last else steps)
                     for m, rates in alive.items() for lr in rates}
            label = "search" if len(self.plan.rungs) == 1 else \
                f"search rung {index + 1}/{len(self.plan.rungs)} ({steps} steps)"
            records = self._execute(label, list(specs.values()))
            by_hash = {r.spec.content_hash(): r for r in records}
            for (method, _lr), spec in specs.items():
                self.outcomes[method].search.append(by_hash[spec.content_hash()])
            if last:
                break
            for method in alive:
                rung = [by_hash[s.content_hash()] for (m, _), s in specs.items() if m == method]
                best = keep_best(rung, self.cfg.survivors(len(rung)),
                                 get_method(method).default_lr)
                alive[method] = [r.spec.train.lr for r in best]

    def _choose(self) -> None:
        from peftbench.methods import get_method

        full = self.cfg.train.max_steps
        for method, outcome in self.outcomes.items():
            full_runs = [r for r in outcome.search if r.spec.train.steps_to_run() == full]
            best = keep_best(full_runs, 1, get_method(method).default_lr)
            if best:
                outcome.chosen_lr = best[0].spec.train.lr
            else:
                errors = {r.error for r in full_runs or outcome.search if r.error}
                outcome.note = "every search run failed: " + ("; ".join(sorted(errors))
                                                              or "no result")

    def _finals(self) -> None:
        specs = [final_spec(self.cfg, m, o.chosen_lr, seed)
                 for m, o in self.outcomes.items() if o.chosen_lr is not None
                 for seed in self.cfg.final_seeds()]
        for record in self._execute("final", specs):
            self.outcomes[record.spec.method].finals.append(record)

    def _execute(self, stage: str, specs: list[ExperimentSpec]) -> list[RunRecord]:
        done = existing_results(self.out_dir, self.finished)
        records = [done[s.content_hash()] for s in specs if s.content_hash() in done]
        todo = [s for s in specs if s.content_hash() not in done]
        self.hooks.stage(stage, len(specs))
        for record in records:
            self.hooks.finished(record)
        for record in self.executor.run(todo, self.out_dir, save_adapter=self._saves(stage),
                                        on_start=self.hooks.started,
                                        on_event=self.hooks.event):
            records.append(record)
            self.hooks.finished(record)
        return records

    def _saves(self, stage: str) -> bool:
        return self.save_adapters and stage == "final"


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
        "techniques": {
            m: {"grid": plan.grids[m], "chosen_lr": t.chosen_lr, "note": t.note,
                "selected_on": "validation",
                "search": [_run_entry(r) for r in t.search],
                "finals": [_run_entry(r) for r in t.finals]}
            for m, t in outcome.techniques.items()
        },
    }
    return atomic_write_json(outcome.out_dir / "tournament.json", data)


def _run_entry(record: RunRecord) -> dict[str, Any]:
    info = record.train_info
    return {"file": record.path.name, "status": record.status, "lr": record.spec.train.lr,
            "seed": record.spec.train.seed, "steps": record.spec.train.steps_to_run(),
            "valid_score": info.get("valid_score"), "test_score": info.get("test_score"),
            "error": record.error or None}


# --------------------------------------------------------------------------------------------
# Time estimate


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


def calibrate(cfg: TournamentConfig, plan: Plan, out_dir: Path, executor: Any) -> Calibration:
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
    info = record.train_info
    if record.status != STATUS_SUCCESS:
        raise UserError(f"the calibration run ({method}) failed: {record.error}")
    eval_time = sum(m.get("eval time", 0.0) for m in info.get("metrics", []))
    step = (info.get("train_time") or 0.0) / probe_steps
    startup = max(0.0, record.seconds - (info.get("train_time") or 0.0) - eval_time)
    sizes = (record.result.get("meta_info", {}).get("dataset_info") or {}).get("sizes") or {}
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
