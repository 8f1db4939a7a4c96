"""Delta-LoRA against a slow reference computation of its update, and its checkpoint."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).parent))
from methods_helpers import fixed_task, outputs, train_briefly  # noqa: E402

from peftbench.engine.batching import collate  # noqa: E402
from peftbench.engine.models import load_model  # noqa: E402
from peftbench.errors import UserError  # noqa: E402
from peftbench.methods import get_method  # noqa: E402

WARMUP, RATIO, STEPS, LR = 2, 0.5, 6, 1e-2
OVERRIDES = {"warmup_steps": WARMUP, "update_ratio": RATIO, "r": 4, "lora_alpha": 8,
             "target_modules": ["q_proj", "v_proj"]}


def _batch():
    loaded = load_model("tiny-llama", seed=0)
    return loaded, collate(fixed_task(loaded.tokenizer, "causal-lm"),
                           loaded.tokenizer.pad_token_id)


def test_update_matches_a_slow_reference() -> None:
    torch.manual_seed(0)
    loaded, batch = _batch()
    base = copy.deepcopy(loaded.model)
    method = get_method("delta_lora")
    model = method.build(loaded.model, "causal-lm", None, dict(OVERRIDES))
    layers = model.layers()
    scaling = OVERRIDES["lora_alpha"] / OVERRIDES["r"]
    # the reference: its own copies of W, A and B, a dense forward and an explicit update
    ref_w = {n: base.get_submodule(n).weight.detach().clone() for n in layers}
    ref_a = {n: layer.lora_A.detach().clone().requires_grad_(True) for n, layer in layers.items()}
    ref_b = {n: layer.lora_B.detach().clone().requires_grad_(True) for n, layer in layers.items()}
    ref_opt = torch.optim.AdamW([*ref_a.values(), *ref_b.values()], lr=LR, weight_decay=0.0)
    optimizer = method.make_optimizer(model, LR, 0.0)
    base_params = dict(base.named_parameters())
    initial = {n: w.clone() for n, w in ref_w.items()}
    for step in range(1, STEPS + 1):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        method.after_step(model, step)

        params = dict(base_params)
        for n in layers:
            params[f"{n}.weight"] = ref_w[n] + scaling * (ref_b[n] @ ref_a[n])
        functional_call(base, params, args=(), kwargs=batch).loss.backward()
        before = {n: scaling * (ref_b[n] @ ref_a[n]).detach() for n in layers}
        ref_opt.step()
        ref_opt.zero_grad()
        if step > WARMUP:
            for n in layers:
                after = scaling * (ref_b[n] @ ref_a[n]).detach()
                ref_w[n] = ref_w[n] + RATIO * (after - before[n])
        for n, layer in layers.items():
            moved = not torch.equal(layer.base_layer.weight, initial[n])
            assert moved == (step > WARMUP), (n, step)
    for n, layer in layers.items():
        torch.testing.assert_close(layer.base_layer.weight.detach(), ref_w[n], atol=1e-6, rtol=0)
        torch.testing.assert_close(layer.lora_A.detach(), ref_a[n].detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(layer.lora_B.detach(), ref_b[n].detach(), atol=1e-6, rtol=0)
        assert not torch.allclose(ref_w[n], initial[n])  # the reference moved W too
        assert not any(p is layer.base_layer.weight for g in optimizer.param_groups
                       for p in g["params"])  # no optimizer state for W
        assert layer.base_layer.weight.grad is None


def test_checkpoint_reproduces_the_trained_model(tmp_path: Path) -> None:
    method = get_method("delta_lora")
    run = train_briefly(method, "tiny-llama", "causal-lm",
                        overrides={"warmup_steps": 5, "update_ratio": 0.5})
    assert run.loss_after < run.loss_before
    base_weights = load_model("tiny-llama", seed=0).model.state_dict()
    trained = outputs(run.model, run.batch)
    method.save(run.model, tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "adapter_model.safetensors"))
    moved_bytes = 0
    for name, layer in run.model.layers().items():
        delta = state[f"{name}.weight_delta"]
        expected = layer.base_layer.weight.detach() - base_weights[f"{name}.weight"]
        assert expected.abs().max() > 0  # W did move after the warm-up
        torch.testing.assert_close(delta, expected, atol=1e-6, rtol=0)
        moved_bytes += delta.numel() * delta.element_size()
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert size > moved_bytes  # the dense W changes are in the checkpoint, and counted
    fresh = load_model("tiny-llama", seed=0).model
    reloaded = outputs(method.load(fresh, "causal-lm", tmp_path), run.batch)
    torch.testing.assert_close(reloaded, trained, atol=1e-5, rtol=1e-5)


def test_classifier_head_is_trained_and_saved(tmp_path: Path) -> None:
    method = get_method("delta_lora")
    run = train_briefly(method, "tiny-bert", "seq-cls")
    assert run.model.config  # attribute access reaches the wrapped model
    method.save(run.model, tmp_path)
    from safetensors.torch import load_file

    assert any(k.startswith("classifier.") for k in load_file(
        str(tmp_path / "adapter_model.safetensors")))


@pytest.mark.parametrize("overrides, message", [
    ({"lora_dropout": 0.1}, "no dropout"),
    ({"update_rate": 0.1}, "unknown delta_lora config field 'update_rate'"),
    ({"r": "big"}, "r='big'"),
    ({"target_modules": ["nothing_here"]}, "no linear layer matches"),
])
def test_bad_config_is_one_clear_line(overrides: dict, message: str) -> None:
    model = load_model("tiny-llama").model
    with pytest.raises(UserError, match=message) as info:
        get_method("delta_lora").build(model, "causal-lm", None, overrides)
    assert "\n" not in str(info.value)
