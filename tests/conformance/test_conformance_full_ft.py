"""Conformance of the full-parameter and partial fine-tuning techniques to their definitions,
beyond the checks every contestant passes (`test_conformance`): GaLore's projected state has the
configured rank and its update stays in that subspace, APOLLO scales the raw gradient per channel
(per tensor for APOLLO-Mini), BAdam updates one block per switch interval, freeze tuning leaves
every other weight bit-identical, Adam-mini keeps one second moment per block, LOMO is plain SGD
applied inside the backward pass, and the trainable state ranks the optimizers as their designs
say."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conformance_expected import block_linears, blocks, settings  # noqa: E402
from conformance_harness import (  # noqa: E402
    MODELS,
    STEPS,
    WEIGHT_DECAY,
    ConformanceRun,
    checkpoint_files,
    read_safetensors,
)
from methods_helpers import fixed_task  # noqa: E402

from peftbench.engine.batching import collate  # noqa: E402
from peftbench.engine.measure import MemoryTracker  # noqa: E402
from peftbench.engine.models import load_model  # noqa: E402
from peftbench.engine.spec import TrainParams  # noqa: E402
from peftbench.engine.train import train  # noqa: E402
from peftbench.methods import get_method  # noqa: E402

Runs = Callable[..., ConformanceRun]
KINDS = list(MODELS)


def _base_weights(kind: str) -> dict[str, torch.Tensor]:
    model = load_model(MODELS[kind], kind, seed=0).model
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _projected_shapes(m: int, n: int, r: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(moment shape, projection shape) of GaLore's 'std' rule for an m×n weight: the
    gradient is projected on its smaller side."""
    return ((m, r), (r, n)) if m >= n else ((r, n), (m, r))


# ---------------------------------------------------------------------- GaLore


@pytest.mark.parametrize("kind", KINDS)
def test_galore_state_is_projected_to_the_configured_rank(runs: Runs, kind: str) -> None:
    """Each block linear weight keeps moments of its rank-r projected gradient and an
    orthonormal projection from the gradient's SVD; every other weight, full moments. Two
    steps with one projection move the weight within that rank-r subspace (weight decay
    aside)."""
    rank = 4
    run = runs("galore", kind, {"rank": rank})
    params = dict(run.model.named_parameters())
    base = _base_weights(kind)
    projected = {name: (m, n) for name, m, n in block_linears(kind)}
    decay = 1 - run.lr * WEIGHT_DECAY
    for name, param in params.items():
        state = run.optimizer.state[param]
        if name not in projected:
            assert state["exp_avg"].shape == param.shape, name
            continue
        m, n = projected[name]
        moments, projection = _projected_shapes(m, n, rank)
        assert state["exp_avg"].shape == state["exp_avg_sq"].shape == moments, name
        basis = state["projector"].ortho_matrix
        assert basis.shape == projection, name
        gram = basis @ basis.T if m >= n else basis.T @ basis
        torch.testing.assert_close(gram, torch.eye(rank), atol=1e-5, rtol=0)
        moved = base[name] * decay ** STEPS - param.detach()
        values = torch.linalg.svdvals(moved)
        assert values[rank:].max() < 1e-4 * values[0], (name, values[: rank + 2])


def test_galore_layerwise_steps_each_weight_in_the_backward_pass(runs: Runs) -> None:
    """One GaLore optimizer per weight, each stepped once per training step with the
    projected state of the configured rank; the largest gradient is all that existed at once."""
    rank = 4
    run = runs("galore_layerwise", "causal-lm", {"rank": rank})
    projected = {name: (m, n) for name, m, n in block_linears("causal-lm")}
    inner = run.optimizer.inner
    params = dict(run.model.named_parameters())
    assert set(map(id, inner)) == set(map(id, params.values()))
    for name, param in params.items():
        optimizer, _ = inner[param]
        state = optimizer.state[param]
        assert state["step"] == STEPS, name
        if name in projected:
            moments, projection = _projected_shapes(*projected[name], rank)
            assert state["exp_avg"].shape == moments
            assert state["projector"].ortho_matrix.shape == projection
    largest = max(p.numel() * p.element_size() for p in params.values())
    assert run.optimizer.peak_gradient_bytes == largest


# ---------------------------------------------------------------------- APOLLO


def _one_step_update(name: str, overrides: dict[str, Any]) -> dict[str, tuple]:
    """(gradient, weight change) of every block linear weight after one optimizer step on the
    fixed task, without weight decay."""
    loaded = load_model("tiny-llama", "causal-lm", seed=0)
    method = get_method(name)
    model = method.build(loaded.model, "causal-lm", None, overrides)
    optimizer = method.make_optimizer(model, method.default_lr, 0.0)
    before = _weights(model)
    batch = collate(fixed_task(loaded.tokenizer, "causal-lm"), loaded.tokenizer.pad_token_id)
    model(**batch).loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    optimizer.step()
    after = _weights(model)
    return {n: (grads[n], after[n] - before[n]) for n, _, _ in block_linears("causal-lm")}


