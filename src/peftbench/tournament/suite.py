"""A suite tournament (``--task glue:all``, ``--task superglue:all``): one tournament per task
of the suite, each with the same techniques, budget, seeds and learning-rate search.

Each task runs in its own folder, ``OUT/NAME`` (``OUT/cola``, ``OUT/mnli_matched``...), as any
tournament does: its own ``tournament.json``, resume, lock and ``peftbench report OUT/NAME``.
The tasks are those the suite's score needs (`peftbench.analysis.suite_scores.suite_tasks`);
SuperGLUE's diagnostics are not among them. A task that fails as a whole (its data unreadable,
an error outside the runs) is recorded with its error and the other tasks go on.
``OUT/suite.json`` holds, per technique, each task's official test metrics (the finals of its
chosen rate, seeds averaged), the task scores, the suite's score once every task has one, and
what is missing otherwise.

With ``--data ROOT`` each task reads its own folder, ``ROOT/NAME``; both MNLI tasks read
``ROOT/mnli`` (one folder holds its matched and mismatched validation sets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.engine.results import STATUS_SUCCESS, atomic_write_json
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.estimate import (
    Calibration,
    calibrate,
    estimate_record,
    estimate_seconds,
    extension_seconds,
)
from peftbench.tournament.executors import Executor, RunRecord
from peftbench.tournament.outcome import TournamentOutcome
from peftbench.tournament.plan import Plan, TournamentConfig, make_plan
from peftbench.tournament.runner import Hooks, Tournament
from peftbench.tournament.storage import FolderLock, remove_leftovers

#: the task argument that names a whole suite: ``glue:all``
ALL = "all"

#: the data folder of a task under ``--data ROOT`` where it is not the task's own name
DATA_FOLDERS = {"glue:mnli_matched": "mnli", "glue:mnli_mismatched": "mnli"}

#: the suite summary's file name in the suite's folder
SUMMARY = "suite.json"


def suites() -> list[str]:
    """The suites a tournament can run whole: ``glue``, ``superglue``."""
    from peftbench.analysis.suite_scores import SUITES

    return list(SUITES)


def suite_of(task: str) -> str | None:
    """The suite ``task`` names whole (``glue:all`` -> ``glue``), else None. ``NAME:all``
    where NAME is a task family but not a suite is a `UserError`."""
    family, _, argument = task.partition(":")
    if argument != ALL:
        return None
    if family in suites():
        return family
    if family in ("jsonl", "csv"):  # a data file may well be called "all"
        return None
    known = ", ".join(f"{s}:{ALL}" for s in suites())
    raise UserError(f"--task {task}: {family} is not a suite; a tournament runs a whole suite "
                    f"as {known}")


def suite_task_names(suite: str) -> list[str]:
    """The tasks a suite tournament runs (those its score needs), in the suite's order."""
    from peftbench.analysis.suite_scores import suite_tasks

    return suite_tasks(suite)


def folder_name(task: str) -> str:
    """A task's folder inside the suite's: the task's name without the suite (``cola``)."""
    return task.partition(":")[2]


def task_configs(cfg: TournamentConfig, suite: str) -> dict[str, TournamentConfig]:
    """Each task's tournament config: ``cfg`` with the task set and, when ``cfg`` names a data
    root (task option ``data``), the task's folder under it. A root that is not a folder, or
    lacks a task's folder, is a `UserError` naming every missing one."""
    root = cfg.task_options.get("data")
    tasks = suite_task_names(suite)
    if root is not None and not Path(root).is_dir():
        raise UserError(f"--data {root}: with --task {suite}:{ALL}, a folder holding one folder "
                        f"per task ({', '.join(_data_names(tasks))})")
    configs = {}
    missing = []
    for task in tasks:
        options = dict(cfg.task_options)
        if root is not None:
            folder = Path(root) / DATA_FOLDERS.get(task, folder_name(task))
            missing += [] if folder.is_dir() else [folder.name]
            options["data"] = str(folder)
        configs[task] = cfg.model_copy(update={"task": task, "task_options": options})
    if missing:
        raise UserError(f"--data {root}: no folder for {', '.join(dict.fromkeys(missing))} "
                        f"(--task {suite}:{ALL} reads ROOT/NAME for each task)")
    return configs


def _data_names(tasks: list[str]) -> list[str]:
    return list(dict.fromkeys(DATA_FOLDERS.get(t, folder_name(t)) for t in tasks))


