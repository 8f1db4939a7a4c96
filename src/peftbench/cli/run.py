"""`peftbench run`: one experiment end to end, one result file.

Everything the user gave is checked before anything slow starts (no download, no model load):
the options while the command line is parsed, then the spec and adapter config files, the
technique's config with the ``--set`` values, and the task with its options and local data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from peftbench.cli.display import console, run_summary_line
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
    check_method,
    non_negative,
    one_of,
    positive,
    read_json_object,
)
from peftbench.engine.spec import ExperimentSpec, parse_key_values, parse_spec

EXAMPLES = [
    "peftbench run --model smollm2-135m --task arith --method lora --eval-base",
    "peftbench run --method dora --set r=16 --steps 200 --lr 3e-4 --out results",
    "peftbench run --task jsonl --data qa.jsonl --task-opt match=number --method ia3",
    "peftbench run path/to/experiments/lora/llama-3.2-3B-rank32 --model tiny-llama --steps 2",
]

#: the autocast dtypes `--dtype` takes
DTYPES = ("auto", "float32", "bfloat16", "float16")


def register(app: typer.Typer) -> None:
    """Add the `run` verb to ``app``."""
    add_verb(app, "run", run, EXAMPLES)


def run(
    experiment: Annotated[Path | None, typer.Argument(
        metavar="EXPERIMENT", exists=True, file_okay=False, show_default=False,
        help="a PEFT-suite experiment folder (adapter_config.json + training_params.json)")]
    = None,
    model: Model = "smollm2-135m",
    task: Task = "arith",
    method: Annotated[str, typer.Option(
        callback=check_method, help="technique name or alias (`peftbench methods` lists them)")]
    = "lora",
    adapter_config: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, show_default="the technique's own defaults",
        help="a PEFT adapter_config.json to use as the technique's config (its peft_type "
             "picks the technique)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", show_default="none",
        help="override a config field of the technique, e.g. r=16 (repeatable; values are "
             "JSON: 16, 0.1, true, [\"q_proj\"])")] = None,
    targets: Targets = None,
    data: Data = None,
    task_opt: TaskOpts = None,
    steps: Annotated[int | None, typer.Option(
        min=1, show_default="100", help="optimizer steps")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, show_default="8", help="examples per micro-batch")] = None,
    grad_accum: Annotated[int | None, typer.Option(
        min=1, show_default="1", help="micro-batches per optimizer step")] = None,
    lr: Annotated[float | None, typer.Option(
        callback=positive, show_default="the technique's", help="learning rate")] = None,
    weight_decay: Annotated[float | None, typer.Option(
        callback=non_negative, show_default="0", help="AdamW weight decay")] = None,
    max_seq_length: Annotated[int | None, typer.Option(
        min=8, show_default="256", help="tokens per example (longer ones are cut)")] = None,
    dtype: Annotated[str | None, typer.Option(
        callback=one_of("dtype", lambda: DTYPES), show_default="auto",
        help="autocast dtype: auto (bfloat16 where the hardware runs it fast), float32, "
             "bfloat16, float16")] = None,
    eval_every: Annotated[int | None, typer.Option(
        min=0, show_default="0: half-way and at the end",
        help="validate every N steps")] = None,
    eval_batch_size: Annotated[int | None, typer.Option(
        min=1, show_default="32", help="examples per evaluation batch")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        min=1, show_default="the task's", help="generation budget when scoring")] = None,
    seed: Annotated[int | None, typer.Option(
        min=0, show_default="0", help="seed of the adapter's initialisation and the data order")]
    = None,
    eval_base: Annotated[bool, typer.Option(help="also score the base model on test")] = False,
    general_text: GeneralText = None,
    spec_file: Annotated[Path | None, typer.Option(
        "--spec", exists=True, dir_okay=False, show_default="none",
        help="a JSON experiment spec (as in a result's run_info.peftbench.spec); other options "
             "override it")] = None,
    out: ResultsFolder = Path("results"),
    report_to: ReportTo = "none",
    tracking_dir: TrackingDir = Path("trackers"),
    progress: ShowProgress = True,
    as_json: AsJson = False,
) -> None:
    """Train, evaluate and measure one experiment, writing one result file.

    The result file's path goes to stdout (`--json`: a summary of the run), progress and the
    summary line to stderr, so `RESULT=$(peftbench run …)` captures the path. A mistake in
    the options, the config or the data stops before anything is trained (exit 2)."""
    from peftbench.cli.display.trackers import print_tracking
    from peftbench.engine.experiment import run_experiment
    from peftbench.trackers import tracking_config

    spec = build_spec(
        spec_file, experiment, model=model, task=task, method=method,
        adapter_config=adapter_config, set_=set_, targets=targets, data=data,
        task_opt=task_opt, eval_base=eval_base,
        general_text=str(general_text) if general_text is not None else None,
        train=_given(max_steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                     weight_decay=weight_decay, max_seq_length=max_seq_length, dtype=dtype,
                     eval_every=eval_every, eval_batch_size=eval_batch_size,
                     max_new_tokens=max_new_tokens, seed=seed))
    check_inputs(spec)
    tracking = tracking_config(report_to, tracking_dir, results=out)
    outcome = run_experiment(spec, out, progress=progress, tracking=tracking)
    info = outcome.result["train_info"]
    if outcome.ok:
        console.print(run_summary_line(info), soft_wrap=True)
        _forgetting_note(info)
    else:
        console.print(f"[bold red]run failed:[/] {outcome.result['run_info']['error_msg']}",
                      highlight=False, soft_wrap=True)
    print_tracking(tracking)
    typer.echo(json.dumps(run_json(outcome), indent=1) if as_json else str(outcome.path))
    if not outcome.ok:
        raise typer.Exit(1)


def _forgetting_note(info: dict[str, Any]) -> None:
    """One line on stderr when forgetting was not measured, and why (the hub unreachable)."""
    from peftbench.tasks.hub import hub_problem

    if info.get("scores_note"):
        console.print(f"note: scores {info['scores_note']}", highlight=False, soft_wrap=True)
        return
    note = info.get("forgetting_note")
    if note and info.get("forgetting") is None:
        why = hub_problem() or str(note).removesuffix(": forgetting not measured")
        console.print(f"note: forgetting not measured ({why}); --general-text PATH reads a "
                      "local WikiText-2 copy", highlight=False, soft_wrap=True)


def build_spec(spec_file: Path | None, experiment: Path | None, *, model: str, task: str,
               method: str, adapter_config: Path | None, set_: list[str] | None,
               targets: str | None, data: str | None, task_opt: list[str] | None,
               eval_base: bool, general_text: str | None, train: dict[str, Any]
               ) -> ExperimentSpec:
    """The experiment spec from a spec file and/or a PEFT-suite folder, then the options."""
    fields = _base_fields(spec_file, experiment)
    params = {**fields.pop("train", {}), **train}
    if eval_base:
        params["eval_base"] = True
    fields.setdefault("model", model)
    fields.setdefault("task", task)
    fields.setdefault("method", method)
    _apply_adapter_config(fields, adapter_config)
    fields["method"] = _catalog_name(fields["method"])
    fields["adapter_config"] = {**fields.get("adapter_config", {}),
                                **parse_key_values(set_ or [], "--set")}
    options = {**fields.get("task_options", {}), **parse_key_values(task_opt or [], "--task-opt")}
    if data:
        options["data"] = data
    fields["task_options"] = options
    fields.update(_given(targets=targets, general_text=general_text))
    return parse_spec({**fields, "train": params})


def check_inputs(spec: ExperimentSpec) -> None:
    """Check what the user gave before any download: the technique and its config (with the
    ``--set`` values), the task with its options and local data, the general text file; with
    a config of the user's, on a model that needs no download, the adapter is built on it
    once, so that a value only the model can refuse (a rank of -4) stops here too."""
    from peftbench.methods import get_method
    from peftbench.tasks import get_task

    method = get_method(spec.method)
    task = get_task(spec.task, spec.task_options)  # options checked; local files read
    if spec.general_text and spec.train.forgetting_samples:
        check_general_text(spec.general_text)
    if not spec.adapter_config or method.peft_type is None:
        return
    local = _local_model(spec.model)
    kind = "seq-cls" if task.kind == "classification" and local and _is_encoder(spec.model) \
        else "causal-lm"
    if task.kind == "image":
        kind = "image-gen"
    check_adapter_config(method, kind, spec.targets, spec.adapter_config)
    if local and kind != "image-gen":
        from peftbench.engine.prepared import head_size

        _build_once(method, kind, spec, head_size(task))


def check_adapter_config(method: Any, kind: str, targets: str | None,
                         overrides: dict[str, Any]) -> None:
    """Build the technique's PEFT config with ``overrides`` (no model needed): an unknown
    field, a value of the wrong type or one PEFT rejects is a `UserError` now. Where the
    defaults alone need the model to be valid (sizes fitted to it), the check waits for it."""
    try:
        method.peft_config(kind, targets, {})
    except Exception:  # the defaults need the model: checked when the adapter is built
        return
    method.peft_config(kind, targets, overrides)


def _build_once(method: Any, kind: str, spec: ExperimentSpec, num_labels: int) -> None:
    """Build the adapter with the user's config on the (local) model and drop it."""
    from peftbench.cli.display import quiet_third_party
    from peftbench.engine.models import load_model

    with quiet_third_party():
        loaded = load_model(spec.model, kind, num_labels=num_labels, seed=spec.train.seed)
        method.build(loaded.model, kind, spec.targets, spec.adapter_config)


