"""What a suite tournament (``--task glue:all``) prints: the plan of every task with its time
estimate, and the per-task table with the suite's score."""

from __future__ import annotations

from typing import Any

from peftbench.cli.display.tables import Grid
from peftbench.cli.display.tournament import _duration, plan_table


def suite_plan_grid(plan: Any) -> Grid:
    """The techniques and rates every task of the suite will try (the same for each)."""
    first = plan.entries[0].plan
    grid = plan_table(first)
    grid.title = (f"Tournament plan: {first.cfg.model} on {plan.suite}:all "
                  f"({len(plan.entries)} tasks, each with these techniques and rates)")
    return grid


def suite_plan_summary(plan: Any) -> str:
    """Per task its runs, folder and estimate, then the totals, one line each."""
    lines = []
    for entry in plan.entries:
        seconds = entry.estimate()
        when = (f"; estimated {_duration(seconds)}" if seconds is not None
                else f"; not calibrated: {entry.calibration_error}" if entry.calibration_error
                else "")
        lines.append(f"  {entry.task}: {entry.plan.search_runs()} search runs, "
                     f"{entry.plan.final_runs()} final runs → {entry.out}/{when}")
    total = plan.estimate()
    extra = plan.extension()
    upper = f", up to {_duration(total + extra)} if grids extend" if total and extra else ""
    calibrated = sum(e.calibration is not None for e in plan.entries)
    partial = (f" ({calibrated} of {len(plan.entries)} tasks calibrated)"
               if total is not None and calibrated < len(plan.entries) else "")
    estimate = f"; estimated {_duration(total)}{upper}{partial}" if total is not None else ""
    cfg = plan.entries[0].plan.cfg
    lines.append(f"{plan.suite}:all: {len(plan.entries)} tasks, {plan.search_runs()} search "
                 f"runs, {plan.final_runs()} final runs ({cfg.seeds} seed(s) each) → "
                 f"{plan.out}/{estimate}")
    return "\n".join(lines)


def suite_results_grid(outcome: Any) -> Grid:
    """Technique × task: each task's official test metrics, ▲ on the best of each column, and
    the suite's score (or the tasks still missing)."""
    from peftbench.analysis.suite_tables import suite_table

    plan = outcome.plan
    model = plan.entries[0].plan.cfg.model
    standings = outcome.standings()
    table = suite_table(plan.suite, standings[0].model if standings else model, standings,
                        outcome.methods())
    rows = [[text + (" ▲" if (r, c) in table.best else "") for c, text in enumerate(row)]
            for r, row in enumerate(table.rows)]
    failed = [f"{r.task} ({r.error or 'every run failed'})" for r in outcome.results
              if r.status() == "failed"]
    note = f" Failed tasks: {'; '.join(failed)}." if failed else ""
    return Grid(table.headers, rows, title=f"Suite results: {table.title}",
                caption=table.caption().replace("is marked", "is marked ▲") + note,
                right=set(range(1, len(table.headers))))
