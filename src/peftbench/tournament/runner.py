"""Running a plan: the search (with successive halving), the choice on validation, the finals.

`Tournament` runs each stage's specs with an executor, skipping the runs already finished in its
folder, and tells a display what happens through `Hooks`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from peftbench.engine.inputs import stale_reason
from peftbench.engine.results import STATUS_SUCCESS
from peftbench.engine.spec import ExperimentSpec
from peftbench.tournament.executors import Executor, RunRecord
from peftbench.tournament.outcome import TechniqueOutcome, TournamentOutcome
from peftbench.tournament.plan import Plan, final_spec, search_spec
from peftbench.tournament.storage import (
    FINISHED,
    FolderLock,
    existing_results,
    remove_leftovers,
    write_manifest,
)
from peftbench.trackers import TrackingConfig

# --------------------------------------------------------------------------------------------
# Choosing on validation


def validation_key(record: RunRecord, default_lr: float) -> tuple[float, float, float]:
    """Sort key (higher is better) of a search run: validation score, then lower training
    loss at the last step, then the rate closest to the technique's default. Test plays no
    part."""
    view = record.view
    valid, loss = view.valid_score, view.final_train_loss
    lr = record.spec.train.lr or default_lr
    return (
        valid if record.status == STATUS_SUCCESS and valid is not None else -math.inf,
        -loss if loss is not None else -math.inf,
        -abs(math.log(lr / default_lr)),
    )


def keep_best(records: list[RunRecord], keep: int, default_lr: float) -> list[RunRecord]:
    """The ``keep`` best successful search runs by `validation_key`."""
    ok = [r for r in records if r.status == STATUS_SUCCESS]
    return sorted(ok, key=lambda r: validation_key(r, default_lr), reverse=True)[:keep]


# --------------------------------------------------------------------------------------------
# Running


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

    def note(self, message: str) -> None:
        """One line worth telling (a resume found results made from other inputs)."""


class Tournament:
    """Runs a plan with an executor, writing results and ``tournament.json`` into a folder."""

    def __init__(self, plan: Plan, out_dir: Path, executor: Executor,
                 hooks: Hooks | None = None, save_adapters: bool = True,
                 retry_failed: bool = False, tracking: TrackingConfig | None = None,
                 estimate: dict[str, Any] | None = None) -> None:
        self.plan, self.cfg, self.out_dir = plan, plan.cfg, Path(out_dir)
        self.estimate = estimate  # the plan's time estimate, kept in tournament.json
        self.executor, self.hooks = executor, hooks or Hooks()
        self.save_adapters = save_adapters
        self.tracking = tracking  # experiment trackers every run reports to (None: none)
        # after a fix, failed runs are worth another try; by default they are results
        self.finished = (STATUS_SUCCESS,) if retry_failed else FINISHED
        self.outcomes = {m: TechniqueOutcome(m) for m in plan.methods}
        self.notes: list[str] = []  # what the tournament said, once each

    def run(self) -> TournamentOutcome:
        """Search, choose, run the finals; returns every record."""
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.out_dir):
            remove_leftovers(self.out_dir)
            self._search()
            self._extend_edges()
            self._choose()
            self._finals()
            outcome = TournamentOutcome(self.plan, self.outcomes, self.out_dir,
                                        time.perf_counter() - started, self.notes,
                                        self.estimate)
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

    def _extend_edges(self) -> None:
        """Where a technique's best full-length rate is the highest or lowest it tried, try
        one more beyond it (up to ``cfg.lr_extend`` times): a search that stops at an edge has
        not found the best rate, only a bound."""
        from peftbench.methods import get_method

        for round_ in range(1, self.cfg.lr_extend + 1):
            wanted: dict[str, float] = {}
            for method, outcome in self.outcomes.items():
                rate = self._beyond_edge(method, outcome, get_method(method).default_lr)
                if rate is not None:
                    wanted[method] = rate
            if not wanted:
                return
            specs = [search_spec(self.cfg, m, lr, None) for m, lr in wanted.items()]
            for record in self._execute(f"search: grid extended ({round_})", specs):
                outcome = self.outcomes[record.spec.method]
                outcome.search.append(record)
                outcome.extended.append(record.spec.train.lr)

    def _beyond_edge(self, method: str, outcome: TechniqueOutcome,
                     default_lr: float) -> float | None:
        full = self.cfg.train.max_steps
        runs = [r for r in outcome.search if r.spec.train.steps_to_run() == full]
        best = keep_best(runs, 1, default_lr)
        if not best or len(outcome.extended) >= self.cfg.lr_extend:
            return None
        tried = sorted({r.spec.train.lr for r in outcome.search})
        lr = best[0].spec.train.lr
        step = self.cfg.edge_step(self.plan.grids[method])
        if len(tried) < 2:  # a single planned rate: no direction to extend in
            return None
        if lr == tried[-1]:
            return float(f"{lr * step:.3g}")
        if lr == tried[0]:
            return float(f"{lr / step:.3g}")
        return None

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
        done = self._still_true(existing_results(self.out_dir, self.finished), specs)
        records = [done[s.content_hash()] for s in specs if s.content_hash() in done]
        todo = [s for s in specs if s.content_hash() not in done]
        self.hooks.stage(stage, len(specs))
        for record in records:
            self.hooks.finished(record)
        for record in self.executor.run(todo, self.out_dir, save_adapter=self._saves(stage),
                                        on_start=self.hooks.started,
                                        on_event=self.hooks.event, tracking=self.tracking):
            records.append(record)
            self.hooks.finished(record)
        return records

    def _still_true(self, done: dict[str, RunRecord], specs: list[ExperimentSpec]
                    ) -> dict[str, RunRecord]:
        """The finished results of ``specs`` that were made from the inputs as they are now;
        the others are left out (to run again, their file replaced only by a complete
        result), and why is said once."""
        kept = dict(done)
        for spec in specs:
            record = done.get(spec.content_hash())
            why = stale_reason(record.view.inputs, spec) if record is not None else None
            if why is not None:
                del kept[spec.content_hash()]
                self._note(f"{why}: running its results in {self.out_dir} again")
        return kept

    def _note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            note = getattr(self.hooks, "note", None)
            if note is not None:
                note(message)

    def _saves(self, stage: str) -> bool:
        return self.save_adapters and stage == "final"