def check_general_text(path: str) -> None:
    """The forgetting probe's text: readable, with paragraphs (``--general-text``)."""
    from peftbench.errors import UserError
    from peftbench.tasks import load_general_text

    try:
        load_general_text(path, 1)
    except UserError as exc:
        raise UserError(f"--general-text: {exc}") from None


def _local_model(model: str) -> bool:
    """Whether ``model`` loads without a download (an embedded or tiny one, a folder)."""
    from peftbench.cli.options import model_names

    return model in model_names() or Path(model).expanduser().exists()


def _is_encoder(model: str) -> bool:
    from peftbench.engine.models import is_encoder

    return is_encoder(model)


def run_json(outcome: Any) -> dict[str, Any]:
    """The `--json` summary of a run: where its result is and its main figures."""
    info = outcome.result["train_info"]
    keys = ("status", "test_metric", "test_score", "base_test_score", "valid_score",
            "train_time", "tokens_per_sec", "peak_memory", "forgetting", "file_size",
            "num_trainable_params")
    summary = {"result": str(outcome.path), **{k: info.get(k) for k in keys}}
    summary["error"] = outcome.result["run_info"].get("error_msg") or None
    return summary


def _catalog_name(method: Any) -> Any:
    """The catalog's spelling of a technique (``LoRA`` -> ``lora``), so that file names and
    tables use one; an unknown name is a `UserError` with the closest known one."""
    if not isinstance(method, str) or not method.strip():
        return method  # the spec's own check reports it
    from peftbench.methods import get_method

    return get_method(method).name


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _base_fields(spec_file: Path | None, experiment: Path | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if spec_file is not None:
        fields = read_json_object(spec_file, "--spec", "an experiment spec")
    if experiment is not None:
        from peftbench.engine.peft_suite import read_experiment_folder

        folder = read_experiment_folder(experiment)
        fields["train"] = {**fields.get("train", {}), **folder.pop("train")}
        fields.update(folder)
    return fields


def _apply_adapter_config(fields: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    config = read_json_object(path, "--adapter-config", "a PEFT adapter config")
    if isinstance(config.get("peft_type"), str):
        fields["method"] = config["peft_type"].lower()
    fields["adapter_config"] = config