# --------------------------------------------------------------------------------------------
# The plan


@dataclass
class SuiteEntry:
    """One task of a suite tournament: its plan, folder and (once measured) calibration."""

    task: str
    plan: Plan
    out: Path
    calibration: Calibration | None = None
    calibration_error: str = ""

    def estimate(self) -> float | None:
        """Estimated seconds of the task's plan (None: not calibrated)."""
        return estimate_seconds(self.plan, self.calibration) if self.calibration else None

    def extension(self) -> float:
        """Estimated seconds of every grid extension the task's plan allows (0: not
        calibrated)."""
        return extension_seconds(self.plan, self.calibration) if self.calibration else 0.0


@dataclass
class SuitePlan:
    """The tournaments of a suite, before they run."""

    suite: str
    out: Path
    entries: list[SuiteEntry]

    def search_runs(self) -> int:
        """Search runs of every task."""
        return sum(e.plan.search_runs() for e in self.entries)

    def final_runs(self) -> int:
        """Final runs of every task."""
        return sum(e.plan.final_runs() for e in self.entries)

    def estimate(self) -> float | None:
        """Estimated seconds of every calibrated task's plan (None when none is)."""
        known = [s for s in (e.estimate() for e in self.entries) if s is not None]
        return sum(known) if known else None

    def extension(self) -> float:
        """Estimated seconds of every grid extension of every calibrated task."""
        return sum(e.extension() for e in self.entries)


def make_suite_plan(cfg: TournamentConfig, suite: str, out: Path,
                    kind_of: Callable[[TournamentConfig], str]) -> SuitePlan:
    """One plan per task of ``suite`` (``kind_of`` gives a task config's model kind, as for a
    single tournament), each in ``out``/NAME."""
    entries = [SuiteEntry(task, make_plan(task_cfg, kind_of(task_cfg)),
                          Path(out) / folder_name(task))
               for task, task_cfg in task_configs(cfg, suite).items()]
    return SuitePlan(suite, Path(out), entries)


def calibrate_suite(plan: SuitePlan, executor: Executor,
                    on_task: Callable[[str], None] | None = None) -> None:
    """Calibrate every task's plan (cached in its folder, as for one tournament). A task whose
    calibration fails keeps the error, has no estimate, and still runs (its runs are then
    recorded as failures); the others go on."""
    for entry in plan.entries:
        if on_task is not None:
            on_task(entry.task)
        try:
            entry.calibration = calibrate(entry.plan.cfg, entry.plan, entry.out, executor)
        except UserError as exc:
            entry.calibration, entry.calibration_error = None, str(exc)


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class TaskResult:
    """How one task's tournament ended: its outcome, or the error that stopped it."""

    task: str
    out: Path
    outcome: TournamentOutcome | None = None
    error: str = ""

    def finals(self) -> list[RunRecord]:
        """The task's successful final runs."""
        if self.outcome is None:
            return []
        return [r for t in self.outcome.techniques.values() for r in t.finals
                if r.status == STATUS_SUCCESS]

    def status(self) -> str:
        """``done`` when a technique has a successful final run, else ``failed``."""
        return "done" if self.finals() else "failed"


@dataclass
class SuiteOutcome:
    """What a suite tournament found: each task's result, and the summary's path."""

    plan: SuitePlan
    results: list[TaskResult] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> bool:
        """True when some task has a successful final run."""
        return any(r.status() == "done" for r in self.results)

    def methods(self) -> list[str]:
        """The techniques planned on any task, in plan order."""
        return list(dict.fromkeys(m for e in self.plan.entries for m in e.plan.methods))

    def standings(self) -> list[Any]:
        """Each technique's `SuiteStanding` on the suite, from the tasks' successful final
        runs (a technique without any has none)."""
        from peftbench.analysis.suite_scores import suite_standings
        from peftbench.engine.results import summarize

        runs = [summarize(r.result, str(r.path)) for result in self.results
                for r in result.finals()]
        return [s for s in suite_standings(runs) if s.suite == self.plan.suite]


