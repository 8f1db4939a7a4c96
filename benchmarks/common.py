"""Shared set-up for the benchmarks: SmolLM2-135M with LoRA on arith batches."""

from __future__ import annotations

from typing import Any

from peftbench.engine.batching import encode_causal
from peftbench.engine.models import load_model
from peftbench.methods import get_method
from peftbench.tasks import get_task


def lora_smollm2(seed: int = 0) -> tuple[Any, Any]:
    """SmolLM2-135M wrapped with the catalog's default LoRA, and its tokenizer."""
    loaded = load_model("smollm2-135m", seed=seed)
    model = get_method("lora").build(loaded.model, "causal-lm", None, {})
    return model, loaded.tokenizer


def arith_features(tokenizer: Any, n: int, max_len: int = 256) -> list:
    """``n`` tokenized arith training examples."""
    examples = get_task("arith", {"n_train": max(n, 8)}).load_split("train")[:n]
    return encode_causal(examples, tokenizer, max_len)


def ratio_line(name: str, a: float, b: float, unit: str = "s") -> str:
    """One printed line: two measurements side by side and their ratio."""
    return f"{name:<38} {a:10.4f} {unit} | {b:10.4f} {unit} | ratio {a / b:6.3f}"
