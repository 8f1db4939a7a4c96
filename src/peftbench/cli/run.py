"""`peftbench run`: one experiment end to end, one result file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from peftbench.cli.display import console, run_summary_line
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
from peftbench.engine.spec import parse_key_values, parse_spec
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench run --model smollm2-135m --task arith --method lora --eval-base",
    "peftbench run --method dora --set r=16 --steps 200 --lr 3e-4 --out results",
    "peftbench run path/to/experiments/lora/llama-3.2-3B-rank32 --model smollm2-135m",
]


def register(app: typer.Typer) -> None:
    """Add the `run` verb to ``app``."""
    add_verb(app, "run", run, EXAMPLES)


def run(
    experiment: Annotated[Path | None, typer.Argument(
        help="A PEFT-suite experiment folder (adapter_config.json + training_params.json)")] = None,
    model: Model = "smollm2-135m",
    task: Task = "arith",
    method: Annotated[str, typer.Option(help="technique name (see `peftbench methods`)")] = "lora",
    adapter_config: Annotated[Path | None, typer.Option(
        help="a PEFT adapter_config.json to use as the technique's config")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config field: key=value (repeatable)")] = None,
    targets: Targets = None,
    data: Data = None,
    task_opt: TaskOpts = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    grad_accum: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate (default: the technique's)")]
    = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    max_seq_length: Annotated[int | None, typer.Option()] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16, float16")] = None,
    eval_every: Annotated[int | None, typer.Option()] = None,
    eval_batch_size: Annotated[int | None, typer.Option()] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    eval_base: Annotated[bool, typer.Option(help="also score the base model on test")] = False,
    general_text: GeneralText = None,
    spec_file: Annotated[Path | None, typer.Option(
        "--spec", help="a JSON experiment spec; other options override it")] = None,
    out: ResultsFolder = Path("results"),
    progress: ShowProgress = True,
) -> None:
    """Train, evaluate and measure one experiment, writing one result file."""
    from peftbench.engine.experiment import run_experiment

    fields = _base_fields(spec_file, experiment)
    train = dict(fields.pop("train", {}))
    train.update(_given(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                        weight_decay=weight_decay, max_seq_length=max_seq_length, dtype=dtype,
                        eval_every=eval_every, eval_batch_size=eval_batch_size,
                        max_new_tokens=max_new_tokens, seed=seed))
    if "steps" in train:
        train["max_steps"] = train.pop("steps")
    if eval_base:
        train["eval_base"] = True
    fields.setdefault("model", model)
    fields.setdefault("task", task)
    fields.setdefault("method", method)
    _apply_adapter_config(fields, adapter_config)
    fields["adapter_config"] = {**fields.get("adapter_config", {}),
                                **parse_key_values(set_ or [], "--set")}
    options = {**fields.get("task_options", {}), **parse_key_values(task_opt or [], "--task-opt")}
    if data:
        options["data"] = data
    fields["task_options"] = options
    fields.update(_given(targets=targets, general_text=general_text))
    spec = parse_spec({**fields, "train": train})
    outcome = run_experiment(spec, out, progress=progress)
    info = outcome.result["train_info"]
    if not outcome.ok:
        console.print(f"[bold red]run failed:[/] {outcome.result['run_info']['error_msg']}")
        console.print(f"result: {outcome.path}")
        raise typer.Exit(1)
    console.print(run_summary_line(info))
    console.print(f"result: {outcome.path}")


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _base_fields(spec_file: Path | None, experiment: Path | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if spec_file is not None:
        try:
            fields = json.loads(spec_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{spec_file}: not a readable JSON spec ({exc})") from None
        if not isinstance(fields, dict):
            raise UserError(f"{spec_file}: a spec must be a JSON object")
    if experiment is not None:
        from peftbench.engine.peft_suite import read_experiment_folder

        folder = read_experiment_folder(experiment)
        fields["train"] = {**fields.get("train", {}), **folder.pop("train")}
        fields.update(folder)
    return fields


def _apply_adapter_config(fields: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable adapter config ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: an adapter config must be a JSON object")
    if isinstance(config.get("peft_type"), str):
        fields["method"] = config["peft_type"].lower()
    fields["adapter_config"] = config
