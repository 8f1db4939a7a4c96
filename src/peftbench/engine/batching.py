"""Turn task examples into token tensors: encoding, padding, and the shared data order.

The data order is a pure function of the seed and the number of examples, so every technique in
a tournament sees exactly the same batches in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from peftbench.tasks.base import Example

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenized training example."""

    input_ids: list[int]
    #: token labels (causal LM), a class index (classifier) or a target value (regression)
    labels: list[int] | int | float


def encode_causal(examples: Sequence[Example], tokenizer: Any, max_len: int) -> list[Encoded]:
    """Prompt + target + EOS as input; the loss only on target and EOS tokens.

    Examples whose prompt alone fills ``max_len`` are kept with the prompt cut from the left,
    so that the target is always trained on.
    """
    eos = tokenizer.eos_token_id
    out = []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(ex.target, add_special_tokens=False)["input_ids"] + [eos]
        target = target[:max_len]
        prompt = prompt[-(max_len - len(target)):] if len(target) < max_len else []
        out.append(Encoded(prompt + target, [IGNORE] * len(prompt) + target))
    return out


def encode_classification(
    examples: Sequence[Example], tokenizer: Any, max_len: int, regression: bool = False
) -> list[Encoded]:
    """Text (a pair when the example has ``text_pair``, with the tokenizer's special tokens
    and separator) and its class index, or with ``regression`` its real-valued target."""
    out = []
    for ex in examples:
        ids = tokenizer(ex.text or ex.prompt, ex.text_pair or None, truncation=True,
                        max_length=max_len)["input_ids"]
        if regression:
            if ex.value is None:
                raise ValueError("regression example without a value")
            out.append(Encoded(ids, float(ex.value)))
            continue
        if ex.label is None:
            raise ValueError("classification example without a label")
        out.append(Encoded(ids, int(ex.label)))
    return out


def collate(batch: Sequence[Encoded], pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest member (right padding for training); target values (a
    regression) stay floats."""
    width = max(len(e.input_ids) for e in batch)
    ids, mask, labels = [], [], []
    for e in batch:
        pad = width - len(e.input_ids)
        fill = [pad_id] * pad
        zeros = [0] * pad
        ids.append(fill + e.input_ids if left else e.input_ids + fill)
        mask.append(zeros + [1] * len(e.input_ids) if left else [1] * len(e.input_ids) + zeros)
        if isinstance(e.labels, list):
            ignore = [IGNORE] * pad
            labels.append(ignore + e.labels if left else e.labels + ignore)
        else:
            labels.append(e.labels)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.float if isinstance(batch[0].labels, float)
                               else torch.long),
    }


def batch_order(n_examples: int, batch_size: int, n_batches: int, seed: int) -> Iterator[list[int]]:
    """Indices of ``n_batches`` batches: seeded shuffles, epoch after epoch, no partial batches
    unless the data set is smaller than one batch."""
    gen = torch.Generator().manual_seed(seed)
    pending: list[int] = []
    for _ in range(n_batches):
        while len(pending) < min(batch_size, n_examples):
            pending.extend(torch.randperm(n_examples, generator=gen).tolist())
        take = min(batch_size, n_examples)
        yield pending[:take]
        pending = pending[take:]


def bucketed_order(order: Iterator[list[int]], lengths: Sequence[int], window: int,
                   seed: int) -> Iterator[list[int]]:
    """Length-bucketed batches: ``order``'s batches taken ``window`` at a time, their examples
    sorted by length and cut into batches again, which are yielded in a seeded shuffle.

    Batch sizes stay the same, and every window of ``window`` batches (the last one possibly
    shorter) holds exactly the examples the unbucketed ``order`` puts there: epochs see the same
    examples, only their grouping into batches changes, so that batches pad less. ``window``
    of 0 or 1 passes ``order`` through unchanged.
    """
    if window <= 1:
        yield from order
        return
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    while True:
        group = [b for _, b in zip(range(window), order, strict=False)]
        if not group:
            return
        sizes = [len(b) for b in group]
        indices = sorted((i for b in group for i in b), key=lambda i: lengths[i])  # stable
        batches, start = [], 0
        for size in sizes:
            batches.append(indices[start:start + size])
            start += size
        for k in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[k]


def training_order(features: Sequence[Encoded], batch_size: int, n_batches: int, seed: int,
                   bucket_window: int = 0) -> Iterator[list[int]]:
    """The training batches' example indices: `batch_order`, length-bucketed over windows of
    ``bucket_window`` batches when it is above 1 (see `bucketed_order`)."""
    order = batch_order(len(features), batch_size, n_batches, seed)
    if bucket_window <= 1:
        return order
    return bucketed_order(order, [len(f.input_ids) for f in features], bucket_window, seed)


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Non-padding tokens in a batch."""
    return int(batch["attention_mask"].sum())