class TaskHooks(Hooks):
    """A display's hooks for one task of a suite: the stage names say which task."""

    def __init__(self, task: str, hooks: Hooks) -> None:
        self.task, self.hooks = task, hooks

    def stage(self, name: str, total: int) -> None:
        """A stage of the task starts."""
        self.hooks.stage(f"{self.task} {name}", total)

    def started(self, spec: ExperimentSpec) -> None:
        """A run starts."""
        self.hooks.started(spec)

    def event(self, spec: ExperimentSpec, event: dict[str, Any]) -> None:
        """A running run reports progress."""
        self.hooks.event(spec, event)

    def finished(self, record: RunRecord) -> None:
        """A run ends."""
        self.hooks.finished(record)

    def note(self, message: str) -> None:
        """A line worth telling, with its task."""
        note = getattr(self.hooks, "note", None)
        if note is not None:
            note(f"{self.task}: {message}")


class SuiteTournament:
    """Runs a suite's tournaments one after the other in their folders, under one lock on the
    suite's folder, and writes ``suite.json`` after each task (a killed suite keeps what it
    found)."""

    def __init__(self, plan: SuitePlan, executor: Executor, hooks: Hooks | None = None,
                 save_adapters: bool = True, retry_failed: bool = False,
                 tracking: Callable[[SuiteEntry], Any] | None = None,
                 on_task: Callable[[TaskResult], None] | None = None) -> None:
        self.plan, self.executor = plan, executor
        self.hooks = hooks or Hooks()
        self.save_adapters, self.retry_failed = save_adapters, retry_failed
        self.tracking = tracking or (lambda entry: None)  # a task's tracker settings
        self.on_task = on_task  # told as each task ends

    def run(self) -> SuiteOutcome:
        """Every task's tournament; a task that raises is recorded and the others go on."""
        outcome = SuiteOutcome(self.plan)
        self.plan.out.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.plan.out):
            remove_leftovers(self.plan.out)  # a killed suite's half-written suite.json
            for result in self._tasks():
                outcome.results.append(result)
                outcome.summary = write_summary(outcome)
                if self.on_task is not None:
                    self.on_task(result)
        return outcome

    def _tasks(self) -> Iterator[TaskResult]:
        for entry in self.plan.entries:
            estimate = (estimate_record(entry.plan, entry.calibration)
                        if entry.calibration is not None else None)
            tournament = Tournament(entry.plan, entry.out, self.executor,
                                    TaskHooks(entry.task, self.hooks), self.save_adapters,
                                    self.retry_failed, tracking=self.tracking(entry),
                                    estimate=estimate)
            try:
                yield TaskResult(entry.task, entry.out, tournament.run())
            except Exception as exc:  # one task's trouble must not cost the others
                yield TaskResult(entry.task, entry.out, error=str(exc) or type(exc).__name__)


# --------------------------------------------------------------------------------------------
# The summary


def write_summary(outcome: SuiteOutcome) -> dict[str, Any]:
    """Write ``suite.json`` into the suite's folder and return its content: per task its
    folder, status and error; per technique each task's test metrics, the task scores, the
    suite's score (None until every task has one) and the tasks still missing."""
    data = suite_summary(outcome)
    atomic_write_json(outcome.plan.out / SUMMARY, data)
    return data


def suite_summary(outcome: SuiteOutcome) -> dict[str, Any]:
    """The content of ``suite.json`` (see `write_summary`)."""
    from peftbench.analysis.suite_scores import SUITES

    plan = outcome.plan
    standings = {s.technique: s for s in outcome.standings()}
    techniques = {}
    for method in outcome.methods():
        standing = standings.get(method)
        techniques[method] = {
            "score": standing.score if standing else None,
            "task_scores": dict(standing.tasks) if standing else {},
            "metrics": dict(standing.metrics) if standing else {},
            "missing": list(standing.missing) if standing else list(SUITES[plan.suite]),
        }
    first = plan.entries[0].plan.cfg
    return {"suite": plan.suite, "model": first.model, "methods": outcome.methods(),
            "tasks": {e.task: _task_entry(e, outcome) for e in plan.entries},
            "techniques": techniques}


def _task_entry(entry: SuiteEntry, outcome: SuiteOutcome) -> dict[str, Any]:
    result = next((r for r in outcome.results if r.task == entry.task), None)
    if result is None:
        return {"folder": entry.out.name, "status": "not run", "error": None}
    failed = len(result.outcome.failed()) if result.outcome is not None else 0
    errors = [t.note for t in result.outcome.techniques.values() if t.note] \
        if result.outcome is not None else []
    return {"folder": entry.out.name, "status": result.status(),
            "error": result.error or ("; ".join(errors) if result.status() == "failed"
                                      else None) or None,
            "failed_runs": failed, "seconds": result.outcome.seconds if result.outcome else None}
