"""Shared pieces of the catalog tests: a small fixed task, training with the engine's loop,
and the checks every technique must pass (loss drops, reload is exact, merge agrees)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from peftbench.engine.batching import IGNORE, Encoded, collate
from peftbench.engine.measure import MemoryTracker
from peftbench.engine.models import load_model
from peftbench.engine.spec import TrainParams
from peftbench.engine.train import train
from peftbench.methods import Method

CAUSAL_TEXTS = ["12 + 7 = 19", "3 + 4 = 7", "20 - 5 = 15", "6 * 2 = 12"]
CLS_TEXTS = [("a warm, funny film", 1), ("dull and slow", 0), ("moving and warm", 1),
             ("far too long", 0)]


@dataclass
class Trained:
    """A trained model, its losses, and the inputs used to compare outputs."""

    model: torch.nn.Module
    losses: list[float] = field(default_factory=list)
    batch: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_before: float = 0.0  # eval-mode loss on the task right after build
    loss_after: float = 0.0  # … and after training


def fixed_task(tokenizer, kind: str, max_len: int = 24) -> list[Encoded]:
    """A tiny memorisation task: the loss on it must fall within a few steps."""
    if kind == "causal-lm":
        out = []
        for text in CAUSAL_TEXTS:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len - 1]
            ids = ids + [tokenizer.eos_token_id]
            out.append(Encoded(ids, [IGNORE] + ids[1:]))
        return out
    return [Encoded(tokenizer(text, truncation=True, max_length=max_len)["input_ids"], label)
            for text, label in CLS_TEXTS]


def train_briefly(method: Method, model_name: str, kind: str, steps: int = 20,
                  lr: float | None = None, overrides: dict | None = None,
                  evaluate: bool = True, layers: int | None = None) -> Trained:
    """Build ``method`` on a fresh ``model_name`` and train it with the engine's loop;
    ``evaluate`` measures the eval-mode loss before and after. ``layers`` keeps only the first
    blocks of a decoder (real weights and widths, less depth)."""
    torch.set_num_threads(1)  # the machine is shared: one thread beats two contended ones
    loaded = load_model(model_name, kind, seed=0)
    if layers is not None:
        keep_first_layers(loaded.model, layers)
    model = method.build(loaded.model, kind, None, overrides or {})
    features = fixed_task(loaded.tokenizer, kind)
    full_batch = collate(features, loaded.tokenizer.pad_token_id)
    before = eval_loss(model, full_batch) if evaluate else math.nan
    params = TrainParams(max_steps=steps, batch_size=len(features), warmup_steps=0,
                         lr_scheduler="constant", dtype="float32", forgetting_samples=0,
                         measure_inference=False)
    losses: list[float] = []
    device = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, method, features, params, lr=lr or method.default_lr,
              pad_id=loaded.tokenizer.pad_token_id, device=device, amp_dtype=None,
              memory=MemoryTracker(device), on_step=lambda _s, loss: losses.append(loss))
    after = eval_loss(model, full_batch) if evaluate else math.nan
    batch = {k: v for k, v in full_batch.items() if k != "labels"}
    return Trained(model, losses, batch, before, after)


def keep_first_layers(model: torch.nn.Module, n: int) -> None:
    """Cut a decoder (``model.model.layers``) to its first ``n`` blocks, config included."""
    blocks = model.model.layers
    assert len(blocks) > n, f"the model has {len(blocks)} blocks, not more than {n}"
    model.model.layers = torch.nn.ModuleList(list(blocks)[:n])
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]


def eval_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """The loss on ``batch`` in eval mode (no dropout): a deterministic measure of progress."""
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = float(model(**batch).loss)
    model.train()
    return loss


def outputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of ``model`` on ``batch`` in eval mode."""
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float()


def reload(method: Method, model_name: str, kind: str, folder: Path) -> torch.nn.Module:
    """The saved technique put back on a fresh copy of the base model."""
    base = load_model(model_name, kind, seed=0).model
    return method.load(base, kind, folder)


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``: the checkpoint size."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
