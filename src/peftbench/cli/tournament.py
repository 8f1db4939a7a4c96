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
    print_grid,
    results_table,
    tournament_verdict,
)
from peftbench.cli.options import (
    AsJson,
    Data,
    GeneralText,
    Model,
    ReportTo,
    ResultsFolder,
    ShowProgress,
    Targets,
    Task,
    TaskOpts,
    TrackingDir,
    add_verb,
    executor_names,
    one_of,
    positive,
)
from peftbench.cli.run import check_general_text
from peftbench.engine.spec import parse_key_values
from peftbench.errors import UserError, did_you_mean

EXAMPLES = [
    "peftbench tournament --preset quick --out tournament-quick",
    "peftbench tournament --methods lora,dora,oft --steps 200 --seeds 3 --halving --dry-run",
    "peftbench tournament --task jsonl --data qa.jsonl --methods lora,ia3 --out my-tournament",
    "peftbench tournament --model config:llama-3.2-1b --methods lora,qlora,full --memory-only",
]


def preset_names() -> list[str]:
    """The presets' names (quick, full, memory, …), as the tournament's `BUDGETS` define them."""
    from peftbench.tournament import BUDGETS

    return list(BUDGETS)


def register(app: typer.Typer) -> None:
    """Add the `tournament` verb to ``app``."""
    add_verb(app, "tournament", tournament, EXAMPLES)