@pytest.mark.parametrize("name, per_channel", [("apollo", True), ("apollo_mini", False)])
def test_apollo_scales_the_raw_gradient(name: str, per_channel: bool) -> None:
    """APOLLO's update is the raw gradient scaled by one factor per channel (its larger side's
    rows or columns); APOLLO-Mini's by one factor per tensor; the moments live in a random
    projection of the configured rank."""
    for weight, (grad, change) in _one_step_update(name, {}).items():
        if per_channel:
            dim = 0 if grad.shape[0] < grad.shape[1] else 1
            factor = (change * grad).sum(dim, keepdim=True) / (grad * grad).sum(dim, keepdim=True)
        else:
            factor = (change * grad).sum() / (grad * grad).sum()
        residual = (change - factor * grad).norm() / change.norm()
        assert residual < 1e-4, (weight, residual)
        assert (factor < 0).all()  # a descent step
    assert get_method("apollo_mini").defaults["rank"] == 1


@pytest.mark.parametrize("name", ["apollo", "apollo_mini"])
def test_apollo_moments_have_the_configured_rank(runs: Runs, name: str) -> None:
    run = runs(name, "causal-lm")
    rank = settings(run)["rank"]
    params = dict(run.model.named_parameters())
    for weight, m, n in block_linears("causal-lm"):
        state = run.optimizer.state[params[weight]]
        moments, projection = _projected_shapes(m, n, rank)
        assert state["exp_avg"].shape == moments
        assert state["projector"].ortho_matrix.shape == projection


# ---------------------------------------------------------------------- BAdam


def _train_with_snapshots(name: str, kind: str, overrides: dict[str, Any],
                          steps: int) -> tuple[torch.nn.Module, Any, list[dict]]:
    """Train with the engine's loop; the weights after every step."""
    torch.set_num_threads(1)
    loaded = load_model(MODELS[kind], kind, seed=0)
    method = get_method(name)
    model = method.build(loaded.model, kind, None, overrides)
    snapshots = [_weights(model)]
    seen: dict[str, Any] = {}
    make = method.make_optimizer

    def watched(*args: Any) -> torch.optim.Optimizer:
        seen["optimizer"] = make(*args)
        return seen["optimizer"]

    method.make_optimizer = watched  # type: ignore[method-assign]
    params = TrainParams(max_steps=steps, batch_size=4, warmup_steps=0, dtype="float32",
                         lr_scheduler="constant", forgetting_samples=0,
                         measure_inference=False, weight_decay=WEIGHT_DECAY)
    device = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, method, fixed_task(loaded.tokenizer, kind), params, lr=1e-3,
              pad_id=loaded.tokenizer.pad_token_id, device=device, amp_dtype=None,
              memory=MemoryTracker(device),
              on_step=lambda _s, _l: snapshots.append(_weights(model)))
    return model, seen["optimizer"], snapshots


@pytest.mark.parametrize("kind", KINDS)
def test_badam_updates_one_block_per_switch_interval(kind: str, tmp_path: Path) -> None:
    """With blocks switching every 2 steps in descending order, each step changes exactly one
    decoder block (and a classifier's head), in the order badam defines (the first switch
    after step N−1, the catalog's caveat); every other weight stays bit-identical; the
    checkpoint ships the blocks that trained."""
    model, optimizer, snapshots = _train_with_snapshots(
        "badam", kind, {"switch_every": 2, "switch_mode": "descending"}, 5)
    table = blocks(kind)
    last = max(table)
    expected = [last, last - 1, last - 1, last, last]
    for step, block in enumerate(expected, start=1):
        changed = {n for n, w in snapshots[step].items()
                   if not torch.equal(w, snapshots[step - 1][n])}
        heads = {n for n in changed if n.startswith("classifier.")}
        assert changed - heads == set(table[block]), step
        assert bool(heads) == (kind == "seq-cls")
    assert optimizer.active_blocks[:3] == [last, last - 1, last]
    trained = set().union(*(table[b] for b in set(expected)))
    untouched = [n for n in snapshots[0] if n not in trained and not n.startswith("classifier.")]
    assert untouched and all(torch.equal(snapshots[0][n], snapshots[-1][n]) for n in untouched)
    get_method("badam").save(model, tmp_path)
    saved = set().union(*(read_safetensors(f).tensors for f in checkpoint_files(tmp_path)))
    assert saved - {n for n in saved if n.startswith("classifier.")} == trained


