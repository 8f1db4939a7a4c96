"""`peftbench recommend`: the best technique under constraints, from result folders."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from peftbench.cli.display import err_console
from peftbench.cli.options import (
    AsJson,
    OnlyModel,
    OnlyTask,
    ResultDirs,
    add_verb,
    as_usage_error,
    check_filter,
    check_metric,
)

EXAMPLES = [
    "peftbench recommend tournament-quick --max-memory 3GB",
    "peftbench recommend tournament-quick results --must merge,lora-convertible "
    "--where 'train_time < 1h'",
    "peftbench recommend tournament-quick --optimize forgetting:min --runners-up 1 --json",
]


def register(app: typer.Typer) -> None:
    """Add the `recommend` verb to ``app``."""
    add_verb(app, "recommend", recommend, EXAMPLES)


def _memory(value: str) -> str:
    """``--max-memory``: a size with its unit (20GB, 24GiB, 512MiB)."""
    from peftbench.analysis.recommendation import memory_bound

    if value:
        as_usage_error(memory_bound, value)
    return value


def _capabilities(value: str) -> str:
    """``--must``: capability names as `peftbench methods` spells its flags."""
    from peftbench.analysis.filters import parse_must

    as_usage_error(parse_must, value)
    return value


def recommend(
    dirs: ResultDirs,
    max_memory: Annotated[str, typer.Option(
        callback=_memory, show_default=False,
        help="peak memory bound with its unit: 20GB, 24GiB, 512MiB (GB = 10^9 bytes, "
             "GiB = 2^30)  \\[default: no bound]")] = "",
    must: Annotated[str, typer.Option(
        callback=_capabilities, show_default=False,
        help="required capabilities, comma-separated, spelled as `peftbench methods` flags: "
             "merge, multi-adapter, lora-convertible, prompt-only, quantized[:KIND], "
             "layer:TYPE, 'not NAME'  \\[default: none]")] = "",
    optimize: Annotated[str, typer.Option(
        callback=check_metric, help="metric to optimize, :min or :max to set the direction "
                               "(test_score, peak_memory, train_time, forgetting, …)")]
    = "test_score",
    where: Annotated[str, typer.Option(
        callback=check_filter, show_default=False,
        help="more constraints, e.g. 'train_time < 1h, file_size < 50MB, not prompt-only'  "
             "\\[default: none]")] = "",
    task: OnlyTask = None,
    model: OnlyModel = None,
    runners_up: Annotated[int, typer.Option(min=0, help="runners-up to show")] = 3,
    as_json: AsJson = False,
) -> None:
    """The best technique under constraints, the runners-up, and what ruled out the rest.

    One recommendation per (task, base model) in the results; unreadable files are listed on
    stderr. Exits 1 when no technique satisfies the constraints."""
    from peftbench import analysis as an

    results = an.load_results(dirs)
    runs = results.select(task, model)
    answers = []
    for group in sorted({(r.task, r.model) for r in runs}):
        members = [r for r in runs if (r.task, r.model) == group]
        rec = an.recommend(members, optimize, max_memory or None, must, where)
        failed = [r for r in members if not r.ok]
        answers.append((rec, failed))
    if as_json:
        typer.echo(json.dumps([recommendation_json(rec, failed, runners_up)
                               for rec, failed in answers], indent=1))
    else:
        for rec, failed in answers:
            typer.echo("\n".join(rec.explain(runners_up)))
            if failed:
                names = ", ".join(f"{r.experiment_name} ({r.status})" for r in failed)
                typer.echo(f"  failed runs, not considered: {names}")
            typer.echo("")
    for path, why in results.problems:
        err_console.print(f"unreadable: {path}: {why}", highlight=False, soft_wrap=True)
    if any(not rec.ranked for rec, _ in answers):  # no technique satisfies the constraints
        raise typer.Exit(1)


def recommendation_json(rec: Any, failed: list[Any], runners_up: int) -> dict[str, Any]:
    """One recommendation as plain data: the winner, runners-up, exclusions and failures."""

    def entry(agg: Any) -> dict[str, Any]:
        name = rec.optimize.metric.name
        comparison = rec.versus_best(agg) if agg is not rec.best else None
        return {"technique": agg.technique, "label": agg.label, name: agg.value(name),
                "interval": agg.interval(name), "seeds": agg.n,
                "within_noise_of_best": (rec.within_noise_of_best(agg)
                                         if agg is not rec.best else None),
                "p_vs_best": comparison.p if comparison is not None else None}

    return {"task": rec.task, "model": rec.model, "optimize": rec.optimize.metric.name,
            "maximize": rec.optimize.maximize, "constraints": rec.constraints,
            "best": entry(rec.best) if rec.best is not None else None,
            "tied": rec.tied, "caveats": rec.caveats,
            "runners_up": [entry(a) for a in rec.runners_up(runners_up)],
            "ruled_out": [{"technique": a.technique, "reasons": reasons}
                          for a, reasons in rec.excluded],
            "failed_runs": [{"name": r.experiment_name, "status": r.status} for r in failed]}
