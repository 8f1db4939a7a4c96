"""Scoring a model: generated answers and classifier accuracy on a split, the forgetting probe
(cross-entropy on general text) and the inference-overhead probe.

Generation itself (batched, greedy, the same strings as one prompt at a time) is in
`peftbench.engine.generation`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from peftbench.engine.batching import Encoded, collate
from peftbench.engine.generation import Progress, generate, own_loop_fits
from peftbench.engine.measure import synchronize
from peftbench.engine.train import autocast_context
from peftbench.tasks.base import Example, Task

__all__ = ["Progress", "classify", "general_text_loss", "generate", "inference_slowdown",
           "own_loop_fits", "score_classifier", "score_generation"]


def score_generation(
    task: Task, model: nn.Module, tokenizer: Any, examples: Sequence[Example], **kwargs: Any
) -> tuple[float, list[str]]:
    """Accuracy of generated answers on ``examples`` and the generations themselves."""
    if not examples:
        return 0.0, []
    kwargs.setdefault("stop_strings", task.stop_strings)
    outputs = generate(model, tokenizer, [e.prompt for e in examples], **kwargs)
    correct = sum(task.is_correct(o, e) for o, e in zip(outputs, examples, strict=True))
    return correct / len(examples), outputs


def score_classifier(
    model: nn.Module, features: Sequence[Encoded], *, pad_id: int, batch_size: int,
    device: torch.device, amp_dtype: torch.dtype | None = None, advance: Progress = None,
) -> tuple[float, list[int]]:
    """Accuracy of a sequence classifier (argmax of the logits) and its predictions."""
    predictions, _ = classify(model, features, pad_id=pad_id, batch_size=batch_size,
                              device=device, amp_dtype=amp_dtype, advance=advance)
    correct = sum(p == f.labels for p, f in zip(predictions, features, strict=True))
    return correct / max(len(features), 1), predictions


@torch.no_grad()
def classify(
    model: nn.Module, features: Sequence[Encoded], *, pad_id: int, batch_size: int,
    device: torch.device, amp_dtype: torch.dtype | None = None, advance: Progress = None,
) -> tuple[list[Any], list[tuple[float, ...]]]:
    """A sequence classifier's predicted class (argmax of the logits) and class
    probabilities (softmax) for each of ``features``, in order. A one-output head is a
    regression: its prediction is the output itself (a float), with no probabilities."""
    model.eval()
    predictions: list[Any] = []
    probabilities: list[tuple[float, ...]] = []
    for start in range(0, len(features), batch_size):
        chunk = features[start:start + batch_size]
        batch = collate(chunk, pad_id)
        with autocast_context(device, amp_dtype):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
        logits = logits.float().cpu()
        if logits.shape[-1] == 1:
            predictions.extend(logits[:, 0].tolist())
            probabilities.extend(() for _ in range(len(chunk)))
        else:
            predictions.extend(logits.argmax(-1).tolist())
            probabilities.extend(tuple(row) for row in logits.softmax(-1).tolist())
        if advance:
            advance(len(chunk))
    return predictions, probabilities


@torch.no_grad()
def general_text_loss(
    model: nn.Module, tokenizer: Any, blocks: Sequence[str], *, max_len: int,
    batch_size: int, device: torch.device, amp_dtype: torch.dtype | None = None,
) -> float:
    """Mean next-token cross-entropy (nats/token) of a causal LM on ``blocks`` of text.

    The forgetting probe compares this figure before and after fine-tuning.
    """
    model.eval()
    total_loss, total_tokens = 0.0, 0
    feats = []
    for text in blocks:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
        if len(ids) >= 2:
            feats.append(Encoded(ids, list(ids)))
    for start in range(0, len(feats), batch_size):
        batch = collate(feats[start:start + batch_size], tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_context(device, amp_dtype):
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        # prompt-based techniques prepend virtual tokens: keep the positions of the text
        logits = logits[:, logits.shape[1] - batch["input_ids"].shape[1]:]
        shift_logits = logits[:, :-1].float()
        shift_labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
            ignore_index=-100, reduction="sum",
        )
        total_loss += float(loss)
        total_tokens += int((shift_labels != -100).sum())
    return total_loss / max(total_tokens, 1)


@torch.no_grad()
def inference_slowdown(
    model: nn.Module, batch: dict[str, torch.Tensor], *, device: torch.device,
    amp_dtype: torch.dtype | None = None, repeats: int = 5,
) -> float | None:
    """Forward latency with the (unmerged) adapter divided by the base model's latency.

    Both are timed in the same process, interleaved, on the same batch; the median of each is
    used. Returns None when the model has no adapter to switch off.
    """
    if not hasattr(model, "disable_adapter"):
        return None
    model.eval()
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}

    def once() -> float:
        synchronize(device)
        t0 = time.perf_counter()
        with autocast_context(device, amp_dtype):
            model(**batch)
        synchronize(device)
        return time.perf_counter() - t0

    once()
    with model.disable_adapter():
        once()
    with_adapter, base = [], []
    for _ in range(repeats):
        with_adapter.append(once())
        with model.disable_adapter():
            base.append(once())
    return statistics.median(with_adapter) / statistics.median(base)
