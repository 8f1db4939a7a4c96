"""The training loop: one plain PyTorch loop shared by every technique.

AdamW (or the technique's own optimizer), a warm-up + cosine schedule, gradient clipping,
gradient accumulation, autocast (bf16 where the hardware runs it fast), periodic validation.
Nothing technique-specific happens here beyond the technique's ``after_step`` hook, which is what
makes the comparison fair: same data order, same steps, same schedule for everyone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from peftbench.engine.batching import Encoded, collate, count_tokens, training_order
from peftbench.engine.measure import (
    MemoryTracker,
    SavedTensorMeter,
    Stopwatch,
    count_parameters,
    state_bytes,
    tensor_bytes,
)
from peftbench.engine.spec import TrainParams
from peftbench.methods.base import Method

#: ``(model, example indices) -> (loss, tokens)``: the loss of one micro-batch
StepLoss = Callable[[nn.Module, list[int]], tuple[torch.Tensor, int]]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run is recorded as failed."""


@dataclass
class TrainOutcome:
    """What training produced besides the trained model."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    train_tokens: int = 0
    train_samples: int = 0
    state_bytes: int = 0
    final_valid: float | None = None
    last_loss: float | None = None
    optimizer_name: str = ""
    data_order: str = ""  # fingerprint of every batch's example indices, in order
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    activation_bytes: int = 0  # saved-tensor peak of a step (see `SavedTensorMeter`)
    trainable_bytes: int = 0  # counted after the optimizer was built (it may freeze some)
    trainable_params: int = 0
    total_params: int = 0
    first_step_time: float = 0.0  # part of train_time: one-off costs of the first step


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Autocast for ``dtype`` on ``device``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(
    model: nn.Module,
    method: Method,
    features: Sequence[Encoded],
    params: TrainParams,
    *,
    lr: float,
    pad_id: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    memory: MemoryTracker,
    validate: Callable[[], float] | None = None,
    metric: str = "accuracy",
    on_step: Callable[[int, float], None] | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    step_loss: StepLoss | None = None,
) -> TrainOutcome:
    """Train ``model`` for ``params.steps_to_run()`` optimizer steps (the schedule spans
    ``params.max_steps``); validate every ``params.resolved_eval_every()`` steps and at the end.

    ``on_step(step, loss)`` reports progress; ``on_log(step, metrics)`` gets each step's
    ``train/loss`` and ``train/learning_rate`` and each validation's ``valid/<metric>`` (what
    experiment trackers plot). Raises `NonFiniteLossError` on a NaN/inf loss.

    ``step_loss(model, indices)`` replaces the language-model loss on a micro-batch of
    ``features`` (an image model's flow-matching loss): it returns the loss and the tokens it
    counts; the order of the examples, the schedule and everything else stay the loop's.
    """
    from transformers import get_scheduler

    optimizer = method.make_optimizer(model, lr, params.weight_decay)
    scheduler = get_scheduler(
        params.lr_scheduler, optimizer, num_warmup_steps=params.resolved_warmup(),
        num_training_steps=params.max_steps,
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    meter = SavedTensorMeter(model)
    fingerprint = hashlib.sha256()
    order = _fingerprinted(training_order(features, params.batch_size,
                                          params.max_steps * params.grad_accum, params.seed,
                                          params.bucket_batches),
                           fingerprint)
    last_step = params.steps_to_run()
    out = TrainOutcome(optimizer_name=type(optimizer).__name__)
    out.trainable_params, out.total_params = count_parameters(model)
    out.trainable_bytes = tensor_bytes({id(p): p for p in trainable}.values())
    log_every = loss_log_interval(last_step)
    clock = Stopwatch(device)
    started = time.perf_counter()
    window_losses: list[float] = []
    window_time = window_tokens = 0.0
    eval_every = params.resolved_eval_every()
    model.train()
    for step in range(1, last_step + 1):
        t_before = clock.total
        step_lr = current_lr(optimizer)
        with clock:
            loss, tokens = _optimizer_step(model, optimizer, scheduler, trainable, order,
                                           features, params, pad_id, device, amp_dtype, meter,
                                           step_loss)
            method.after_step(model, step)
        memory.sample()
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"training loss is {loss} at step {step}")
        out.train_tokens += tokens
        out.train_samples += params.batch_size * params.grad_accum
        out.last_loss = loss
        window_losses.append(loss)
        window_time += clock.total - t_before
        if step == 1:
            out.first_step_time = clock.total - t_before
        window_tokens += tokens
        if step % log_every == 0 or step == last_step:
            out.loss_curve.append((step, loss))
        if on_step:
            on_step(step, loss)
        if on_log:
            on_log(step, {"train/loss": loss, "train/learning_rate": step_lr})
        if step % eval_every == 0 or step == last_step:
            entry = {"step": step, "train loss": sum(window_losses) / len(window_losses),
                     "train samples": out.train_samples, "train time": window_time,
                     "tokens / sec": window_tokens / max(window_time, 1e-9)}
            if validate is not None:
                t0 = time.perf_counter()
                with memory.paused():
                    out.final_valid = validate()
                model.train()
                entry[f"valid {metric}"] = out.final_valid
                entry["eval time"] = time.perf_counter() - t0
                if on_log:
                    on_log(step, {f"valid/{metric}": out.final_valid})
            entry["elapsed time"] = time.perf_counter() - started
            out.metrics.append(entry)
            window_losses, window_time, window_tokens = [], 0.0, 0.0
    out.train_time = clock.total
    out.data_order = fingerprint.hexdigest()[:16]
    out.state_bytes = state_bytes(model, optimizer)
    out.activation_bytes = meter.peak
    optimizer.zero_grad(set_to_none=True)
    return out


def current_lr(optimizer: Any) -> float:
    """The learning rate the next optimizer step uses (its first parameter group's; 0.0 for
    an optimizer without groups)."""
    groups = getattr(optimizer, "param_groups", None) or [{}]
    return float(groups[0].get("lr", 0.0))


def loss_log_interval(steps: int, points: int = 200) -> int:
    """Steps between two logged training losses: every step for runs of up to ``points``
    steps, so that even a short run draws a curve, and about ``points`` points beyond."""
    return max(1, steps // points)


def _fingerprinted(order: Iterator[list[int]], digest: Any) -> Iterator[list[int]]:
    """Pass batches through, hashing their indices: equal fingerprints mean equal data order."""
    for indices in order:
        digest.update(repr(indices).encode())
        yield indices


def _optimizer_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
    trainable: list[nn.Parameter], order: Any, features: Sequence[Encoded],
    params: TrainParams, pad_id: int, device: torch.device, amp_dtype: torch.dtype | None,
    meter: SavedTensorMeter | None = None, step_loss: StepLoss | None = None,
) -> tuple[float, int]:
    """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, tokens)."""
    total_loss, tokens = 0.0, 0
    for _ in range(params.grad_accum):
        indices = next(order)
        if step_loss is None:
            batch = collate([features[i] for i in indices], pad_id)
            tokens += count_tokens(batch)
            batch = {k: v.to(device) for k, v in batch.items()}
        with meter.micro_batch() if meter else contextlib.nullcontext():
            with autocast_context(device, amp_dtype):
                if step_loss is None:
                    loss = model(**batch).loss
                else:
                    loss, counted = step_loss(model, indices)
                    tokens += counted
            (loss / params.grad_accum).backward()
        total_loss += loss.item() / params.grad_accum
    if params.grad_norm_clip:  # what is trainable now: BAdam switches blocks while training
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                       params.grad_norm_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total_loss, tokens
