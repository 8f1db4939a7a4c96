"""Run one experiment end to end and write its result file.

    spec ─ load task data (validated first) ─ load model ─ base-model probes ─ build adapter
         ─ train (periodic validation) ─ test once ─ forgetting, inference overhead ─ save
         adapter ─ result JSON (atomic)

Loading and scoring are in `prepared`, the shared base-model figures in `base_probes`; what the
run measures fills a `Measurements` field by field, and `ResultRecord` writes the file.

Errors the user caused (bad data, unknown names, invalid configs) propagate as `UserError`
before anything is written. Anything that goes wrong once training has started (an exception,
a NaN loss, out of memory) is recorded as a ``failed`` result with the error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import shutil
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from peftbench.engine import evaluate
from peftbench.engine.answers import answers_path, write_answers
from peftbench.engine.base_probes import BASE_PROBES_DIR, base_probes_key, measure_base_probes
from peftbench.engine.batching import collate
from peftbench.engine.cost_only import scores_note
from peftbench.engine.measure import (
    MemoryTracker,
    count_parameters,
    package_versions,
    system_info,
    tensor_bytes,
)
from peftbench.engine.model_card import write_model_card
from peftbench.engine.prepared import (
    Prepared,
    encode_examples,
    general_loss,
    items_fingerprint,
    model_kind,
    prepare,
    score_answers,
    score_items,
    score_metrics,
    score_split,
)
from peftbench.engine.progress import make_progress, phase
from peftbench.engine.record import Measurements, ResultRecord, ResultView
from peftbench.engine.results import (
    STATUS_FAILED,
    STATUS_SUCCESS,
    atomic_write_json,
    result_filename,
    sanitize,
)
from peftbench.engine.spec import ExperimentSpec
from peftbench.engine.tracking import finish_tracking, open_tracking
from peftbench.engine.train import train
from peftbench.errors import UserError
from peftbench.methods.base import Method
from peftbench.trackers import RunTracking, TrackingConfig

__all__ = ["BASE_PROBES_DIR", "Prepared", "RunOutcome", "base_probes_key", "build_result",
           "encode_examples", "items_fingerprint", "model_kind", "prepare", "run_experiment",
           "score_answers", "score_items", "score_metrics", "score_split"]


@dataclass
class RunOutcome:
    """The result file written by a run and its content."""

    path: Path
    result: dict[str, Any]

    @property
    def view(self) -> ResultView:
        """Typed reads of the result."""
        return ResultView(self.result)

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.view.status == STATUS_SUCCESS

    @property
    def error(self) -> str:
        """The run's error message ("" when it succeeded)."""
        return self.view.error


def run_experiment(spec: ExperimentSpec, out_dir: str | Path, *, progress: bool | Any = True,
                   save_adapter: bool = True, tracking: TrackingConfig | None = None
                   ) -> RunOutcome:
    """Run ``spec`` and write ``out_dir/<name>--<hash>.json`` (+ the adapter under
    ``out_dir/adapters/``, with its model card). User errors raise `UserError` before anything
    is written.

    ``progress`` is True/False for Rich bars on stderr, or a display object with Rich's
    ``add_task``/``update`` (a tournament worker reports to its parent that way).
    ``tracking`` names the experiment trackers the run reports to, from this process.
    """
    started = time.perf_counter()
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out_dir = Path(out_dir)
    prep = prepare(spec)
    prepared_in = time.perf_counter() - started
    path = out_dir / result_filename(spec.display_name(), spec.content_hash())
    adapter_dir = out_dir / "adapters" / path.stem if save_adapter else None
    tracker = open_tracking(spec, path.stem, tracking)
    measured = Measurements()
    error = ""
    try:
        with _display(progress) as bar:
            if prep.loaded.kind == "image-gen":
                from peftbench.engine.image_run import train_and_measure_image

                measured = train_and_measure_image(prep, bar, adapter_dir,
                                                   out_dir / "samples" / path.stem, tracker,
                                                   _save)
            else:
                measured = _train_and_measure(prep, bar, adapter_dir,
                                              out_dir / BASE_PROBES_DIR, tracker)
        measured.phase_seconds = {"prepare": round(prepared_in, 3), **measured.phase_seconds}
    except UserError:  # e.g. a config PEFT only rejects when applied: the user's to fix
        finish_tracking(tracker, {}, path, None, None, ok=False)
        raise
    except Exception as exc:  # a run's crash is its result, not the caller's crash
        error = _describe_error(exc)
    answers = _save_answers(path, measured)
    result = build_result(prep, measured, error, created, time.perf_counter() - started,
                          answers_file=answers)
    adapter = Path(measured.adapter_path) if measured.adapter_path else None
    if adapter is not None and not error:
        write_model_card(adapter, result)
    atomic_write_json(path, sanitize(result))
    finish_tracking(tracker, result, path, path.parent / answers if answers else None, adapter,
                    ok=not error)
    return RunOutcome(path, result)


