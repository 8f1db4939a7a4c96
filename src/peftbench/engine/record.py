"""One run's record: what it measured, the one writer of its result file, typed reads of it.

    run ─ fills `Measurements` field by field ─ `ResultRecord` ─ to_json ─ result file
    result file (ours or the PEFT suite's) ─ `ResultView` ─ status, error, spec hash, scores…

The file keeps the layout of PEFT's method-comparison suite (``run_info``, ``train_info``,
``meta_info``; see `peftbench.engine.results`). `ResultRecord.to_json` is the only place that
writes it: for a run that trained (successful or not) and, without measurements, for a run that
could not write its own file (killed, timed out, rejected). Every reader goes through
`ResultView` instead of raw keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peftbench.engine.inputs import InputRecord, parse_inputs

if TYPE_CHECKING:
    from peftbench.engine.answers import Answer
    from peftbench.engine.measure import MemoryTracker
    from peftbench.engine.spec import ExperimentSpec
    from peftbench.engine.train import TrainOutcome

STATUS_SUCCESS = "success"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"


@dataclass
class MemoryFigures:
    """The memory fields of a result file (see `peftbench.engine.measure.MemoryTracker`);
    None where the device or the kernel does not provide a figure."""

    cpu_peak_rss: int | None = None
    memory_frozen_weights: int | None = None
    memory_trainable_state: int | None = None
    memory_activations: int | None = None
    train_memory: int | None = None
    memory_method: str | None = None
    train_peak_rss: int | None = None
    train_rss_increase: int | None = None
    cuda_memory_max_allocated: int | None = None
    cuda_memory_max_reserved: int | None = None
    accelerator_memory_max: int | None = None
    accelerator_memory_reserved_avg: int | None = None
    accelerator_memory_reserved_99th: int | None = None
    peak_memory: int | None = None


@dataclass
class Measurements:
    """What a run measured, filled as the run goes; None where it was not measured."""

    device: str | None = None
    autocast_dtype: str | None = None
    scores_note: str | None = None  # why no score was measured (a cost-only run)
    peft_config: dict[str, Any] | None = None  # as applied to the model
    lr: float | None = None
    num_trainable_params: int | None = None
    num_total_params: int | None = None
    param_bytes: int | None = None
    state_bytes: int | None = None
    memory: MemoryFigures = field(default_factory=MemoryFigures)
    base_general_loss: float | None = None
    base_test_score: float | None = None
    base_test_items: list[int] | None = None
    base_probes: str | None = None  # "measured" or "reused"
    phase_seconds: dict[str, float] = field(default_factory=dict)  # outside training
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one entry per validation
    train_loss_curve: list[tuple[int, float]] = field(default_factory=list)
    train_time: float | None = None
    train_tokens: int | None = None
    train_samples: int | None = None
    tokens_per_sec: float | None = None
    valid_score: float | None = None
    last_loss: float | None = None
    optimizer_type: str | None = None
    data_order: str | None = None
    test_score: float | None = None
    #: every metric the task computes on test (the primary one is ``test_score``)
    test_metrics: dict[str, float] = field(default_factory=dict)
    test_items: list[int] | None = None
    test_answers: list[Answer] | None = None  # each test item's prompt, output and verdict
    forgetting: float | None = None
    inference_slowdown: float | None = None
    mergeable: bool | None = None
    file_size: int | None = None
    adapter_path: str | None = None
    #: an image run's drift: (1 − similarity)/2 of its images to the base model's on
    #: unrelated prompts (also its ``forgetting``)
    drift: float | None = None
    #: an image run's sample images: {prompt, file (relative to the result), model}
    sample_images: list[dict[str, str]] = field(default_factory=list)

    def take_training(self, outcome: TrainOutcome, memory: MemoryTracker) -> None:
        """Record what the training loop measured (text and image runs alike). The counts come
        from after training: building the optimizer may freeze parameters (LoRA-FA)."""
        self.num_trainable_params = outcome.trainable_params
        self.num_total_params = outcome.total_params
        self.memory = memory.report(param_bytes=self.param_bytes,
                                    trainable_bytes=outcome.trainable_bytes,
                                    state_bytes=outcome.state_bytes,
                                    activation_bytes=outcome.activation_bytes)
        self.metrics, self.train_loss_curve = outcome.metrics, outcome.loss_curve
        self.train_time, self.train_tokens = outcome.train_time, outcome.train_tokens
        self.train_samples, self.state_bytes = outcome.train_samples, outcome.state_bytes
        self.valid_score, self.last_loss = outcome.final_valid, outcome.last_loss
        self.optimizer_type, self.data_order = outcome.optimizer_name, outcome.data_order
        self.tokens_per_sec = outcome.train_tokens / max(outcome.train_time, 1e-9)
        self.phase_seconds["first_step"] = round(outcome.first_step_time, 3)


@dataclass
class ResultRecord:
    """A run's result file as data. ``measured`` is None for a run that could not write its
    own file: its record holds the spec, the status and the error only."""

    spec: ExperimentSpec
    status: str
    error: str
    created_at: str
    total_time: float
    train_config: dict[str, Any]
    meta_info: dict[str, Any]
    measured: Measurements | None = None
    test_metric: str = "accuracy"
    items_fingerprint: str | None = None
    forgetting_note: str | None = None
    inputs: list[InputRecord] = field(default_factory=list)  # the user's files, by content
    answers_file: str | None = None  # the test answers' file name, beside the result

    def to_json(self) -> dict[str, Any]:
        """The result file's content in the PEFT method-comparison layout, plus ours."""
        return {"run_info": self._run_info(), "train_info": self._train_info(),
                "meta_info": self.meta_info}

    def _run_info(self) -> dict[str, Any]:
        spec, m = self.spec, self.measured
        return {
            "created_at": self.created_at,
            "total_time": self.total_time,
            "experiment_name": f"{spec.method}/{spec.display_name()}",
            "train_config": self.train_config,
            "peft_config": (m.peft_config if m else None) or {"method": spec.method,
                                                               **spec.adapter_config},
            "error_msg": self.error,
            "peftbench": {
                "spec": spec.model_dump(mode="json"),
                "spec_hash": spec.content_hash(),
                "method": spec.method,
                "lr": m.lr if m else spec.train.lr,
                "adapter_path": m.adapter_path if m else None,
                "inputs": [i.to_json() for i in self.inputs],
            },
        }

    def _train_info(self) -> dict[str, Any]:
        m = self.measured
        if m is None:
            return {"status": self.status, "metrics": [], "total_time": self.total_time}
        mem = m.memory
        return {
            "accelerator_memory_reserved_avg": mem.accelerator_memory_reserved_avg,
            "accelerator_memory_max": mem.accelerator_memory_max,
            "accelerator_memory_reserved_99th": mem.accelerator_memory_reserved_99th,
            "train_time": m.train_time,
            "file_size": m.file_size,
            "num_trainable_params": m.num_trainable_params,
            "num_total_params": m.num_total_params,
            "status": self.status,
            "metrics": self._metrics(m),
            "test_score": m.test_score,
            "base_test_score": m.base_test_score,
            "valid_score": m.valid_score,
            "peak_memory": mem.peak_memory,
            "cuda_memory_max_allocated": mem.cuda_memory_max_allocated,
            "cuda_memory_max_reserved": mem.cuda_memory_max_reserved,
            "cpu_peak_rss": mem.cpu_peak_rss,
            "state_bytes": m.state_bytes,
            "tokens_per_sec": m.tokens_per_sec,
            "forgetting": m.forgetting,
            "base_general_loss": m.base_general_loss,
            "mergeable": m.mergeable,
            "inference_slowdown": m.inference_slowdown,
            "train_tokens": m.train_tokens,
            "device": m.device,
            "autocast_dtype": m.autocast_dtype,
            "data_order": m.data_order,
            "train_peak_rss": mem.train_peak_rss,
            "train_rss_increase": mem.train_rss_increase,
            "train_memory": mem.train_memory,
            "memory_frozen_weights": mem.memory_frozen_weights,
            "memory_trainable_state": mem.memory_trainable_state,
            "memory_activations": mem.memory_activations,
            "memory_method": mem.memory_method,
            "test_items": m.test_items,
            "base_test_items": m.base_test_items,
            "base_probes": m.base_probes,
            "phase_seconds": m.phase_seconds,
            "train_loss_curve": [list(point) for point in m.train_loss_curve],
            "test_items_fingerprint": self.items_fingerprint,
            "test_metric": self.test_metric,
            "total_time": self.total_time,
            "param_bytes": m.param_bytes,
            "forgetting_note": self.forgetting_note,
            "test_answers": self.answers_file,
            "scores_note": m.scores_note,
            **({"drift": m.drift, "sample_images": m.sample_images}
               if m.drift is not None or m.sample_images else {}),
        }

    def _metrics(self, m: Measurements) -> list[dict[str, Any]]:
        """The validation entries, then (a tested, successful run) the final test entry."""
        metrics = list(m.metrics)
        if self.status == STATUS_SUCCESS and self.spec.train.eval_test and not m.scores_note:
            others = {f"test {name}": value for name, value in m.test_metrics.items()
                      if name != self.test_metric}
            metrics.append({
                "step": self.spec.train.steps_to_run(), f"test {self.test_metric}": m.test_score,
                **others, "train loss": m.last_loss, "train samples": m.train_samples,
                "train total tokens": m.train_tokens, "forgetting": m.forgetting,
                **({"drift": m.drift} if m.drift is not None else {})})
        return metrics


