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
    eval_loss,
    fixed_task,
    folder_bytes,
    outputs,
    reload,
    train_briefly,
)

from peftbench.engine.batching import collate  # noqa: E402
from peftbench.engine.models import load_model, tiny_tokenizer  # noqa: E402
from peftbench.errors import UserError  # noqa: E402
from peftbench.methods import all_methods, get_method  # noqa: E402

MODELS = {"causal-lm": "tiny-llama", "seq-cls": "tiny-bert"}
NAMES = [m.name for m in all_methods()]
#: techniques whose prompts reach the model as key/value prefixes (``past_key_values``)
KV_PREFIX = [m.name for m in all_methods() if m.peft_type in ("PREFIX_TUNING", "CARTRIDGE")]
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
    base = load_model(MODELS[kind], kind).model
    reason = method.why_not_on(base, kind)  # this very model (see the test below)
    if reason:
        with pytest.raises(UserError, match="cannot be applied to this model") as refused:
            method.build(base, kind, None, {})
        assert reason in str(refused.value) and "\n" not in str(refused.value)
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


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("name", KV_PREFIX)
def test_kv_prefix_refusal_is_what_peft_does(name: str, kind: str) -> None:
    """Prefix-style techniques are refused on a model exactly when PEFT, built without the
    check, fails at the first forward pass: the check follows the installed releases (with
    transformers 5.24 and PEFT 0.21.2 it refuses BERT, whose forward names it ``cache``)."""
    from peft import get_peft_model

    method = get_method(name)
    loaded = load_model(MODELS[kind], kind, seed=0)
    reason = method.why_not_on(loaded.model, kind)
    if kind == "seq-cls" and reason:
        assert "past_key_values" in reason and "BertModel" in reason
    model = get_peft_model(loaded.model, method.peft_config(kind, None, {}, loaded.model))
    batch = collate(fixed_task(loaded.tokenizer, kind), loaded.tokenizer.pad_token_id)
    if reason:
        with pytest.raises((ValueError, TypeError, RuntimeError)):
            model(**batch)
    else:
        model(**batch).loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", list(MODELS))
def test_qlora_trains_the_same_after_an_evaluation(kind: str) -> None:
    """On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit weight for an inference kernel
    that has no backward at the first eval-mode forward (see `methods.quantized`): training
    after an evaluation must still backpropagate through the frozen base, with the gradients
    it gets without the evaluation (bitsandbytes 0.50.2 crashed on BERT, and silently dropped
    gradients on Llama)."""
    method = get_method("qlora")
    reason = method.why_not(kind)
    if reason:
        pytest.skip(reason)
    grads = []
    for evaluate_first in (False, True):
        torch.manual_seed(0)
        loaded = load_model(MODELS[kind], kind, seed=0)
        model = method.build(loaded.model, kind, None, {})
        batch = collate(fixed_task(loaded.tokenizer, kind), loaded.tokenizer.pad_token_id)
        if evaluate_first:
            eval_loss(model, batch)
        torch.manual_seed(1)
        model.train()
        model(**batch).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


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
