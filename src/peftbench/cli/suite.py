"""`peftbench tournament --task glue:all` (or ``superglue:all``): one tournament per task of
the suite in OUT/NAME, the plan and estimate of all of them up front, and the per-task table
with the suite's score at the end (stdout, OUT/results.md, OUT/suite.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from peftbench.cli.display import TournamentDisplay, console, print_grid


def suite_tournament(cfg: Any, suite: str, *, out: Path,
                     executor: tuple[str, int, str | None, float | None],
                     tracking: tuple[str, Path], calibrate: bool, dry_run: bool,
                     save_adapters: bool, retry_failed: bool, progress: bool,
                     as_json: bool) -> None:
    """Plan every task of ``suite`` from the tournament config ``cfg``, calibrate them, print
    the plan (``dry_run``: and stop), then run them on ``executor`` (name, jobs, Ray address,
    run timeout) and show the suite's table. Exits 1 when no task has a successful final run."""
    from peftbench.cli.display.suite import suite_plan_grid, suite_plan_summary
    from peftbench.cli.tournament import _executor, _model_kind
    from peftbench.tournament.suite import SuiteTournament, calibrate_suite, make_suite_plan
    from peftbench.trackers import prepare_stores

    plan = make_suite_plan(cfg, suite, out, _model_kind)
    trackers = _trackers(plan, out, *tracking)
    runner = _executor(*executor)
    try:
        if calibrate:
            calibrate_suite(plan, runner, on_task=lambda task: console.print(
                f"calibrating {task}: one short run to estimate times …", highlight=False))
        if dry_run:
            print_grid(suite_plan_grid(plan))
            typer.echo(suite_plan_summary(plan))
            return
        console.print(suite_plan_grid(plan))
        console.print(suite_plan_summary(plan), highlight=False)
        for config in trackers.values():
            prepare_stores(config)
        with TournamentDisplay(progress) as display:
            outcome = SuiteTournament(plan, runner, display, save_adapters, retry_failed,
                                      tracking=lambda entry: trackers[entry.task],
                                      on_task=lambda result: _task_done(result, display)).run()
    finally:
        runner.close()
    show_suite_results(outcome, out, as_json)
    if not outcome.ok():
        raise typer.Exit(1)


def _trackers(plan: Any, out: Path, report_to: str, root: Path) -> dict[str, Any]:
    """Each task's tracker settings: its runs grouped as OUT-NAME."""
    from peftbench.trackers import tracking_config

    return {entry.task: tracking_config(report_to, root,
                                        group=f"{out.resolve().name}-{entry.out.name}",
                                        results=out)
            for entry in plan.entries}


def _task_done(result: Any, display: Any) -> None:
    """A task ended: its results.md (as a single tournament writes it) and one line."""
    from peftbench.cli.display import results_table
    from peftbench.cli.tournament import write_results_markdown

    if result.outcome is not None:
        write_results_markdown(results_table(result.outcome), result.out)
        failed = len(result.outcome.failed())
        display.note(f"{result.task}: {result.status()} ({failed} failed runs) → {result.out}/")
    else:
        display.note(f"{result.task}: failed: {result.error}")


def show_suite_results(outcome: Any, out: Path, as_json: bool) -> None:
    """The suite's table on stdout (or `--json`: ``suite.json``'s content) and in
    OUT/results.md; where the rest is on stderr."""
    from peftbench.cli.display.suite import suite_results_grid
    from peftbench.cli.tournament import write_results_markdown
    from peftbench.tournament.suite import SUMMARY

    grid = suite_results_grid(outcome)
    path = write_results_markdown(grid, out)
    if as_json:
        typer.echo(json.dumps({"folder": str(out), "summary": str(out / SUMMARY),
                               **outcome.summary}, indent=1))
    else:
        print_grid(grid)
    failed = [r.task for r in outcome.results if r.status() == "failed"]
    note = f"; failed tasks: {', '.join(failed)}" if failed else ""
    console.print(f"results: {out}/ ({path.name}, {SUMMARY}; one folder per task{note}; "
                  f"`peftbench report {out}` for the per-task table and charts)",
                  highlight=False)