def train_config_of(spec: ExperimentSpec) -> dict[str, Any]:
    """The ``train_config`` a record without measurements carries: what the spec says."""
    return {"model_id": spec.model, "seed": spec.train.seed,
            "optimizer_kwargs": {"lr": spec.train.lr},
            "max_steps": spec.train.max_steps, "task": spec.task}


def is_result(data: Any) -> bool:
    """Whether parsed JSON is a result file (it has ``run_info`` and ``train_info``)."""
    return isinstance(data, dict) and "run_info" in data and "train_info" in data


class ResultView:
    """Typed reads of a result file's content (ours or the PEFT suite's): every reader asks
    here instead of reaching for raw keys. Missing parts read as empty or None."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def run_info(self) -> dict[str, Any]:
        """``run_info`` ({} when absent)."""
        return self.data.get("run_info", {})

    @property
    def train_info(self) -> dict[str, Any]:
        """``train_info`` ({} when absent)."""
        return self.data.get("train_info", {})

    @property
    def meta_info(self) -> dict[str, Any]:
        """``meta_info`` ({} when absent)."""
        return self.data.get("meta_info", {})

    @property
    def ours(self) -> dict[str, Any]:
        """``run_info.peftbench``: what peftbench adds ({} in a PEFT-suite file)."""
        return self.run_info.get("peftbench") or {}

    @property
    def status(self) -> str | None:
        """``success``, ``failed``, ``timeout``…; None when the file records none."""
        status = self.train_info.get("status")
        return None if status is None else str(status)

    @property
    def error(self) -> str:
        """The run's error message ("" for none)."""
        return str(self.run_info.get("error_msg") or "")

    @property
    def spec_data(self) -> dict[str, Any] | None:
        """The run's `ExperimentSpec`, as data (None in a PEFT-suite file)."""
        return self.ours.get("spec") or None

    @property
    def spec_hash(self) -> str | None:
        """The content hash of the spec the file says it ran."""
        return self.ours.get("spec_hash")

    @property
    def adapter_path(self) -> str | None:
        """Where the run saved its adapter (None when it saved none)."""
        return self.ours.get("adapter_path") or None

    @property
    def inputs(self) -> list[InputRecord] | None:
        """The user's files the run read, with absolute paths and content hashes; None in a
        file written before inputs were recorded (or a PEFT-suite file)."""
        return parse_inputs(self.ours.get("inputs"))

    @property
    def answers_file(self) -> str | None:
        """The name of the file beside the result holding each test item's answer (None when
        the run saved none)."""
        name = self.train_info.get("test_answers")
        return str(name) if name else None

    @property
    def scores_note(self) -> str | None:
        """Why the run measured no score (a cost-only run, random weights); None when it
        measured them (or the file predates the field)."""
        note = self.train_info.get("scores_note")
        return str(note) if note else None

    @property
    def dataset_info(self) -> dict[str, Any]:
        """The task's description of its data (``meta_info.dataset_info``; {} when absent)."""
        return dict(self.meta_info.get("dataset_info") or {})

    def set_adapter_path(self, path: str | None) -> None:
        """Record where the adapter's files are now (after a copy from another machine)."""
        self.run_info["peftbench"]["adapter_path"] = path

    def set_executed_on(self, node: str | None) -> None:
        """Record the machine that ran the run."""
        self.run_info["peftbench"]["executed_on"] = node

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One entry per validation (and, for a tested run, the final test entry last)."""
        return list(self.train_info.get("metrics") or [])

    @property
    def valid_score(self) -> float | None:
        """The primary metric on validation at the end of training."""
        return _number(self.train_info.get("valid_score"))

    @property
    def test_score(self) -> float | None:
        """The primary metric on test (None for a run that never scored test)."""
        return _number(self.train_info.get("test_score"))

    @property
    def test_metrics(self) -> dict[str, float]:
        """Every metric the task computed on test, by name, read from the final test entry
        (``metrics[-1]``'s ``test NAME`` figures; {} for a run that never scored test)."""
        entries = self.metrics
        final = entries[-1] if entries else {}
        found = {key.removeprefix("test "): _number(value) for key, value in final.items()
                 if isinstance(key, str) and key.startswith("test ")}
        return {name: value for name, value in found.items() if value is not None}

    @property
    def base_test_score(self) -> float | None:
        """The base model's test score, when the run measured it."""
        return _number(self.train_info.get("base_test_score"))

    @property
    def train_time(self) -> float | None:
        """Seconds of training steps."""
        return _number(self.train_info.get("train_time"))

    @property
    def eval_seconds(self) -> float:
        """Seconds spent validating during training."""
        return sum(m.get("eval time", 0.0) for m in self.metrics)

    @property
    def final_train_loss(self) -> float | None:
        """The training loss at the last step: the last point of ``train_loss_curve``, else
        (a PEFT-suite file) the ``train loss`` of the last metrics entry; None when not
        finite or not recorded."""
        curve = self.train_info.get("train_loss_curve") or []
        loss = curve[-1][1] if curve else (self.metrics[-1].get("train loss")
                                           if self.metrics else None)
        value = _number(loss)
        return value if value is not None and math.isfinite(value) else None

    @property
    def dataset_sizes(self) -> dict[str, int]:
        """Examples per split, as the task described its data ({} when not recorded)."""
        return dict(self.dataset_info.get("sizes") or {})


def _number(value: Any) -> float | None:
    """``value`` when it is a number (kept as written), else None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
