"""`peftbench recommend`: the best technique under constraints, from result folders."""

from __future__ import annotations

from typing import Annotated

import typer

from peftbench.cli.options import OnlyModel, OnlyTask, ResultDirs, add_verb

EXAMPLES = [
    "peftbench recommend tournament-quick --max-memory 3GB",
    "peftbench recommend tournament-quick results --must merge --where 'train_time < 1h'",
    "peftbench recommend tournament-quick --optimize forgetting:min --runners-up 1",
]


def register(app: typer.Typer) -> None:
    """Add the `recommend` verb to ``app``."""
    add_verb(app, "recommend", recommend, EXAMPLES)


def recommend(
    dirs: ResultDirs,
    max_memory: Annotated[str, typer.Option(help="peak memory bound, e.g. 20GB or 24GiB")] = "",
    must: Annotated[str, typer.Option(help="required capabilities, e.g. merge,quantized")] = "",
    optimize: Annotated[str, typer.Option(help="metric to optimize (:min/:max)")] = "test_score",
    where: Annotated[str, typer.Option(help="more constraints, e.g. 'train_time < 1h'")] = "",
    task: OnlyTask = None,
    model: OnlyModel = None,
    runners_up: Annotated[int, typer.Option(min=0, help="runners-up to show")] = 3,
) -> None:
    """The best technique under constraints, the runners-up, and what ruled out the rest."""
    from peftbench import analysis as an

    results = an.load_results(dirs)
    runs = results.select(task, model)
    for group in sorted({(r.task, r.model) for r in runs}):
        members = [r for r in runs if (r.task, r.model) == group]
        rec = an.recommend(members, optimize, max_memory or None, must, where)
        typer.echo("\n".join(rec.explain(runners_up)))
        failed = [r for r in members if not r.ok]
        if failed:
            names = ", ".join(f"{r.experiment_name} ({r.status})" for r in failed)
            typer.echo(f"  failed runs, not considered: {names}")
        typer.echo("")
    for path, why in results.problems:
        typer.echo(f"unreadable: {path}: {why}")