def _save_answers(result_path: Path, m: Measurements) -> str | None:
    """Write the test answers beside the result (before it, so that a result never names a
    missing file); their file's name, or None when test was not scored (an earlier run's
    answers there are removed)."""
    if m.test_answers is None:
        answers_path(result_path).unlink(missing_ok=True)  # an earlier run's, now replaced
        return None
    return write_answers(answers_path(result_path), m.test_answers).name


def _display(progress: bool | Any) -> Any:
    return make_progress(progress) if isinstance(progress, bool) else progress


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train_and_measure(prep: Prepared, bar: Any, adapter_dir: Path | None,
                       probes_dir: Path | None = None,
                       tracker: RunTracking | None = None) -> Measurements:
    spec, params, dev, amp = prep.spec, prep.spec.train, prep.device, prep.amp_dtype
    _seed_everything(params.seed)
    model = prep.loaded.model.to(dev)
    m = Measurements(device=dev.type,
                     autocast_dtype=str(amp).replace("torch.", "") if amp else "float32",
                     scores_note=scores_note(spec, prep.loaded))
    scores = m.scores_note is None
    clock = _PhaseClock(m.phase_seconds)
    if scores:
        with clock("base_probes"):
            measure_base_probes(prep, model, bar, probes_dir, m)
    _seed_everything(params.seed)  # the same initialisation whether the probes ran or not
    model = prep.method.build(model, prep.loaded.kind, spec.targets, spec.adapter_config)
    model.to(dev)
    m.peft_config = _applied_config(model)
    if count_parameters(model)[0] == 0:
        raise UserError(f"{spec.method} has no trainable parameters on this model "
                        "(its config selects nothing here)")
    m.param_bytes = tensor_bytes({id(p): p for p in model.parameters()}.values())
    m.lr = params.lr or prep.method.default_lr
    if tracker is not None:  # its imports before training's memory figures are reset
        tracker.start()
    _train(prep, model, bar, m, validate=scores, on_log=tracker.log if tracker else None)
    if params.eval_test and scores:
        with clock("test"):
            m.test_metrics, m.test_answers = score_metrics(prep, model, "test", bar, "test")
        m.test_score = m.test_metrics[prep.task.metric]
        m.test_items = [int(a.correct) for a in m.test_answers]
    if prep.general_blocks:
        with clock("forgetting"):
            m.forgetting = general_loss(prep, model) - m.base_general_loss
    if params.measure_inference:
        with clock("inference"):
            probe = encode_examples(prep, prep.splits["test"][: params.eval_batch_size])
            m.inference_slowdown = evaluate.inference_slowdown(
                model, collate(probe, prep.loaded.tokenizer.pad_token_id), device=dev,
                amp_dtype=amp)
    m.mergeable = bool(prep.method.can_merge(model))
    if adapter_dir is not None:
        with clock("save"):
            m.file_size, m.adapter_path = _save(prep.method, model, adapter_dir)
        if not scores:  # its size is the figure; trained on random weights, it is worthless
            shutil.rmtree(m.adapter_path, ignore_errors=True)
            m.adapter_path = None
    return m


class _PhaseClock:
    """``with clock("name"):`` records the block's wall seconds as ``seconds["name"]``."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def _train(prep: Prepared, model: nn.Module, bar: Any, m: Measurements,
           validate: bool = True, on_log: Any = None) -> None:
    """Train ``model`` and record what training measured in ``m`` (validating on the way
    unless ``validate`` is False: a cost-only run); ``on_log(step, metrics)`` gets each
    step's and validation's figures (the experiment trackers)."""
    spec, params = prep.spec, prep.spec.train
    features = encode_examples(prep, prep.splits["train"])
    memory = MemoryTracker(prep.device)
    memory.reset()
    with phase(bar, f"train {spec.method}", params.steps_to_run()) as advance:
        def on_step(step: int, loss: float) -> None:
            advance(1, info=f"loss {loss:.3f}")

        outcome = train(model, prep.method, features, params, lr=m.lr,
                        pad_id=prep.loaded.tokenizer.pad_token_id, device=prep.device,
                        amp_dtype=prep.amp_dtype, memory=memory,
                        validate=(lambda: score_split(prep, model, "validation", bar,
                                                      "validation")) if validate else None,
                        metric=prep.task.metric, on_step=on_step, on_log=on_log)
    m.take_training(outcome, memory)


def _save(method: Method, model: nn.Module, directory: Path) -> tuple[int, str]:
    """Save the adapter (atomically, by folder rename) and return its size on disk."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    method.save(model, tmp)
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()
               and f.suffix in {".safetensors", ".bin", ".pt"})
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return size, str(directory.resolve())  # absolute: the result is read from anywhere


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {exc}".splitlines()[0]
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{exc.__class__.__name__}: {exc}{where}"


