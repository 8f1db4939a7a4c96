"""The result file of one run: schema, atomic IO, and a normalized view for analysis.

A result keeps the layout of the PEFT library's method-comparison suite so that its published
results and ours load into one analysis:

- ``run_info``: when, how long, experiment name, ``train_config``, ``peft_config``, ``error_msg``
  (ours adds ``run_info.peftbench``: the full spec, its content hash, the method and rate, the
  adapter's absolute path, and ``inputs``: the user's files the run read, by absolute path and
  content hash, see `peftbench.engine.inputs`);
- ``train_info``: memory, ``train_time``, ``file_size``, parameter counts, ``status`` and
  ``metrics`` (one entry per validation, the last one holding the final test metrics);
  ours adds the measurements the suite lacks (CPU memory, tokens/s, mergeability, inference
  slowdown, ...), all listed in `EXTRA_TRAIN_INFO`;
- ``meta_info``: model, data set, package and system information.

Files are written atomically (temp file in the same folder, fsync, rename), so a killed run never
leaves a half-written result.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.engine.record import STATUS_FAILED as STATUS_FAILED
from peftbench.engine.record import STATUS_SUCCESS as STATUS_SUCCESS
from peftbench.engine.record import STATUS_TIMEOUT as STATUS_TIMEOUT
from peftbench.engine.record import ResultView, is_result
from peftbench.errors import UserError

#: Fields peftbench adds to ``train_info`` beyond the PEFT suite's own, with their meaning.
EXTRA_TRAIN_INFO = {
    "test_score": "primary test metric of the final model (fraction, higher is better)",
    "test_metric": "name of the primary metric, e.g. 'accuracy'",
    "base_test_score": "same metric for the base model before fine-tuning (when measured)",
    "valid_score": "primary metric on validation at the end of training",
    "peak_memory": "bytes: CUDA max allocated; on CPU `train_memory` (older files: peak RSS)",
    "train_memory": "bytes, CPU: frozen weights + trainable state + activations of a step",
    "memory_frozen_weights": "bytes of the parameters that do not train",
    "memory_trainable_state": "bytes of trainable parameters + gradients + optimizer state",
    "memory_activations": "bytes autograd saved for backward at a training step's peak",
    "train_peak_rss": "bytes: the highest RSS while training steps ran (peak counter reset "
                      "at training start, validation left out)",
    "train_rss_increase": "bytes: train_peak_rss minus the RSS just before training",
    "memory_method": "how the training phase's memory was measured",
    "test_items": "per test item: 1 right, 0 wrong, in the test split's order",
    "base_test_items": "the same for the base model (when measured)",
    "test_answers": "name of the file beside the result (NAME.answers.jsonl) holding each test "
                    "item's prompt, reference, model output, extracted answer and verdict",
    "base_probes": "'measured' by this run, or 'reused' from an earlier run in the same folder "
                   "with identical inputs (model, task, data, evaluation settings, seed)",
    "phase_seconds": "seconds of what a run does besides training and validating: "
                     "preparing (data, model), base_probes, test, forgetting, inference, save; and "
                     "first_step, the first training step (part of train_time)",
    "test_items_fingerprint": "hash of the test items; runs are paired item by item only "
                              "when it is equal",
    "train_loss_curve": "[step, training loss] pairs, every step for short runs",
    "cuda_memory_max_allocated": "bytes (CUDA only)",
    "cuda_memory_max_reserved": "bytes (CUDA only)",
    "cpu_peak_rss": "bytes: peak resident set size of the run's process",
    "state_bytes": "bytes of trainable parameters + their gradients + optimizer state",
    "param_bytes": "bytes of all model parameters",
    "total_time": "seconds, whole run including loading and evaluation",
    "tokens_per_sec": "training tokens (non-padding) per second of train time",
    "forgetting": "increase in cross-entropy on general text vs the base model (nats/token)",
    "base_general_loss": "cross-entropy of the base model on the general-text sample",
    "mergeable": "whether the adapter can be merged into the base weights",
    "inference_slowdown": "forward latency of the unmerged adapter / base model",
    "train_tokens": "non-padding tokens seen in training",
    "device": "cpu or cuda",
    "autocast_dtype": "dtype used under autocast",
    "scores_note": "why no score was measured (a cost-only run: memory-only tournament, or a "
                   "model with random weights built from its config); scores are then null",
    "data_order": "fingerprint of the training batches' example indices, in order (equal "
                  "across techniques of a tournament: same data, same order)",
}


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON to ``path`` so that readers see either the old file or the whole new one."""
    text = json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temp file in the same folder, fsync and a
    rename, so a killed writer never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | tuple):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def sanitize(obj: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) with None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [sanitize(v) for v in obj]
    return obj


