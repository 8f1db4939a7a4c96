"""Run one experiment end to end and write its result file.

    spec ─ load task data (validated first) ─ load model ─ base-model probes ─ build adapter
         ─ train (periodic validation) ─ test once ─ forgetting, inference overhead ─ save
         adapter ─ result JSON (atomic)

Errors the user caused (bad data, unknown names, invalid configs) propagate as `UserError`
before anything is written. Anything that goes wrong once training has started (an exception,
a NaN loss, out of memory) is recorded as a ``failed`` result with the error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from peftbench.engine import evaluate
from peftbench.engine.batching import encode_causal, encode_classification
from peftbench.engine.measure import (
    MemoryTracker,
    autocast_dtype,
    count_parameters,
    device_for_run,
    package_versions,
    system_info,
    tensor_bytes,
)
from peftbench.engine.models import LoadedModel, is_encoder, load_model
from peftbench.engine.progress import make_progress, phase
from peftbench.engine.results import (
    STATUS_FAILED,
    STATUS_SUCCESS,
    atomic_write_json,
    result_filename,
    sanitize,
)
from peftbench.engine.spec import ExperimentSpec
from peftbench.engine.train import train
from peftbench.errors import UserError
from peftbench.methods import get_method
from peftbench.methods.base import Method
from peftbench.tasks import Example, Task, get_task


@dataclass
class Prepared:
    """Everything loaded before training starts."""

    spec: ExperimentSpec
    task: Task
    splits: dict[str, list[Example]]
    method: Method
    loaded: LoadedModel
    device: torch.device
    amp_dtype: torch.dtype | None
    general_blocks: list[str] = field(default_factory=list)
    general_error: str = ""


@dataclass
class RunOutcome:
    """The result file written by a run and its content."""

    path: Path
    result: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.result["train_info"]["status"] == STATUS_SUCCESS


def run_experiment(spec: ExperimentSpec, out_dir: str | Path, *, progress: bool | Any = True,
                   save_adapter: bool = True) -> RunOutcome:
    """Run ``spec`` and write ``out_dir/<name>--<hash>.json`` (+ the adapter under
    ``out_dir/adapters/``). User errors raise `UserError` before anything is written.

    ``progress`` is True/False for Rich bars on stderr, or a display object with Rich's
    ``add_task``/``update`` (a tournament worker reports to its parent that way).
    """
    started = time.perf_counter()
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out_dir = Path(out_dir)
    prep = prepare(spec)
    path = out_dir / result_filename(spec.display_name(), spec.content_hash())
    adapter_dir = out_dir / "adapters" / path.stem if save_adapter else None
    measured: dict[str, Any] = {}
    error = ""
    try:
        with _display(progress) as bar:
            measured = _train_and_measure(prep, bar, adapter_dir, out_dir / BASE_PROBES_DIR)
    except UserError:  # e.g. a config PEFT only rejects when applied: the user's to fix
        raise
    except Exception as exc:  # a run's crash is its result, not the caller's crash
        error = _describe_error(exc)
    result = build_result(prep, measured, error, created, time.perf_counter() - started)
    atomic_write_json(path, sanitize(result))
    return RunOutcome(path, result)


def _display(progress: bool | Any) -> Any:
    return make_progress(progress) if isinstance(progress, bool) else progress


def prepare(spec: ExperimentSpec) -> Prepared:
    """Load and validate everything a run needs; raises `UserError` for the user's mistakes."""
    task = get_task(spec.task, spec.task_options)
    splits = {name: task.load_split(name) for name in ("train", "validation", "test")}
    for name, examples in splits.items():
        if not examples:
            raise UserError(f"task '{spec.task}': the {name} split is empty")
    method = get_method(spec.method)
    kind = model_kind(task, spec.model)
    loaded = load_model(spec.model, kind, num_labels=max(len(task.labels), 2),
                        seed=spec.train.seed)
    device = device_for_run()
    blocks, general_error = _general_text(spec, kind)
    return Prepared(spec, task, splits, method, loaded, device,
                    autocast_dtype(spec.train.dtype, device), blocks, general_error)


def model_kind(task: Task, model: str) -> str:
    """How ``model`` is trained on ``task``: an encoder on a classification task gets a
    classification head (seq-cls); everything else is a causal LM answering in text."""
    return "seq-cls" if task.kind == "classification" and is_encoder(model) else "causal-lm"


