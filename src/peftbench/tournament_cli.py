"""`peftbench tournament`: plan, run and tabulate a fair comparison of many techniques."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from peftbench.errors import UserError
from peftbench.spec import parse_key_values, parse_train_params


def register(app: typer.Typer) -> None:
    """Add the `tournament` verb to ``app``."""
    app.command("tournament")(tournament)


def tournament(
    model: Annotated[str, typer.Option(help="smollm2-135m, minilm-l6, tiny-llama, tiny-bert, "
                                             "a hub id or a local folder")] = "smollm2-135m",
    task: Annotated[str, typer.Option(help="arith, gsm8k, metamathqa, sst2, jsonl:PATH, "
                                           "csv:PATH")] = "arith",
    preset: Annotated[str | None, typer.Option(
        help="quick (4 techniques, a budget sized for ~10 min on a laptop CPU) or full "
             "(every applicable technique); explicit options override it")] = None,
    methods: Annotated[str | None, typer.Option(
        help="lora,dora,oft,… | all | preset:quick | preset:full  [default: preset:quick]")]
    = None,
    steps: Annotated[int | None, typer.Option(
        help="optimizer steps of every run  [default: 100]")] = None,
    lr_grid: Annotated[str, typer.Option(
        help="auto (around each technique's default) or v1,v2,… for every technique")] = "auto",
    lr_points: Annotated[int | None, typer.Option(
        help="points of the auto grid  [default: 3]")] = None,
    seeds: Annotated[int, typer.Option(help="final runs of each technique's chosen rate")] = 1,
    halving: Annotated[bool, typer.Option(
        help="successive halving: drop a technique's weak rates early")] = False,
    eta: Annotated[int, typer.Option(help="halving keeps 1/eta of the rates per rung")] = 3,
    out: Annotated[Path, typer.Option(help="folder for results (resumable)")] = Path(
        "tournament"),
    data: Annotated[str | None, typer.Option(help="local data for the task")] = None,
    task_opt: Annotated[list[str] | None, typer.Option(
        help="task option key=value (repeatable)")] = None,
    train_opt: Annotated[list[str] | None, typer.Option(
        help="training parameter key=value (repeatable): batch_size, max_seq_length, "
             "eval_every, dtype, …")] = None,
    targets: Annotated[str | None, typer.Option(
        help="modules to adapt: attention (default), all-linear, or a comma list")] = None,
    general_text: Annotated[str | None, typer.Option(
        help="WikiText-2 folder for the forgetting probe (default: the hub)")] = None,
    executor: Annotated[str, typer.Option(
        help="local (a process per run), ray, or inline (in this process, for debugging)")]
    = "local",
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
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run many techniques on one model and task with the same budget; choose each one's
    learning rate on validation, report test over seeds, mark the Pareto-optimal ones."""
    from peftbench import tournament as tm
    from peftbench.progress import console

    budget = _budget(preset, task)
    methods = methods or budget.get("methods", "preset:quick")
    steps = steps if steps is not None else budget.get("steps", 100)
    lr_points = lr_points if lr_points is not None else budget.get("lr_points", 3)
    task_opt = [*_pairs(budget.get("task_options", {})), *(task_opt or [])]
    train_opt = [*_pairs(budget.get("train", {})), *(train_opt or [])]
    if eval_base if eval_base is not None else budget.get("eval_base", False):
        train_opt.append("eval_base=true")
    cfg = _config(model, task, methods, steps, lr_grid, lr_points, seeds, halving, eta, data,
                  task_opt, train_opt, targets, general_text)
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
            train_opt: list[str] | None, targets: str | None, general_text: str | None) -> Any:
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
            eta=eta)
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
    from peftbench.experiment import model_kind
    from peftbench.tasks import get_task

    return model_kind(get_task(cfg.task, cfg.task_options), cfg.model)


def _executor(name: str, jobs: int, address: str | None, timeout: float | None) -> Any:
    from peftbench.executors import InlineExecutor, LocalExecutor, RayExecutor

    if timeout is not None and timeout <= 0:
        raise UserError("--run-timeout must be a positive number of seconds")
    if name == "local":
        return LocalExecutor(jobs=jobs, timeout=timeout)
    if name == "ray":
        return RayExecutor(address=address, timeout=timeout)
    if name == "inline":
        return InlineExecutor()
    raise UserError(f"unknown executor '{name}'; use 'local', 'ray' or 'inline'")


# --------------------------------------------------------------------------------------------
# Display


def plan_table(plan: Any) -> Table:
    """The grid before it runs: techniques and the rates each will try."""
    cfg = plan.cfg
    table = Table(title=f"Tournament plan: {cfg.model} on {cfg.task}")
    table.add_column("technique")
    table.add_column("learning rates searched")
    table.add_column("note")
    for row in plan.rows():
        table.add_row(*row)
    return table