def tournament(
    ctx: typer.Context,
    model: Model = "smollm2-135m",
    task: Task = "arith",
    preset: Annotated[str | None, typer.Option(
        callback=one_of("preset", preset_names), show_default="none: the options below",
        help="quick (4 techniques, a budget sized for a laptop CPU) or full (every applicable "
             "technique); explicit options override it")] = None,
    methods: Annotated[str | None, typer.Option(
        help="lora,dora,oft,… | all | preset:quick | preset:full  \\[default: the preset's, "
             "else preset:quick]")] = None,
    steps: Annotated[int | None, typer.Option(
        min=1, help="optimizer steps of every run  \\[default: the preset's, else 100]")]
    = None,
    lr_grid: Annotated[str, typer.Option(
        help="auto (around each technique's default) or v1,v2,… for every technique")] = "auto",
    lr_points: Annotated[int | None, typer.Option(
        min=1, help="points of the auto grid  \\[default: the preset's, else 3]")] = None,
    seeds: Annotated[int, typer.Option(
        min=1, help="final runs of each technique's chosen rate")] = 1,
    seed: Annotated[int, typer.Option(
        min=0, help="seed of the tuning runs; the final runs take the next ones (seed+1, …)")] = 0,
    lr_extend: Annotated[int | None, typer.Option(
        min=0, help="extra rates a technique may get when its best validation rate sits at an "
                    "edge of the grid (0: never extend)  \\[default: the preset's, else 2]")]
    = None,
    halving: Annotated[bool, typer.Option(
        help="successive halving: drop a technique's weak rates early")] = False,
    eta: Annotated[int, typer.Option(
        min=2, help="halving keeps 1/eta of the rates per rung")] = 3,
    out: ResultsFolder = Path("tournament"),
    report_to: ReportTo = "none",
    tracking_dir: TrackingDir = Path("trackers"),
    data: Data = None,
    task_opt: TaskOpts = None,
    train_opt: Annotated[list[str] | None, typer.Option(
        metavar="KEY=VALUE", show_default="the preset's, else TrainParams' defaults",
        help="training parameter (repeatable): batch_size, grad_accum, max_seq_length, "
             "eval_every, eval_batch_size, max_new_tokens, dtype, weight_decay, "
             "forgetting_samples, …")] = None,
    targets: Targets = None,
    general_text: GeneralText = None,
    executor: Annotated[str, typer.Option(
        callback=one_of("executor", executor_names),
        help="where the runs execute: {executors} (local: a process per run; inline: in this "
             "process, for debugging; ray: a Ray cluster)")] = "local",
    jobs: Annotated[int, typer.Option(min=1, help="local runs at once")] = 1,
    ray_address: Annotated[str | None, typer.Option(
        help="an existing Ray cluster, HOST:PORT  \\[default: start a local one]")] = None,
    run_timeout: Annotated[float | None, typer.Option(
        callback=positive, help="seconds before a run is killed and recorded as timed out  "
                                "\\[default: no limit]")] = None,
    eval_base: Annotated[bool | None, typer.Option(
        help="also score the base model on test in the final runs, for comparison  "
             "\\[default: the preset's, else no]")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="print the plan (on stdout) and stop")] = False,
    memory_only: Annotated[bool, typer.Option(
        help="memory and speed only: a few steps of each technique at its default rate, no "
             "learning-rate search, no evaluation (always so with a config: model)")] = False,
    calibrate: Annotated[bool, typer.Option(
        help="time one short run first to estimate the plan's duration")] = True,
    save_adapters: Annotated[bool, typer.Option(help="keep the final runs' adapters")] = True,
    retry_failed: Annotated[bool, typer.Option(
        help="on resume, run failed runs again (by default a failure is a result)")] = False,
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Run many techniques on one model and task under the same budget, and compare them.

    Each technique's learning rate is chosen on validation, test is reported over seeds, and
    the Pareto-optimal ones are marked.

    The results table goes to stdout (Markdown when stdout is not a terminal) and to
    OUT/results.md; the plan, progress and notes go to stderr. Results are named by their
    spec's content hash: the same command again resumes in --out, skipping finished runs.

    --task glue:all (or superglue:all) runs one tournament per task of the suite, each in
    OUT/NAME, and writes the per-task table and the suite's score to OUT/suite.json."""
    from peftbench import tournament as tm
    from peftbench.cli.display.trackers import print_tracking
    from peftbench.tournament.suite import suite_of, suite_task_names
    from peftbench.trackers import prepare_stores, tracking_config

    model, task = _preset_model_task(ctx, preset, model, task)
    budget = _budget(preset, task)
    methods = methods or budget.get("methods", "preset:quick")
    suite = suite_of(task)
    if suite is not None and (memory_only or model.startswith("config:")):
        raise UserError(f"--task {task}: a suite tournament compares scores; --memory-only (and "
                        "a config: model) measure one task: give one, e.g. --task "
                        f"{suite_task_names(suite)[0]}")
    if memory_only or model.startswith("config:"):  # random weights: nothing to score
        from peftbench.cli.memory_only import memory_tournament

        return memory_tournament(
            model=model, task=task, methods=methods, steps=steps, out=out, data=data,
            task_opt=task_opt or [], train_opt=train_opt or [], targets=targets, seed=seed,
            executor=(executor, jobs, ray_address, run_timeout), dry_run=dry_run,
            retry_failed=retry_failed, progress=progress, as_json=as_json)
    steps = steps if steps is not None else budget.get("steps", 100)
    lr_points = lr_points if lr_points is not None else budget.get("lr_points", 3)
    lr_extend = lr_extend if lr_extend is not None else budget.get("lr_extend", 2)
    task_opt = [*_pairs(budget.get("task_options", {})), *(task_opt or [])]
    train_opt = [*_pairs(budget.get("train", {})), *(train_opt or [])]
    if eval_base if eval_base is not None else budget.get("eval_base", False):
        train_opt.append("eval_base=true")
    cfg = _config(model, task, methods, steps, lr_grid, lr_points, seeds, halving, eta, data,
                  task_opt, train_opt, targets,
                  str(general_text) if general_text is not None else None,
                  {"search_seed": seed, "lr_extend": lr_extend})
    if cfg.general_text and cfg.train.forgetting_samples:
        check_general_text(cfg.general_text)  # before the calibration run reads it
    if suite is not None:
        from peftbench.cli.suite import suite_tournament

        return suite_tournament(
            cfg, suite, out=out, executor=(executor, jobs, ray_address, run_timeout),
            tracking=(report_to, tracking_dir), calibrate=calibrate, dry_run=dry_run,
            save_adapters=save_adapters, retry_failed=retry_failed, progress=progress,
            as_json=as_json)
    plan = tm.make_plan(cfg, _model_kind(cfg))
    tracking = tracking_config(report_to, tracking_dir, group=out.resolve().name, results=out)
    runner = _executor(executor, jobs, ray_address, run_timeout)
    try:
        calibration = None
        if calibrate:
            console.print("calibrating: one short run to estimate times …")
            calibration = tm.calibrate(cfg, plan, out, runner)
        if dry_run:
            print_grid(plan_table(plan))
            typer.echo(plan_summary(plan, calibration, out))
            return
        console.print(plan_table(plan))
        console.print(plan_summary(plan, calibration, out), highlight=False)
        prepare_stores(tracking)
        display = TournamentDisplay(progress)
        with display:
            estimate = (tm.estimate_record(plan, calibration) if calibration is not None
                        else None)
            outcome = tm.Tournament(plan, out, runner, display, save_adapters,
                                    retry_failed, tracking=tracking, estimate=estimate).run()
    finally:
        runner.close()
    show_results(outcome, out, as_json)
    print_tracking(tracking)
    if not any(t.finals and any(r.status == "success" for r in t.finals)
               for t in outcome.techniques.values()):
        raise typer.Exit(1)