def _general_text(spec: ExperimentSpec, kind: str) -> tuple[list[str], str]:
    if kind != "causal-lm" or spec.train.forgetting_samples == 0:
        return [], "not applicable" if kind != "causal-lm" else "disabled"
    from peftbench.tasks.general_text import load_general_text

    try:
        return load_general_text(spec.general_text, spec.train.forgetting_samples), ""
    except UserError:
        if spec.general_text:  # the user named a path: a bad one is their mistake
            raise
        return [], "general text unavailable (no network?): forgetting not measured"
    except Exception as exc:  # hub unreachable: measure everything else
        return [], f"general text unavailable: {exc.__class__.__name__}"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: where a result folder keeps the base model's figures, shared by the runs written there
BASE_PROBES_DIR = ".base-probes"


def base_probes_key(prep: Prepared) -> str:
    """The content hash of everything the base model's figures depend on (model, task and
    its data options, general text, evaluation settings, seed, device, threads, versions):
    runs with equal keys can share them, whatever technique they train."""
    p = prep.spec.train
    blob = json.dumps({
        "model": prep.spec.model, "kind": prep.loaded.kind, "task": prep.spec.task,
        "task_options": prep.spec.task_options, "general_text": prep.spec.general_text,
        "forgetting_samples": p.forgetting_samples, "max_seq_length": p.max_seq_length,
        "eval_batch_size": p.eval_batch_size, "max_new_tokens": p.max_new_tokens,
        "dtype": p.dtype, "seed": p.seed, "device": prep.device.type,
        "threads": torch.get_num_threads(), "eval_base": p.eval_base,
        "test_items": items_fingerprint(prep.splits["test"]),
        "versions": package_versions(),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _base_probes(prep: Prepared, model: nn.Module, bar: Any,
                 cache_dir: Path | None) -> dict[str, Any]:
    """The base model's general-text loss and (with ``eval_base``) its test score and items:
    read from ``cache_dir`` when an earlier run there measured them with the same inputs,
    else measured now and stored for the next run."""
    wanted = bool(prep.general_blocks) or prep.spec.train.eval_base
    if not wanted:
        return {}
    path = cache_dir / f"{base_probes_key(prep)}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            return {**json.loads(path.read_text()), "base_probes": "reused"}
        except (OSError, ValueError):
            pass
    found: dict[str, Any] = {}
    if prep.general_blocks:
        found["base_general_loss"] = _general_loss(prep, model)
    if prep.spec.train.eval_base:
        found["base_test_score"], found["base_test_items"] = score_items(
            prep, model, "test", bar, "base model test")
    if path is not None:
        atomic_write_json(path, found)
    return {**found, "base_probes": "measured"}


def _train_and_measure(prep: Prepared, bar: Any, adapter_dir: Path | None,
                       probes_dir: Path | None = None) -> dict[str, Any]:
    spec, params, dev, amp = prep.spec, prep.spec.train, prep.device, prep.amp_dtype
    _seed_everything(params.seed)
    model = prep.loaded.model.to(dev)
    tokenizer = prep.loaded.tokenizer
    m: dict[str, Any] = {"device": dev.type, "autocast_dtype": str(amp).replace("torch.", "")
                         if amp else "float32"}
    _, m["base_total_params"] = count_parameters(model)
    m.update(_base_probes(prep, model, bar, probes_dir))
    _seed_everything(params.seed)  # the same initialisation whether the probes ran or not
    model = prep.method.build(model, prep.loaded.kind, spec.targets, spec.adapter_config)
    model.to(dev)
    m["peft_config"] = _applied_config(model)
    m["num_trainable_params"], m["num_total_params"] = count_parameters(model)
    if m["num_trainable_params"] == 0:
        raise UserError(f"{spec.method} has no trainable parameters on this model "
                        "(its config selects nothing here)")
    m["param_bytes"] = tensor_bytes({id(p): p for p in model.parameters()}.values())
    features = encode_examples(prep, prep.splits["train"])
    memory = MemoryTracker(dev)
    memory.reset()
    lr = params.lr or prep.method.default_lr
    m["lr"] = lr
    with phase(bar, f"train {spec.method}", params.steps_to_run()) as advance:
        def on_step(step: int, loss: float) -> None:
            advance(1, info=f"loss {loss:.3f}")

        outcome = train(model, prep.method, features, params, lr=lr,
                        pad_id=tokenizer.pad_token_id, device=dev, amp_dtype=amp, memory=memory,
                        validate=lambda: score_split(prep, model, "validation", bar, "validation"),
                        metric=prep.task.metric, on_step=on_step)
    # counted after training: building the optimizer may freeze parameters (LoRA-FA)
    m["num_trainable_params"], m["num_total_params"] = (outcome.trainable_params,
                                                        outcome.total_params)
    m.update(memory.report(param_bytes=m["param_bytes"], trainable_bytes=outcome.trainable_bytes,
                           state_bytes=outcome.state_bytes,
                           activation_bytes=outcome.activation_bytes))
    m.update(metrics=outcome.metrics, train_loss_curve=outcome.loss_curve,
             train_time=outcome.train_time,
             train_tokens=outcome.train_tokens, train_samples=outcome.train_samples,
             state_bytes=outcome.state_bytes, valid_score=outcome.final_valid,
             last_loss=outcome.last_loss, optimizer_type=outcome.optimizer_name,
             data_order=outcome.data_order,
             tokens_per_sec=outcome.train_tokens / max(outcome.train_time, 1e-9))
    if params.eval_test:
        m["test_score"], m["test_items"] = score_items(prep, model, "test", bar, "test")
    if prep.general_blocks:
        m["forgetting"] = _general_loss(prep, model) - m["base_general_loss"]
    if params.measure_inference:
        probe = encode_examples(prep, prep.splits["test"][: params.eval_batch_size])
        from peftbench.engine.batching import collate

        m["inference_slowdown"] = evaluate.inference_slowdown(
            model, collate(probe, tokenizer.pad_token_id), device=dev, amp_dtype=amp)
    m["mergeable"] = bool(prep.method.can_merge(model))
    if adapter_dir is not None:
        m["file_size"], m["adapter_path"] = _save(prep.method, model, adapter_dir)
    return m


def encode_examples(prep: Prepared, examples: list[Example]) -> list:
    max_len = prep.spec.train.max_seq_length
    if prep.loaded.kind == "seq-cls":
        return encode_classification(examples, prep.loaded.tokenizer, max_len)
    return encode_causal(examples, prep.loaded.tokenizer, max_len)


def score_split(prep: Prepared, model: nn.Module, split: str, bar: Any, label: str) -> float:
    """The task's primary metric of ``model`` on ``split`` (progress shown as ``label``)."""
    return score_items(prep, model, split, bar, label)[0]


def score_items(prep: Prepared, model: nn.Module, split: str, bar: Any,
                label: str) -> tuple[float, list[int]]:
    """The primary metric on ``split`` and each item's outcome (1 right, 0 wrong), in the
    split's order, so that techniques can be compared item by item."""
    examples = prep.splits[split]
    params = prep.spec.train
    with phase(bar, label, len(examples)) as advance:
        if prep.loaded.kind == "seq-cls":
            features = encode_examples(prep, examples)
            score, predictions = evaluate.score_classifier(
                model, features, pad_id=prep.loaded.tokenizer.pad_token_id,
                batch_size=params.eval_batch_size, device=prep.device, amp_dtype=prep.amp_dtype,
                advance=advance)
            items = [int(p == f.labels) for p, f in zip(predictions, features, strict=True)]
            return score, items
        score, outputs = evaluate.score_generation(
            prep.task, model, prep.loaded.tokenizer, examples,
            max_new_tokens=params.max_new_tokens or prep.task.max_new_tokens,
            batch_size=params.eval_batch_size, device=prep.device, amp_dtype=prep.amp_dtype,
            max_prompt_tokens=params.max_seq_length, advance=advance)
        items = [int(bool(prep.task.is_correct(o, e))) for o, e in zip(outputs, examples,
                                                                       strict=True)]
        return score, items


def items_fingerprint(examples: list[Example]) -> str:
    """A hash of a split's items, in order: per-item outcomes of two runs are paired only
    when their fingerprints agree (same items, same order)."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.prompt, e.target, e.answer, e.text, e.label]).encode())
    return digest.hexdigest()[:16]


def _general_loss(prep: Prepared, model: nn.Module) -> float:
    return evaluate.general_text_loss(
        model, prep.loaded.tokenizer, prep.general_blocks,
        max_len=prep.spec.train.max_seq_length, batch_size=prep.spec.train.eval_batch_size,
        device=prep.device, amp_dtype=prep.amp_dtype)


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
    return size, str(directory)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {exc}".splitlines()[0]
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{exc.__class__.__name__}: {exc}{where}"


def build_result(prep: Prepared, m: dict[str, Any], error: str, created: str,
                 total_time: float) -> dict[str, Any]:
    """The result file in the PEFT method-comparison layout, plus peftbench's fields."""
    spec = prep.spec
    status = STATUS_FAILED if error else STATUS_SUCCESS
    metrics = list(m.get("metrics", []))
    if not error and spec.train.eval_test:
        metrics.append(_final_metrics(prep, m))
    extra = {k: m.get(k) for k in (
        "test_score", "base_test_score", "valid_score", "peak_memory",
        "cuda_memory_max_allocated", "cuda_memory_max_reserved", "cpu_peak_rss",
        "state_bytes", "tokens_per_sec", "forgetting", "base_general_loss", "mergeable",
        "inference_slowdown", "train_tokens", "device", "autocast_dtype", "data_order",
        "train_peak_rss", "train_rss_increase", "train_memory", "memory_frozen_weights",
        "memory_trainable_state", "memory_activations", "memory_method", "test_items",
        "base_test_items", "base_probes")}
    extra["train_loss_curve"] = [list(point) for point in m.get("train_loss_curve", [])]
    extra["test_items_fingerprint"] = items_fingerprint(prep.splits["test"])
    extra.update(test_metric=prep.task.metric, total_time=total_time,
                 param_bytes=m.get("param_bytes"), forgetting_note=prep.general_error or None)
    return {
        "run_info": {
            "created_at": created,
            "total_time": total_time,
            "experiment_name": f"{spec.method}/{spec.display_name()}",
            "train_config": _train_config(prep, m),
            "peft_config": m.get("peft_config") or {"method": spec.method,
                                                     **spec.adapter_config},
            "error_msg": error,
            "peftbench": {
                "spec": spec.model_dump(mode="json"),
                "spec_hash": spec.content_hash(),
                "method": spec.method,
                "lr": m.get("lr"),
                "adapter_path": m.get("adapter_path"),
            },
        },
        "train_info": {
            "accelerator_memory_reserved_avg": m.get("accelerator_memory_reserved_avg"),
            "accelerator_memory_max": m.get("accelerator_memory_max"),
            "accelerator_memory_reserved_99th": m.get("accelerator_memory_reserved_99th"),
            "train_time": m.get("train_time"),
            "file_size": m.get("file_size"),
            "num_trainable_params": m.get("num_trainable_params"),
            "num_total_params": m.get("num_total_params"),
            "status": status,
            "metrics": metrics,
            **extra,
        },
        "meta_info": {
            "model_info": prep.loaded.info | {"name": prep.loaded.name},
            "dataset_info": prep.task.describe(),
            "package_info": package_versions(),
            "system_info": system_info(prep.device),
            "pytorch_info": torch.__config__.show(),
        },
    }


def _final_metrics(prep: Prepared, m: dict[str, Any]) -> dict[str, Any]:
    metric = prep.task.metric
    return {"step": prep.spec.train.steps_to_run(), f"test {metric}": m.get("test_score"),
            "train loss": m.get("last_loss"), "train samples": m.get("train_samples"),
            "train total tokens": m.get("train_tokens"), "forgetting": m.get("forgetting")}


def _train_config(prep: Prepared, m: dict[str, Any]) -> dict[str, Any]:
    """Training parameters under the PEFT suite's key names (ours kept alongside)."""
    p = prep.spec.train
    return {
        "model_id": prep.spec.model,
        "dtype": m.get("autocast_dtype", "float32"),
        "max_seq_length": p.max_seq_length,
        "batch_size": p.batch_size,
        "batch_size_eval": p.eval_batch_size,
        "max_steps": p.max_steps,
        "eval_steps": p.resolved_eval_every(),
        "seed": p.seed,
        "grad_norm_clip": p.grad_norm_clip,
        "optimizer_type": m.get("optimizer_type", "AdamW"),
        "optimizer_kwargs": {"lr": m.get("lr") or p.lr, "weight_decay": p.weight_decay},
        "lr_scheduler": p.lr_scheduler,
        "use_amp": prep.amp_dtype is not None,
        "generation_kwargs": {"max_new_tokens": p.max_new_tokens or prep.task.max_new_tokens},
        "gradient_accumulation_steps": p.grad_accum,
        "warmup_steps": p.resolved_warmup(),
        "task": prep.spec.task,
        "task_options": prep.spec.task_options,
    }


def _applied_config(model: nn.Module) -> dict[str, Any] | None:
    """The PEFT config as applied to the model (targets resolved), for the result file."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return None
    config = next(iter(configs.values()))
    return config.to_dict() if hasattr(config, "to_dict") else None
