"""`peftbench tournament --memory-only` (the mode a ``config:`` model always runs in): a few
steps of every technique at its default rate, no learning-rate search and no evaluation, and
a table of memory and speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from peftbench.cli.display import TournamentDisplay, console, print_grid


def memory_tournament(*, model: str, task: str, methods: str, steps: int | None, out: Path,
                      data: str | None, task_opt: list[str], train_opt: list[str],
                      targets: str | None, seed: int, executor: tuple[str, int, str | None,
                                                                       float | None],
                      dry_run: bool, retry_failed: bool, progress: bool, as_json: bool) -> None:
    """Plan and run the memory-only tournament on ``executor`` (name, jobs, Ray address, run
    timeout), then print its table (stdout; `--json`: the figures) and write OUT/results.md.
    Exits 1 when no technique trained."""
    from peftbench import tournament as tm
    from peftbench.cli.tournament import _config, _executor, _model_kind
    from peftbench.tournament.memory import MEMORY_STEPS, MemoryTournament

    cfg = _config(model, task, methods, steps or MEMORY_STEPS, "auto", 1, 1, False, 3, data,
                  task_opt, train_opt, targets, None, {"search_seed": seed, "lr_extend": 0})
    plan = tm.make_plan(cfg, _model_kind(cfg))
    summary = (f"memory-only: {len(plan.methods)} techniques × {cfg.train.max_steps} steps at "
               f"their default rates, batch {cfg.train.batch_size}, no learning-rate search, "
               f"no evaluation → {out}/")
    if dry_run:
        typer.echo(summary)
        for method, _rates, note in plan.rows():
            typer.echo(f"  {method}{f'  ({note})' if note else ''}")
        return
    console.print(summary, highlight=False)
    runner = _executor(*executor)
    try:
        with TournamentDisplay(progress) as display:
            outcome = MemoryTournament(plan, out, runner, display, True, retry_failed).run()
    finally:
        runner.close()
    show_memory_results(outcome, out, as_json)
    if not any(r.status == "success" for t in outcome.techniques.values() for r in t.finals):
        raise typer.Exit(1)


def show_memory_results(outcome: Any, out: Path, as_json: bool) -> None:
    """The memory table on stdout (or `--json`: ``memory.json``'s content) and in
    OUT/results.md."""
    from peftbench.cli.display.memory import memory_grid
    from peftbench.cli.tournament import write_results_markdown
    from peftbench.tournament.memory import device_of, memory_rows

    rows, device = memory_rows(outcome), device_of(outcome)
    grid = memory_grid(rows, device, outcome.plan.cfg.model)
    path = write_results_markdown(grid, out)
    if as_json:
        typer.echo(json.dumps({"folder": str(out), "results_md": str(path), "device": device,
                               "techniques": rows, "notes": list(outcome.notes)}, indent=1))
    else:
        print_grid(grid)
    console.print(f"results: {out}/ ({path.name}, memory.json; {len(outcome.failed())} "
                  "failed runs)", highlight=False)