def plan_summary(plan: Any, calibration: Any, out: Path) -> str:
    """Run counts, the time estimate and where results go, as one paragraph."""
    from peftbench.tournament import estimate_seconds

    rungs = " → ".join(str(s) for s in plan.rungs)
    text = (f"{plan.search_runs()} search runs (steps per rung: {rungs}), "
            f"{plan.final_runs()} final runs ({plan.cfg.seeds} seed(s) each) → {out}/")
    if calibration is not None:
        text += (f"; estimated {_duration(estimate_seconds(plan, calibration))} "
                 f"(calibration: {calibration.step:.2f} s/step, "
                 f"{calibration.validation:.1f} s/validation, "
                 f"{calibration.startup:.1f} s start-up per run)")
    return text


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class TournamentDisplay:
    """Rich bars: one overall (runs done / failed / remaining, ETA), one per running run."""

    def __init__(self, enabled: bool) -> None:
        from peftbench.progress import make_progress

        self.progress = make_progress(enabled)
        self.overall: Any = None
        self.current: dict[str, Any] = {}
        self.done = self.failed = 0
        self.total = 0

    def __enter__(self) -> TournamentDisplay:
        self.progress.__enter__()
        self.overall = self.progress.add_task("tournament", total=0, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def stage(self, name: str, total: int) -> None:
        """A stage adds its runs to the overall bar."""
        self.total += total
        self.progress.update(self.overall, total=self.total, description=f"tournament: {name}")
        self._info()

    def started(self, spec: Any) -> None:
        """A bar for the new run."""
        self.current[spec.content_hash()] = self.progress.add_task(
            f"  {spec.display_name()}", total=spec.train.steps_to_run(), info="starting")

    def event(self, spec: Any, event: dict[str, Any]) -> None:
        """Show the run's current phase (train, validation, test) and its progress."""
        task = self.current.get(spec.content_hash())
        if task is None or "description" not in event:
            return
        self.progress.update(task, total=event.get("total") or 1,
                             completed=event.get("completed", 0),
                             info=f"{event['description']} {event.get('info') or ''}".strip())

    def finished(self, record: Any) -> None:
        """Count the run; drop its bar."""
        self.done += 1
        self.failed += record.status != "success"
        task = self.current.pop(record.spec.content_hash(), None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.update(self.overall, completed=self.done)
        self._info()

    def _info(self) -> None:
        remaining = self.total - self.done
        self.progress.update(self.overall, info=f"{self.done - self.failed} ok, {self.failed} "
                             f"failed, {remaining} to go")


def results_table(outcome: Any) -> Table:
    """Per technique: chosen rate, test mean ± CI, memory, time, size, parameters, forgetting;
    Pareto-optimal (test score ↑ vs peak memory ↓) marked ★, within noise of it ☆."""
    from peftbench.analysis import (
        FRONTIER,
        NEAR,
        aggregate,
        format_value,
        frontier_status,
        get_metric,
        parse_metric_spec,
    )
    from peftbench.results import summarize

    runs = [summarize(r.result, str(r.path)) for t in outcome.techniques.values()
            for r in t.finals]
    aggs = {a.technique: a for a in aggregate(runs, level="technique")}
    specs = [parse_metric_spec("peak_memory"), parse_metric_spec("test_score")]
    ordered = [aggs[m] for m in outcome.techniques if m in aggs and aggs[m].n]
    status = dict(zip([a.technique for a in ordered], frontier_status(ordered, specs),
                      strict=True))
    metrics = ["test_score", "peak_memory", "train_time", "file_size", "trainable_params",
               "forgetting"]
    base = [r.train_info.get("base_test_score") for t in outcome.techniques.values()
            for r in t.finals if r.train_info.get("base_test_score") is not None]
    base_note = f"; base model test score {base[0]:.3f}" if base else ""
    table = Table(title="Tournament results (final runs; rates chosen on validation)",
                  caption="★ Pareto-optimal for test score ↑ vs peak memory ↓; ☆ within "
                          f"noise of the frontier; ± is the 95% CI over seeds{base_note}")
    for name in ["", "technique", "best lr", *[get_metric(m).label for m in metrics], "seeds"]:
        table.add_column(name, justify="left" if name in ("", "technique") else "right")
    for method, tech in sorted(outcome.techniques.items(),
                               key=lambda kv: _sort_key(aggs.get(kv[0]))):
        agg = aggs.get(method)
        if agg is None or not agg.n:
            why = tech.note or "; ".join(sorted({r.error for r in tech.finals if r.error}))
            table.add_row("✗", method, _lr(tech.chosen_lr), f"failed: {why}"[:80],
                          *[""] * (len(metrics) - 1), "0")
            continue
        mark = {FRONTIER: "★", NEAR: "☆"}.get(status.get(method, ""), "")
        cells = []
        for name in metrics:
            metric = get_metric(name)
            text = format_value(metric, agg.value(name))
            if agg.n > 1 and agg.value(name) is not None:
                text += f" ± {format_value(metric, agg.ci.get(name, 0.0))}"
            cells.append(text)
        table.add_row(mark, method, _lr(tech.chosen_lr), *cells, str(agg.n))
    return table


def _sort_key(agg: Any) -> float:
    value = agg.value("test_score") if agg is not None and agg.n else None
    return -value if value is not None else math.inf


def _lr(lr: float | None) -> str:
    return f"{lr:g}" if lr is not None else "—"