def build_result(prep: Prepared, m: Measurements, error: str, created: str,
                 total_time: float, answers_file: str | None = None) -> dict[str, Any]:
    """The result file in the PEFT method-comparison layout, plus peftbench's fields
    (``answers_file``: the name of the test answers' file written beside it)."""
    record = ResultRecord(
        spec=prep.spec, status=STATUS_FAILED if error else STATUS_SUCCESS, error=error,
        created_at=created, total_time=total_time, train_config=_train_config(prep, m),
        meta_info=_meta_info(prep), measured=m, test_metric=prep.task.metric,
        items_fingerprint=items_fingerprint(prep.splits["test"]),
        forgetting_note=prep.general_error or None, inputs=prep.inputs,
        answers_file=answers_file)
    return record.to_json()


def _meta_info(prep: Prepared) -> dict[str, Any]:
    return {
        "model_info": prep.loaded.info | {"name": prep.loaded.name},
        "dataset_info": prep.task.describe(),
        "package_info": package_versions(),
        "system_info": system_info(prep.device),
        "pytorch_info": torch.__config__.show(),
    }


def _train_config(prep: Prepared, m: Measurements) -> dict[str, Any]:
    """Training parameters under the PEFT suite's key names (ours kept alongside)."""
    p = prep.spec.train
    return {
        "model_id": prep.spec.model,
        "dtype": m.autocast_dtype or "float32",
        "max_seq_length": p.max_seq_length,
        "batch_size": p.batch_size,
        "batch_size_eval": p.eval_batch_size,
        "max_steps": p.max_steps,
        "eval_steps": p.resolved_eval_every(),
        "seed": p.seed,
        "grad_norm_clip": p.grad_norm_clip,
        "optimizer_type": m.optimizer_type or "AdamW",
        "optimizer_kwargs": {"lr": m.lr or p.lr, "weight_decay": p.weight_decay},
        "lr_scheduler": p.lr_scheduler,
        "use_amp": prep.amp_dtype is not None,
        "generation_kwargs": {"max_new_tokens": p.max_new_tokens or prep.task.max_new_tokens},
        "gradient_accumulation_steps": p.grad_accum,
        "warmup_steps": p.resolved_warmup(),
        "task": prep.spec.task,
        "task_options": prep.spec.task_options,
        **(_image_config(prep) if prep.loaded.kind == "image-gen" else {}),
    }


def _image_config(prep: Prepared) -> dict[str, Any]:
    """An image run's settings under the PEFT image-gen suite's key names."""
    from peftbench.engine.image_run import EVAL_SEED_OFFSET, run_resolution

    pipe, task = prep.loaded.pipeline, prep.task
    source = task.source() if hasattr(task, "source") else {}
    return {"dataset_id": source.get("dataset_id") or source.get("path")
            or source.get("source"), "resolution": run_resolution(pipe, task),
            "num_inference_steps": pipe.num_inference_steps,
            "guidance_scale": pipe.guidance_scale, "weighting_scheme": "none",
            "instance_prompts": [e.prompt for e in prep.splits["train"]],
            "valid_size": len(prep.splits["validation"]),
            "test_size": len(prep.splits["test"]),
            "sample_image_prompts": list(task.sample_prompts),
            "drift_image_prompts": list(task.drift_prompts),
            "similarity_metric": task.metric, "eval_seed_offset": EVAL_SEED_OFFSET,
            **pipe.info}


def _applied_config(model: nn.Module) -> dict[str, Any] | None:
    """The PEFT config as applied to the model (targets resolved), for the result file."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return None
    config = next(iter(configs.values()))
    return config.to_dict() if hasattr(config, "to_dict") else None