def result_filename(name: str, spec_hash: str) -> str:
    """File name of a run's result: readable name plus the spec hash, which makes it unique."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    return f"{safe}--{spec_hash}.json"


@dataclass
class RunSummary:
    """A run's result, normalized across our files and the PEFT suite's published ones."""

    path: str
    source: str  # "peftbench" or "peft-suite"
    experiment_name: str
    method: str
    model: str
    task: str
    status: str
    error: str = ""
    test_score: float | None = None
    metric_name: str = "accuracy"
    valid_curve: list[tuple[int, float]] = field(default_factory=list)
    train_loss_curve: list[tuple[int, float]] = field(default_factory=list)
    peak_memory: float | None = None
    train_time: float | None = None
    total_time: float | None = None
    file_size: float | None = None
    trainable_params: float | None = None
    total_params: float | None = None
    forgetting: float | None = None
    tokens_per_sec: float | None = None
    mergeable: bool | None = None
    inference_slowdown: float | None = None
    lr: float | None = None
    seed: int | None = None
    spec_hash: str | None = None
    peft_config: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)  # ours: the ExperimentSpec, as data
    test_items: list[float] | None = None  # per-item outcomes, test split order
    items_fingerprint: str | None = None
    train_memory: float | None = None
    cpu_peak_rss: float | None = None
    train_rss_increase: float | None = None
    memory_breakdown: dict[str, float] = field(default_factory=dict)
    #: the file beside the result holding each test item's answer (None when none was saved)
    answers_path: str | None = None
    #: why the run measured no score (a cost-only run); None when it did
    scores_note: str | None = None
    #: every metric the task computed on test, by name (the primary one is ``test_score``)
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the run finished successfully."""
        return self.status == STATUS_SUCCESS


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one result JSON; a file that is not a result is a `UserError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable result file ({exc.__class__.__name__})") from None
    if not is_result(data):
        raise UserError(f"{path}: not a result file (no run_info/train_info)")
    return data


def summarize(data: dict[str, Any], path: str = "") -> RunSummary:
    """Normalize a result dict (ours or the PEFT suite's) into a `RunSummary`."""
    view = ResultView(data)
    run_info, train_info = view.run_info, view.train_info
    ours = view.ours
    metrics = train_info.get("metrics") or []
    name = run_info.get("experiment_name", Path(path).stem)
    train_config = run_info.get("train_config") or {}
    valid_curve, loss_curve = _curves(metrics)
    if train_info.get("train_loss_curve"):
        loss_curve = [(int(step), float(loss)) for step, loss in train_info["train_loss_curve"]]
    final = metrics[-1] if metrics else {}
    if ours:
        spec = ours.get("spec", {})
        method, model, task = ours.get("method"), spec.get("model"), spec.get("task")
        test = train_info.get("test_score")
        metric_name = train_info.get("test_metric", "accuracy")
        peak = train_info.get("peak_memory")
        lr = (spec.get("train") or {}).get("lr") or ours.get("lr")
        seed = (spec.get("train") or {}).get("seed")
        source = "peftbench"
    else:
        method = name.split("/")[0]
        model = train_config.get("model_id", "")
        task = Path(path).parent.parent.name if path else ""
        test = _final_test_value(final)
        metric_name = _final_test_name(final) or "accuracy"
        peak = train_info.get("accelerator_memory_max")
        lr = (train_config.get("optimizer_kwargs") or {}).get("lr")
        seed = train_config.get("seed")
        source = "peft-suite"
    return RunSummary(
        path=str(path),
        source=source,
        experiment_name=name,
        method=str(method),
        model=str(model),
        task=str(task),
        status=view.status or STATUS_FAILED,
        error=view.error,
        test_score=test,
        metric_name=metric_name,
        valid_curve=valid_curve,
        train_loss_curve=loss_curve,
        peak_memory=peak,
        train_time=train_info.get("train_time"),
        total_time=train_info.get("total_time", run_info.get("total_time")),
        file_size=train_info.get("file_size"),
        trainable_params=train_info.get("num_trainable_params"),
        total_params=train_info.get("num_total_params"),
        forgetting=train_info.get("forgetting", final.get("forgetting", _finite(
            final.get("drift")))),
        tokens_per_sec=train_info.get("tokens_per_sec"),
        mergeable=train_info.get("mergeable"),
        inference_slowdown=train_info.get("inference_slowdown"),
        lr=lr,
        seed=seed,
        spec_hash=view.spec_hash,
        peft_config=run_info.get("peft_config") or {},
        train_config=train_config,
        spec=dict(view.spec_data or {}),
        test_items=train_info.get("test_items"),
        items_fingerprint=train_info.get("test_items_fingerprint"),
        train_memory=train_info.get("train_memory"),
        cpu_peak_rss=train_info.get("cpu_peak_rss"),
        train_rss_increase=train_info.get("train_rss_increase"),
        memory_breakdown={k: train_info[k] for k in ("memory_frozen_weights",
                                                     "memory_trainable_state",
                                                     "memory_activations")
                          if isinstance(train_info.get(k), int | float)},
        answers_path=str(Path(path).with_name(view.answers_file))
        if path and view.answers_file else None,
        scores_note=view.scores_note,
        test_metrics=view.test_metrics,
    )


def _final_test_value(final: dict[str, Any]) -> float | None:
    for key, value in final.items():
        if key.startswith("test ") and isinstance(value, int | float):
            return float(value)
    return None


def _final_test_name(final: dict[str, Any]) -> str | None:
    """The metric of the final entry's ``test NAME`` figure (the suite's image-gen files
    say ``test dino_similarity``)."""
    for key, value in final.items():
        if key.startswith("test ") and isinstance(value, int | float):
            return key.removeprefix("test ")
    return None


def _finite(value: Any) -> float | None:
    """``value`` when it is a finite number (the suite writes NaN drift for full
    fine-tuning), else None."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _curves(metrics: list[dict[str, Any]]) -> tuple[list, list]:
    valid, loss = [], []
    for m in metrics:
        step = m.get("step")
        for key, value in m.items():
            if key.startswith("valid ") and isinstance(value, int | float):
                valid.append((step, float(value)))
        if isinstance(m.get("train loss"), int | float):
            loss.append((step, float(m["train loss"])))
    return valid, loss


def load_summaries(paths: list[str | os.PathLike[str]]) -> list[RunSummary]:
    """Load every result JSON under the given files or folders (recursively), sorted by path.

    Files that are not results (e.g. configs) are skipped only when they lack ``run_info``;
    failed runs are kept, with their status and error.
    """
    found: list[RunSummary] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise UserError(f"{root}: no such file or folder")
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for file in files:
            try:
                data = json.loads(file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if is_result(data):
                found.append(summarize(data, str(file)))
    return found
