"""Every catalog entry trains, saves, reloads and merges on the tiny models (or says why not)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from methods_helpers import (  # noqa: E402
    CAUSAL_TEXTS,
    CLS_TEXTS,
    folder_bytes,
    outputs,
    reload,
    train_briefly,
)

from peftbench.errors import UserError  # noqa: E402
from peftbench.methods import all_methods, get_method  # noqa: E402
from peftbench.models import load_model, tiny_tokenizer  # noqa: E402

MODELS = {"causal-lm": "tiny-llama", "seq-cls": "tiny-bert"}
NAMES = [m.name for m in all_methods()]
#: merging re-quantizes the 4-bit base, so merged outputs only approximate unmerged ones
LOSSY_MERGE = {"qlora": 0.2}


def _test_overrides(name: str, kind: str) -> dict:
    """Trainable tokens' default (the special tokens) never appears in the inputs of the tiny
    tokenizer's fixed task, so its gradient is zero there; train the task's first tokens."""
    if name == "trainable_tokens":
        tok = tiny_tokenizer()
        texts = CAUSAL_TEXTS if kind == "causal-lm" else [t for t, _ in CLS_TEXTS]
        return {"token_indices": sorted({tok(t)["input_ids"][0] for t in texts})}
    return {}


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("name", NAMES)
def test_entry_trains_saves_reloads_and_merges(name: str, kind: str, tmp_path: Path) -> None:
    method = get_method(name)
    reason = method.why_not(kind)
    if reason:
        with pytest.raises(UserError, match="cannot be used here"):
            method.build(load_model(MODELS[kind], kind).model, kind, None, {})
        return
    run = train_briefly(method, MODELS[kind], kind, overrides=_test_overrides(name, kind))
    assert run.loss_after < run.loss_before, (run.loss_before, run.loss_after)
    trained = outputs(run.model, run.batch)
    method.save(run.model, tmp_path)
    assert folder_bytes(tmp_path) > 0
    reloaded = outputs(reload(method, MODELS[kind], kind, tmp_path), run.batch)
    torch.testing.assert_close(reloaded, trained, atol=1e-5, rtol=1e-5)
    if method.can_merge(run.model):
        merged = outputs(method.merge(run.model), run.batch)
        tolerance = LOSSY_MERGE.get(name, 1e-4)
        assert (merged - trained).abs().max().item() < tolerance


def test_contestant_counts_on_tiny_models() -> None:
    counts = {kind: sum(m.why_not(kind) is None for m in all_methods()) for kind in MODELS}
    assert counts["causal-lm"] >= 45
    assert counts["seq-cls"] >= 42
    assert counts["causal-lm"] > counts["seq-cls"]  # decoder-only techniques


def test_only_adapter_parameters_train() -> None:
    loaded = load_model("tiny-llama")
    total = sum(p.numel() for p in loaded.model.parameters())
    model = get_method("lora").build(loaded.model, "causal-lm", None, {})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # r=16 on q,k,v,o of 2 layers: (64+64)+(64+32)+(64+32)+(64+64) inputs+outputs, times r
    assert trainable == 2 * 16 * (128 + 96 + 96 + 128)
    assert trainable < total // 5
