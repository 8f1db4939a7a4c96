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
    factor_bytes = 0
    for name, layer in run.model.layers().items():
        a, b, a_k, b_k = (state[f"{name}.{k}"] for k in ("lora_A", "lora_B", "warmup_A",
                                                         "warmup_B"))
        # W's change is λ·s·(B A − B_K A_K), stored as the factors (rank ≤ 2r), not densely
        expected = layer.base_layer.weight.detach() - base_weights[f"{name}.weight"]
        assert expected.abs().max() > 0  # W did move after the warm-up
        torch.testing.assert_close(0.5 * layer.scaling * (b @ a - b_k @ a_k), expected,
                                   atol=1e-6, rtol=0)
        factor_bytes += sum(t.numel() * t.element_size() for t in (a, b, a_k, b_k))
    assert not any(k.endswith("weight_delta") for k in state)
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert factor_bytes < size < factor_bytes + 8192  # the factors and a header, nothing dense
    fresh = load_model("tiny-llama", seed=0).model
    reloaded = method.load(fresh, "causal-lm", tmp_path)
    torch.testing.assert_close(outputs(reloaded, run.batch), trained, atol=1e-5, rtol=1e-5)
    # saved again after the reload: the same change of W (it was saved as zero before)
    method.save(reloaded, tmp_path / "again")
    again = load_file(str(tmp_path / "again" / "adapter_model.safetensors"))
    assert again.keys() == state.keys()
    for key, tensor in state.items():
        torch.testing.assert_close(again[key], tensor, atol=0, rtol=0)
    twice = method.load(load_model("tiny-llama", seed=0).model, "causal-lm", tmp_path / "again")
    torch.testing.assert_close(outputs(twice, run.batch), trained, atol=1e-5, rtol=1e-5)


def test_checkpoint_before_the_warmup_ends_is_plain_lora(tmp_path: Path) -> None:
    method = get_method("delta_lora")
    run = train_briefly(method, "tiny-llama", "causal-lm", steps=3, evaluate=False,
                        overrides={"warmup_steps": 5})
    method.save(run.model, tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {k.rsplit(".", 1)[1] for k in state} == {"lora_A", "lora_B"}
    reloaded = method.load(load_model("tiny-llama", seed=0).model, "causal-lm", tmp_path)
    assert reloaded.steps_done == 3 and not reloaded.moving
    torch.testing.assert_close(outputs(reloaded, run.batch), outputs(run.model, run.batch),
                               atol=1e-6, rtol=0)


def test_disable_adapter_runs_the_base_layers() -> None:
    from peftbench.engine import evaluate

    loaded, batch = _batch()
    base = outputs(copy.deepcopy(loaded.model), {k: v for k, v in batch.items()
                                                 if k != "labels"})
    model = get_method("delta_lora").build(loaded.model, "causal-lm", None, dict(OVERRIDES))
    with torch.no_grad():
        for layer in model.layers().values():
            layer.lora_B.normal_()  # a non-zero LoRA path
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    adapted = outputs(model, inputs)
    with model.disable_adapter():
        torch.testing.assert_close(outputs(model, inputs), base)
    torch.testing.assert_close(outputs(model, inputs), adapted)
    slowdown = evaluate.inference_slowdown(model, batch, device=torch.device("cpu"), repeats=1)
    assert slowdown is not None and slowdown > 0


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
