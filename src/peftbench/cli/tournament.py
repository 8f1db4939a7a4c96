"""`peftbench tournament`: plan, run and tabulate a fair comparison of many techniques."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from peftbench.cli.display import (
    TournamentDisplay,
    console,
    plan_summary,
    plan_table,
    results_table,
)
from peftbench.cli.options import (
    Data,
    GeneralText,
    Model,
    ResultsFolder,
    ShowProgress,
    Targets,
    Task,
    TaskOpts,
    add_verb,
)
from peftbench.engine.spec import parse_key_values, parse_train_params
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench tournament --preset quick --general-text ../shared/data/wikitext-2 "
    "--out tournament-quick",
    "peftbench tournament --methods lora,dora,oft --steps 200 --seeds 3 --dry-run",
    "peftbench tournament --methods all --lr-grid 1e-4,3e-4,1e-3 --halving --out tournament-all",
]


def register(app: typer.Typer) -> None:
    """Add the `tournament` verb to ``app``."""
    add_verb(app, "tournament", tournament, EXAMPLES)


def tournament(
    model: Model = "smollm2-135m",
    task: Task = "arith",
    preset: Annotated[str | None, typer.Option(
        help="quick (4 techniques, a budget sized for ~10 min on a laptop CPU) or full "
             "(every applicable technique); explicit options override it")] = None,
    methods: Annotated[str | None, typer.Option(
        help="lora,dora,oft,… | all | preset:quick | preset:full  \\[default: preset:quick]")]
    = None,
    steps: Annotated[int | None, typer.Option(
        help="optimizer steps of every run  \\[default: 100]")] = None,
    lr_grid: Annotated[str, typer.Option(
        help="auto (around each technique's default) or v1,v2,… for every technique")] = "auto",
    lr_points: Annotated[int | None, typer.Option(
        help="points of the auto grid  \\[default: 3]")] = None,
    seeds: Annotated[int, typer.Option(help="final runs of each technique's chosen rate")] = 1,
    seed: Annotated[int, typer.Option(
        help="seed of the tuning runs; the final runs take the next ones (seed+1, …)")] = 0,
    lr_extend: Annotated[int | None, typer.Option(
        help="extra rates a technique may get when its best validation rate sits at an edge "
             "of the grid (0: never extend)  \\[default: 2]")] = None,
    halving: Annotated[bool, typer.Option(
        help="successive halving: drop a technique's weak rates early")] = False,
    eta: Annotated[int, typer.Option(help="halving keeps 1/eta of the rates per rung")] = 3,
    out: ResultsFolder = Path("tournament"),
    data: Data = None,
    task_opt: TaskOpts = None,
    train_opt: Annotated[list[str] | None, typer.Option(
        help="training parameter key=value (repeatable): batch_size, max_seq_length, "
             "eval_every, dtype, …")] = None,
    targets: Targets = None,
    general_text: GeneralText = None,
    executor: Annotated[str, typer.Option(
        help="where the runs execute: {executors} (local: a process per run; inline: in this "
             "process, for debugging)")] = "local",
    jobs: Annotated[int, typer.Option(help="local runs at once")] = 1,
    ray_address: Annotated[str | None, typer.Option(
        help="an existing Ray cluster (default: start a local one)")] = None,
    run_timeout: Annotated[float | None, typer.Option(
        help="seconds before a run is killed and recorded as timed out")] = None,
    eval_base: Annotated[bool | None, typer.Option(
        help="also score the base model on test in the final runs, for comparison")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the plan only")] = False,
    calibrate: Annotated[bool, typer.Option(
        help="time one short run first to estimate the plan's duration")] = True,
    save_adapters: Annotated[bool, typer.Option(help="keep the final runs' adapters")] = True,
    retry_failed: Annotated[bool, typer.Option(
        help="on resume, run failed runs again (by default a failure is a result)")] = False,
    progress: ShowProgress = True,
) -> None:
    """Run many techniques on one model and task with the same budget; choose each one's
    learning rate on validation, report test over seeds, mark the Pareto-optimal ones.

    Results are named by their spec's content hash: the same command again resumes in --out,
    skipping finished runs."""
    from peftbench import tournament as tm

    budget = _budget(preset, task)
    methods = methods or budget.get("methods", "preset:quick")
    steps = steps if steps is not None else budget.get("steps", 100)
    lr_points = lr_points if lr_points is not None else budget.get("lr_points", 3)
    lr_extend = lr_extend if lr_extend is not None else budget.get("lr_extend", 2)
    task_opt = [*_pairs(budget.get("task_options", {})), *(task_opt or [])]
    train_opt = [*_pairs(budget.get("train", {})), *(train_opt or [])]
    if eval_base if eval_base is not None else budget.get("eval_base", False):
        train_opt.append("eval_base=true")
    cfg = _config(model, task, methods, steps, lr_grid, lr_points, seeds, halving, eta, data,
                  task_opt, train_opt, targets, general_text,
                  {"search_seed": seed, "lr_extend": lr_extend})
    plan = tm.make_plan(cfg, _model_kind(cfg))
    runner = _executor(executor, jobs, ray_address, run_timeout)
    try:
        calibration = None
        if calibrate:
            console.print("calibrating: one short run to estimate times …")
            calibration = tm.calibrate(cfg, plan, out, runner)
        console.print(plan_table(plan))
        console.print(plan_summary(plan, calibration, out), highlight=False)
        if dry_run:
            return
        display = TournamentDisplay(progress)
        with display:
            outcome = tm.Tournament(plan, out, runner, display, save_adapters,
                                    retry_failed).run()
    finally:
        runner.close()
    console.print(results_table(outcome))
    console.print(f"results: {out}/  ({len(outcome.failed())} failed runs; "
                  f"`peftbench report {out}` for charts)")
    if not any(t.finals and any(r.status == "success" for r in t.finals)
               for t in outcome.techniques.values()):
        raise typer.Exit(1)


def _config(model: str, task: str, methods: str, steps: int, lr_grid: str, lr_points: int,
            seeds: int, halving: bool, eta: int, data: str | None, task_opt: list[str] | None,
            train_opt: list[str] | None, targets: str | None, general_text: str | None,
            extra: dict[str, Any] | None = None) -> Any:
    from pydantic import ValidationError

    from peftbench.tournament import TournamentConfig

    options = parse_key_values(task_opt or [], "--task-opt")
    if data:
        options["data"] = data
    train = parse_key_values(train_opt or [], "--train-opt")
    for key in ("lr", "seed", "max_steps", "eval_test", "stop_after"):
        if key in train:
            raise UserError(f"--train-opt {key}: set by the tournament itself "
                            "(use --lr-grid, --seeds, --steps)")
    params = parse_train_params({**train, "max_steps": steps})
    try:
        return TournamentConfig(
            model=model, task=task, task_options=options,
            methods=[m.strip() for m in methods.split(",") if m.strip()],
            targets=targets, general_text=general_text, train=params,
            lr_grid=_parse_grid(lr_grid), lr_points=lr_points, seeds=seeds, halving=halving,
            eta=eta, **(extra or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "tournament"
        raise UserError(f"invalid tournament option {where}: {err.get('msg')}") from None


def _budget(preset: str | None, task: str) -> dict[str, Any]:
    """The preset's settings, with task options only for the task they were sized on."""
    from peftbench.tournament import BUDGETS

    if preset is None:
        return {}
    if preset not in BUDGETS:
        raise UserError(f"unknown preset '{preset}'; known: {', '.join(BUDGETS)}")
    budget = dict(BUDGETS[preset])
    budget["task_options"] = budget.get("task_options", {}).get(task.split(":")[0], {})
    return budget


def _pairs(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def _parse_grid(text: str) -> list[float] | None:
    if text.strip().lower() == "auto":
        return None
    try:
        grid = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--lr-grid '{text}': give 'auto' or numbers like 1e-4,3e-4") from None
    if not grid or any(not (v > 0 and math.isfinite(v)) for v in grid):
        raise UserError(f"--lr-grid '{text}': learning rates must be positive numbers")
    return grid


def _model_kind(cfg: Any) -> str:
    """causal-lm, or seq-cls for an encoder on a classification task (as `run` decides)."""
    from peftbench.engine.experiment import model_kind
    from peftbench.tasks import get_task

    return model_kind(get_task(cfg.task, cfg.task_options), cfg.model)


def _executor(name: str, jobs: int, address: str | None, timeout: float | None) -> Any:
    from peftbench.tournament.executors import get_executor

    if timeout is not None and timeout <= 0:
        raise UserError("--run-timeout must be a positive number of seconds")
    return get_executor(name).from_options(jobs=jobs, address=address, timeout=timeout)

