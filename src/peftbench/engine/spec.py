"""The identity of one experiment: base model, task, technique and training parameters.

An `ExperimentSpec` is everything needed to reproduce a run. Its content hash (over the
canonical JSON of the whole spec) names the run: two specs with the same hash are the same
experiment, which is what lets a tournament skip runs that already finished.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from peftbench.errors import UserError


class TrainParams(BaseModel):
    """Training and evaluation parameters shared by every technique in a comparison."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(100, ge=1, description="optimizer steps")
    batch_size: int = Field(8, ge=1, description="examples per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float | None = Field(None, gt=0, description="learning rate; None = technique default")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int | None = Field(None, ge=0, description="None = 5% of max_steps")
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    grad_norm_clip: float | None = Field(1.0, gt=0)
    max_seq_length: int = Field(256, ge=8)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="autocast dtype; auto = bf16 where the hardware runs it fast"
    )
    eval_every: int = Field(0, ge=0, description="validate every N steps; 0 = max_steps // 2")
    eval_batch_size: int = Field(32, ge=1)
    max_new_tokens: int | None = Field(None, ge=1, description="None = the task's default")
    forgetting_samples: int = Field(32, ge=0, description="WikiText blocks; 0 disables")
    measure_inference: bool = True
    eval_base: bool = Field(False, description="also score the base model on test")
    eval_test: bool = Field(
        True, description="score the test split; False for tuning runs, which choose on "
        "validation and must never see test")
    stop_after: int | None = Field(
        None, ge=1, description="stop after this many steps (the schedule still spans "
        "max_steps): a rung of successive halving, identical to the start of the full run")
    measure_scores: bool = Field(
        True, description="False: a cost-only run (memory, time, tokens/s, checkpoint size, "
        "trainable parameters): no validation, test, base-model or forgetting probe. Runs on "
        "a model with random weights (config:…) are cost-only whatever this says")
    bucket_batches: int = Field(
        0, ge=0, description="length bucketing: the examples of each window of this many "
        "batches are sorted by length and regrouped into batches (the same examples per "
        "window and epoch, less padding, fuller matmuls); 0 = off, plain shuffled batches")
    seed: int = 0

    def resolved_warmup(self) -> int:
        """Warm-up steps: the explicit value, or 5% of the run."""
        if self.warmup_steps is not None:
            return min(self.warmup_steps, self.max_steps)
        return max(1, self.max_steps // 20)

    def resolved_eval_every(self) -> int:
        """Validation interval in steps (at least once at the end)."""
        return self.eval_every or max(1, self.max_steps // 2)

    def steps_to_run(self) -> int:
        """Optimizer steps this run takes: ``max_steps``, or fewer for a halving rung."""
        return min(self.stop_after or self.max_steps, self.max_steps)


class ExperimentSpec(BaseModel):
    """One experiment. `adapter_config` holds PEFT config fields that override the method's
    defaults (or a complete PEFT config when `method` is taken from an adapter_config.json)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    task: str = "arith"
    task_options: dict[str, Any] = Field(default_factory=dict)
    method: str = "lora"
    adapter_config: dict[str, Any] = Field(default_factory=dict)
    targets: str | None = Field(None, description="None = attention projections; 'all-linear'")
    general_text: str | None = Field(
        None, description="WikiText-2 folder for the forgetting probe; None = the hub"
    )
    train: TrainParams = Field(default_factory=TrainParams)
    name: str | None = Field(None, description="human-readable experiment name")

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        if not self.model.strip():
            raise ValueError("model name is empty")
        if not self.method.strip():
            raise ValueError("method name is empty")
        return self

    def canonical_json(self) -> str:
        """The spec as JSON with sorted keys: the input of the content hash. Fields added
        after results were first written are left out at their defaults, so that those
        results keep their hashes."""
        data = self.model_dump(mode="json")
        for name, default in _ADDED_TRAIN_FIELDS.items():
            if data["train"].get(name) == default:
                del data["train"][name]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """A short stable hash of the whole spec; equal specs have equal hashes."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def display_name(self) -> str:
        """The experiment's name for file names and tables."""
        return self.name or f"{self.method}--{self.model}--{self.task.split(':')[0]}"


#: `TrainParams` fields added after results were first written, with their defaults
_ADDED_TRAIN_FIELDS: dict[str, Any] = {"measure_scores": True, "bucket_batches": 0}


def parse_spec(data: dict[str, Any]) -> ExperimentSpec:
    """Validate a spec from plain data, turning pydantic's report into one clear line."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid experiment spec: {_first_error(exc)}") from None


def parse_train_params(data: dict[str, Any]) -> TrainParams:
    """Validate training parameters, turning pydantic's report into one clear line."""
    try:
        return TrainParams.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid training parameter: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "spec"
    return f"{where}: {err.get('msg', 'invalid')}"


def parse_key_values(items: list[str], what: str) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON literals when they parse, else strings.

    ``["r=8", "target_modules=[\"q_proj\"]", "init=pissa"]`` gives
    ``{"r": 8, "target_modules": ["q_proj"], "init": "pissa"}``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{what} '{item}' is not of the form key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out