def show_results(outcome: Any, out: Path, as_json: bool) -> None:
    """The results table on stdout (or the `--json` summary) and in ``out``/results.md; where
    they are on stderr."""
    grid = results_table(outcome)
    path = write_results_markdown(grid, out)
    if as_json:
        typer.echo(json.dumps(results_json(outcome, out), indent=1))
    else:
        print_grid(grid)
    console.print(f"results: {out}/ ({path.name}; {len(outcome.failed())} failed runs; "
                  f"`peftbench report {out}` for charts)", highlight=False)


def write_results_markdown(grid: Any, out: Path) -> Path:
    """The results table as ``out``/results.md (written atomically: readers see the old file
    or the whole new one)."""
    import os
    import tempfile

    path = out / "results.md"
    fd, tmp = tempfile.mkstemp(prefix=".results.md.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(grid.markdown(level=1))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def results_json(outcome: Any, out: Path) -> dict[str, Any]:
    """The `--json` summary: per technique its chosen rate, frontier status, figures over the
    final runs (value and 95% interval), whom it beats, and its result files."""
    from peftbench.cli.display import METRICS_SHOWN

    verdict = tournament_verdict(outcome)
    techniques = {}
    for method, tech in outcome.techniques.items():
        agg = verdict["aggregates"].get(method)
        ok = agg is not None and agg.n > 0
        techniques[method] = {
            "chosen_lr": tech.chosen_lr,
            "status": verdict["status"].get(method, "failed" if not ok else ""),
            "seeds": agg.n if ok else 0,
            "metrics": {m: {"value": agg.value(m), "interval": agg.interval(m)}
                        for m in METRICS_SHOWN} if ok else {},
            "significantly_better_than": verdict["beats"].get(method, []),
            "results": [str(r.path) for r in tech.finals],
            "note": tech.note or None,
        }
    return {"folder": str(out), "results_md": str(out / "results.md"),
            "test_items": verdict["items"], "base_test_score": verdict["base_test_score"],
            "failed_runs": len(outcome.failed()), "techniques": techniques,
            "caveats": verdict["caveats"], "notes": list(getattr(outcome, "notes", []))}


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
    for key in SET_BY_US:
        if key in train:
            raise UserError(f"--train-opt {key}: set by the tournament itself "
                            "(use --lr-grid, --seeds, --steps)")
    params = _train_params({**train, "max_steps": steps})
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


def _train_params(values: dict[str, Any]) -> Any:
    """The training parameters; a bad one is a `UserError` naming the option that set it
    (``--steps`` or ``--train-opt KEY``)."""
    from pydantic import ValidationError

    from peftbench.engine.spec import TrainParams

    try:
        return TrainParams.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err.get("loc", ("?",))[0])
        option = "--steps" if key == "max_steps" else f"--train-opt {key}"
        given = f" {values[key]!r}" if key in values else ""
        settable = [k for k in TrainParams.model_fields if k not in SET_BY_US]
        known = "" if key in TrainParams.model_fields else (
            f"{did_you_mean(key, settable)} (known: {', '.join(settable)})")
        raise UserError(f"{option}{given}: {err.get('msg', 'invalid')}{known}") from None


#: training parameters the tournament sets itself
SET_BY_US = ("lr", "seed", "max_steps", "eval_test", "stop_after")


def _preset_model_task(ctx: typer.Context, preset: str | None, model: str,
                       task: str) -> tuple[str, str]:
    """The preset's model and task (``quick-image``: tiny-flux2 on dreambooth) where the
    command line did not give them."""
    from peftbench.tournament import BUDGETS

    budget = BUDGETS.get(preset or "", {})

    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)  # typer's click or click's own enum: by name
        return source is not None and getattr(source, "name", "") != "DEFAULT"

    return (model if given("model") else budget.get("model", model),
            task if given("task") else budget.get("task", task))


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