# ---------------------------------------------------------------------- freeze tuning


FREEZE_CASES = [
    ("causal-lm", {"trainable_layers": 1}, lambda name: ".layers.1." in name),
    ("seq-cls", {"trainable_layers": 1},
     lambda name: ".layer.1." in name or name.startswith("classifier.")),
    ("causal-lm", {"trainable_layers": -1, "trainable_modules": "mlp"},
     lambda name: ".layers.0.mlp." in name),
    ("causal-lm", {"trainable_layers": 1, "trainable_modules": ["self_attn"],
                   "extra_modules": ["embed_tokens"]},
     lambda name: ".layers.1.self_attn." in name or "embed_tokens" in name),
]


@pytest.mark.parametrize("kind, overrides, chosen", FREEZE_CASES)
def test_freeze_trains_its_layers_and_leaves_every_other_weight_bit_identical(
        runs: Runs, kind: str, overrides: dict, chosen: Callable[[str], bool]) -> None:
    run = runs("freeze", kind, overrides)
    base = _base_weights(kind)
    trainable = {n for _, (n, _) in run.trainable().items()}
    assert trainable == {n for n in base if chosen(n)}
    for name, param in run.model.named_parameters():
        if name in trainable:
            assert not torch.equal(param.detach(), base[name]), name
        else:
            assert torch.equal(param.detach(), base[name]), name
    saved = set().union(*(read_safetensors(f).tensors for f in checkpoint_files(run.folder)))
    assert saved == trainable


# ---------------------------------------------------------------------- Adam-mini


def test_adam_mini_keeps_one_second_moment_per_block(runs: Runs) -> None:
    """One value per attention head of the query and key projections, per output neuron of
    the value, output and MLP projections, per token of the embeddings and the output layer,
    one per norm scale; the first moment is full."""
    run = runs("adam_mini", "causal-lm")
    config = run.model.config
    for name, param in run.model.named_parameters():
        state = run.optimizer.state[param]
        assert state["m"].numel() == param.numel(), name
        if name.endswith("q_proj.weight"):
            blocks_ = config.num_attention_heads
        elif name.endswith("k_proj.weight"):
            blocks_ = config.num_key_value_heads
        elif param.dim() == 2:
            blocks_ = param.shape[0]
        else:
            blocks_ = 1
        assert state["vmean"].numel() == blocks_, name


# ---------------------------------------------------------------------- LOMO


def test_lomo_is_sgd_applied_inside_the_backward_pass() -> None:
    """After one backward pass every weight is W·(1 − lr·wd) − lr·g at the learning rate the
    scheduler set, no gradient is left for ``step`` (so none is clipped), LOMO keeps no
    optimizer state, and at most two gradients existed at once."""
    loaded = load_model("tiny-llama", "causal-lm", seed=0)
    method = get_method("lomo")
    model = method.build(loaded.model, "causal-lm", None, {})
    grads: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():  # registered first: sees the raw gradient
        param.register_hook(lambda g, n=name: grads.__setitem__(n, g.detach().clone()))
    optimizer = method.make_optimizer(model, method.default_lr, WEIGHT_DECAY)
    lr = method.default_lr / 2
    optimizer.param_groups[0]["lr"] = lr  # what a scheduler does
    before = _weights(model)
    batch = collate(fixed_task(loaded.tokenizer, "causal-lm"), loaded.tokenizer.pad_token_id)
    model(**batch).loss.backward()
    assert all(p.grad is None for p in model.parameters())
    for name, param in model.named_parameters():
        expected = before[name].clone().mul_(1.0 - lr * WEIGHT_DECAY).add_(grads[name], alpha=-lr)
        assert torch.equal(param.detach(), expected), name
    after = _weights(model)
    optimizer.step()  # nothing left to apply
    assert all(torch.equal(p.detach(), after[n]) for n, p in model.named_parameters())
    assert not optimizer.state
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    assert largest <= optimizer.peak_gradient_bytes <= 2 * largest


# ---------------------------------------------------------------------- memory


def test_trainable_state_ranks_the_optimizers_as_designed(runs: Runs) -> None:
    """Full AdamW holds weights, gradients and two moments; GaLore shrinks the moments of the
    projected weights, layer-wise GaLore also the gradients; BAdam holds one block; LOMO only
    the weights and a gradient or two."""
    state = {name: runs(name, "causal-lm").outcome.state_bytes
             for name in ("full", "galore", "galore_layerwise", "badam", "lomo")}
    assert state["lomo"] < state["galore_layerwise"] < state["galore"] < state["full"]
    assert state["badam"] < state["galore"]
    params = runs("full", "causal-lm").base_total * 4
    assert state["full"] >= 4 * params
    assert params < state["lomo"] < 2 * params
