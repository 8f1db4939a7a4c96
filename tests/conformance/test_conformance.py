"""Conformance: every contestant trains, counts and ships as its definition says, on the tiny
models (fp32, two optimizer steps, weight decay on).

For each (technique, model kind) the catalog lets compete: what is trainable once the optimizer
is built and that the reported count matches it (and the definition, where it fixes the number),
that every trainable parameter is updated and every frozen one stays put, the optimizer's
learning rates and AdamW settings (those of every other technique unless the definition says
otherwise), the total parameter count, the trainable state's bytes, what the checkpoint holds,
that it reproduces the trained logits, and that the adapted model starts as the base model.
Then the initialisations and update rules that define particular techniques, and the figures
of a real result file. Exceptions live in `conformance_expected`, each with its reason; a
technique that cannot meet its definition says so in the catalog (``Method.caveat``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conformance_expected import (  # noqa: E402
    ADAMW,
    CHECKPOINT,
    LR_RATIO,
    NEVER_UPDATED,
    NO_DECAY,
    NO_MOMENTS,
    NOT_IDENTITY_AT_INIT,
    TRAINABLE,
    adapted_shapes,
    config,
    expected_state_bytes,
    head_numel,
    is_close,
    lora_factors,
    stepping_groups,
)
from conformance_harness import (  # noqa: E402
    MODELS,
    STEPS,
    WEIGHT_DECAY,
    ConformanceRun,
    batch_inputs,
    checkpoint_files,
    contestants,
    read_safetensors,
)

from peftbench.engine.measure import logical_numel  # noqa: E402
from peftbench.engine.models import load_model  # noqa: E402
from peftbench.methods import get_method  # noqa: E402

CASES = contestants()
Runs = Callable[..., ConformanceRun]


def test_every_contestant_is_checked() -> None:
    names = {name for name, _ in CASES}
    assert len(names) >= 45 and {"lora", "delta_lora", "qlora", "full"} <= names
    assert {kind for _, kind in CASES} == {"causal-lm", "seq-cls"}


# ---------------------------------------------------------------------- every contestant


@pytest.mark.parametrize("name, kind", CASES)
def test_trainable_parameters_after_the_optimizer(runs: Runs, name: str, kind: str) -> None:
    """The reported count is what is trainable once the optimizer is built and after every
    hook ran, and it is what the definition trains; the base model stays frozen (but for a
    classifier's head, and for full fine-tuning); the optimizer updates every trainable
    parameter, and each one gets a gradient."""
    run = runs(name, kind)
    trainable = run.trainable()
    assert run.outcome.trainable_params == run.trainable_count()
    assert set(trainable) == run.trainable_at_optimizer  # nothing changed it during training
    if name in TRAINABLE:
        assert run.trainable_count() == TRAINABLE[name](run)
    from_base = [n for i, (n, _) in trainable.items() if i in run.base_ids]
    if name == "full" or (run.method.trains_base_weights and name in TRAINABLE
                          and TRAINABLE[name](run) == run.base_total):
        assert len(from_base) == len(run.base_ids)
    elif run.method.trains_base_weights:  # a subset of the base model's own weights
        assert len(trainable) == len(from_base) > 0
    else:
        assert all("classifier" in n for n in from_base), from_base
    in_optimizer = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert set(trainable) <= in_optimizer
    never = sorted(n for i, (n, _) in trainable.items() if i not in run.got_grad)
    fragment = NEVER_UPDATED.get(name)
    if fragment is None:
        assert not never, never
    else:
        assert never and all(fragment in n for n in never), never


@pytest.mark.parametrize("name, kind", CASES)
def test_frozen_parameters_stay_put(runs: Runs, name: str, kind: str) -> None:
    run = runs(name, kind)
    moved = [n for n, p in run.model.named_parameters()
             if not p.requires_grad and not torch.equal(run.built[n], p.detach())]
    assert not moved, moved


@pytest.mark.parametrize("name, kind", CASES)
def test_optimizer_settings_are_the_shared_ones(runs: Runs, name: str, kind: str) -> None:
    """Learning rate, weight decay, betas and ε of every trainable parameter, in the groups
    that really step it: those of every other technique, except a learning-rate ratio the
    definition sets (LoRA+'s B), an optimizer's own weight-decay exemptions (Adam-mini) and
    an optimizer without moments (LOMO)."""
    run = runs(name, kind)
    names = {i: n for i, (n, _) in run.unique_parameters().items()}
    ratio_rule = LR_RATIO.get(name)
    no_decay = NO_DECAY.get(name, (lambda _n: False, ""))[0]
    stepped: set[int] = set()
    for group, params in stepping_groups(run):
        lr = group.get("initial_lr", group["lr"])
        for param in params:
            if not param.requires_grad:
                continue
            stepped.add(id(param))
            expected = run.lr
            if ratio_rule and ratio_rule[0] in names[id(param)]:
                expected *= ratio_rule[1](run)
            assert is_close(lr, expected), (names[id(param)], lr, expected)
            decay = 0.0 if no_decay(names[id(param)]) else WEIGHT_DECAY
            assert group["weight_decay"] == decay, names[id(param)]
            if name in NO_MOMENTS:
                continue
            betas = group.get("betas") or (group["beta1"], group["beta2"])
            assert tuple(betas) == ADAMW["betas"] and group["eps"] == ADAMW["eps"]
    assert set(run.trainable()) <= stepped


@pytest.mark.parametrize("name, kind", CASES)
def test_total_parameters(runs: Runs, name: str, kind: str) -> None:
    """The base model's (logical) parameters plus those the technique adds; QLoRA's 4-bit base
    counts its weights, not its packed bytes, so its total is LoRA's."""
    run = runs(name, kind)
    if name == "qlora":
        assert run.outcome.total_params == runs("lora", kind).outcome.total_params
        return
    added = sum(logical_numel(p) for _, p in run.added().values())
    assert run.outcome.total_params == run.base_total + added


@pytest.mark.parametrize("name, kind", CASES)
def test_state_bytes(runs: Runs, name: str, kind: str) -> None:
    run = runs(name, kind)
    assert run.outcome.state_bytes == expected_state_bytes(run)


@pytest.mark.parametrize("name, kind", CASES)
def test_checkpoint_holds_what_the_technique_ships(runs: Runs, name: str, kind: str) -> None:
    """Each file is a header and exactly its tensors (read by hand, not by safetensors), and
    the tensors are the trained parameters, or what the definition adds to them."""
    run = runs(name, kind)
    files = [read_safetensors(f) for f in checkpoint_files(run.folder)]
    assert files and all(f.path.suffix == ".safetensors" for f in files)
    for f in files:
        assert f.size == 8 + f.header_bytes + f.payload_bytes()
    payload = sum(f.payload_elements() for f in files)
    expected, _reason = CHECKPOINT.get(name, (lambda r: r.trainable_count(), ""))
    if expected is None:
        assert payload > run.trainable_count()
    else:
        assert payload == expected(run)


@pytest.mark.parametrize("name, kind", CASES)
def test_reloaded_checkpoint_reproduces_the_trained_model(runs: Runs, name: str,
                                                          kind: str) -> None:
    run = runs(name, kind)
    if run.trained_logits.shape == run.base_logits.shape:
        assert not torch.allclose(run.trained_logits, run.base_logits, atol=1e-6)
    torch.testing.assert_close(run.reloaded_logits, run.trained_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, kind", CASES)
def test_adapted_model_starts_as_the_base_model(runs: Runs, name: str, kind: str) -> None:
    run = runs(name, kind)
    if name in NOT_IDENTITY_AT_INIT:  # (some start very close: a small random update)
        assert run.built_logits.shape != run.base_logits.shape or not torch.equal(
            run.built_logits, run.base_logits), NOT_IDENTITY_AT_INIT[name]
    else:
        torch.testing.assert_close(run.built_logits, run.base_logits, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- definitions


def _lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    """PEFT LoRA layers by the name of the base linear layer they wrap."""
    return {name.split("base_model.model.", 1)[-1]: m for name, m in model.named_modules()
            if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}


def _base_weights(kind: str) -> dict[str, torch.Tensor]:
    """The fresh base model's parameters (the same seed as every conformance run)."""
    model = load_model(MODELS[kind], kind, seed=0).model
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _built(run: ConformanceRun, layer: str, part: str) -> torch.Tensor:
    """A LoRA layer's tensor as it was right after build."""
    suffix = {"A": "lora_A.default.weight", "B": "lora_B.default.weight",
              "W": "base_layer.weight", "m": "lora_magnitude_vector.default.weight"}[part]
    return run.built[f"base_model.model.{layer}.{suffix}"]


@pytest.mark.parametrize("name, scale", [
    ("lora", lambda a, r: a / r), ("rslora", lambda a, r: a / r ** 0.5),
    ("dora", lambda a, r: a / r), ("pissa", lambda a, r: a / r),
    ("olora", lambda a, r: a / r), ("lora_plus", lambda a, r: a / r),
    ("lora_fa", lambda a, r: a / r), ("qlora", lambda a, r: a / r),
])
def test_lora_scaling(runs: Runs, name: str, scale: Callable[[float, int], float]) -> None:
    """α/r for LoRA and its variants; α/√r for rsLoRA."""
    run = runs(name, "causal-lm")
    cfg = config(run)
    layers = _lora_layers(run.model)
    assert len(layers) == len(adapted_shapes("causal-lm"))
    for layer in layers.values():
        assert is_close(layer.scaling["default"], scale(cfg.lora_alpha, cfg.r))


def test_pissa_starts_from_the_principal_singular_directions(runs: Runs) -> None:
    """Residual + s·B·A is W; s·B·A captures the top-r spectral energy of W (16 power
    iterations by default, recorded in the catalog); the exact SVD on request."""
    run = runs("pissa", "causal-lm")
    assert config(run).init_lora_weights == get_method("pissa").defaults["init_lora_weights"] \
        == "pissa_niter_16"
    assert "16 power iterations" in get_method("pissa").description
    weights = _base_weights("causal-lm")
    scaling = _lora_layers(run.model)
    for layer, module in scaling.items():
        s, r = module.scaling["default"], config(run).r
        update = s * _built(run, layer, "B") @ _built(run, layer, "A")
        w = weights[f"{layer}.weight"]
        torch.testing.assert_close(_built(run, layer, "W") + update, w, atol=1e-5, rtol=0)
        top = torch.linalg.svdvals(w)[:r].pow(2).sum()
        assert torch.linalg.svdvals(update)[:r].pow(2).sum() >= 0.995 * top
    exact = get_method("pissa").build(load_model("tiny-llama", seed=0).model, "causal-lm", None,
                                      {"init_lora_weights": "pissa"})
    for layer, module in _lora_layers(exact).items():
        update = module.scaling["default"] * (module.lora_B["default"].weight
                                              @ module.lora_A["default"].weight)
        r = module.r["default"]
        torch.testing.assert_close(torch.linalg.svdvals(update.detach())[:r],
                                   torch.linalg.svdvals(weights[f"{layer}.weight"])[:r],
                                   atol=0, rtol=1e-4)


def test_olora_starts_from_the_qr_decomposition(runs: Runs) -> None:
    """B is the first r columns of Q (orthonormal), A = Bᵀ·W, and residual + s·B·A is W."""
    run = runs("olora", "causal-lm")
    weights = _base_weights("causal-lm")
    for layer, module in _lora_layers(run.model).items():
        a, b, w = _built(run, layer, "A"), _built(run, layer, "B"), weights[f"{layer}.weight"]
        torch.testing.assert_close(b.T @ b, torch.eye(b.shape[1]), atol=1e-5, rtol=0)
        torch.testing.assert_close(a, b.T @ w, atol=1e-5, rtol=0)
        torch.testing.assert_close(_built(run, layer, "W") + module.scaling["default"] * b @ a,
                                   w, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["causal-lm", "seq-cls"])
def test_dora_magnitude_starts_as_the_row_norms(runs: Runs, kind: str) -> None:
    run = runs("dora", kind)
    weights = _base_weights(kind)
    layers = _lora_layers(run.model)
    assert layers
    for layer in layers:
        assert not _built(run, layer, "B").any()  # B·A = 0: the weight is W itself
        torch.testing.assert_close(_built(run, layer, "m"),
                                   weights[f"{layer}.weight"].norm(dim=1), atol=1e-6, rtol=0)


def test_lora_fa_trains_b_with_a_frozen_at_init(runs: Runs) -> None:
    run = runs("lora_fa", "causal-lm")
    for layer, module in _lora_layers(run.model).items():
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        assert not a.requires_grad and b.requires_grad
        assert torch.equal(a.detach(), _built(run, layer, "A")) and a.abs().sum() > 0
        assert not torch.equal(b.detach(), _built(run, layer, "B"))


def test_qlora_base_is_4bit_and_counted_by_weights(runs: Runs) -> None:
    run, lora = runs("qlora", "causal-lm"), runs("lora", "causal-lm")
    from peftbench.methods.quantized import SKIP_MODULES

    packed = [p for p in run.model.parameters() if type(p).__name__ == "Params4bit"]
    linear = [n for n, m in load_model("tiny-llama").model.named_modules()
              if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] not in SKIP_MODULES]
    assert len(packed) == len(linear) > len(adapted_shapes("causal-lm"))  # every linear layer
    assert all(p.dtype == torch.uint8 and logical_numel(p) == 2 * p.numel() for p in packed)
    assert run.outcome.trainable_params == lora.outcome.trainable_params
    assert run.outcome.total_params == lora.outcome.total_params


@pytest.mark.parametrize("kind", ["causal-lm", "seq-cls"])
def test_delta_lora_moves_w_by_the_change_of_the_lora_product(runs: Runs, kind: str) -> None:
    """After a warm-up of K steps, W has moved by λ·(α/r)·(B A − B_K A_K) exactly; the
    checkpoint stores that change factored (A_K, B_K: twice LoRA's factors, nothing dense), a
    reload reproduces the trained model, and the adapter can be switched off (which the
    inference-overhead measurement needs)."""
    run = runs("delta_lora", kind, {"warmup_steps": 1}, 3)
    cfg = config(run)
    weights = _base_weights(kind)
    start = run.steps_factors[0]  # the factors after step 1 = K
    for name, layer in run.model.layers().items():
        a_k, b_k = start[name]
        expected = cfg.update_ratio * cfg.scaling * (layer.lora_B @ layer.lora_A - b_k @ a_k)
        torch.testing.assert_close(layer.base_layer.weight.detach() - weights[f"{name}.weight"],
                                   expected.detach(), atol=1e-6, rtol=0)
        assert expected.abs().max() > 0
    payload = sum(read_safetensors(f).payload_elements() for f in checkpoint_files(run.folder))
    assert payload == lora_factors(run, 2) + head_numel(kind)
    torch.testing.assert_close(run.reloaded_logits, run.trained_logits, atol=1e-5, rtol=1e-5)
    inputs = batch_inputs(kind)
    with run.model.disable_adapter(), torch.no_grad():
        off = run.model(**inputs).logits
    assert not torch.allclose(off, run.trained_logits, atol=1e-6)


def test_departures_are_marked_in_the_catalog() -> None:
    """Whatever a test above accepts as a departure from the shared rules is the catalog's
    caveat (or exclusion), not a silent entry."""
    for name in NEVER_UPDATED:
        assert get_method(name).caveat, name
    for name, (_, reason) in CHECKPOINT.items():
        if "caveat" in reason:
            assert get_method(name).caveat, name
    assert get_method("lora_fa").caveat
    assert get_method("trainable_tokens").why_not("seq-cls")  # no head to train
    assert ("trainable_tokens", "seq-cls") not in CASES


# ---------------------------------------------------------------------- the result file


E2E = [("lora", {}), ("lora_fa", {}), ("qlora", {}), ("pissa", {}),
       ("delta_lora", {"warmup_steps": 1}), ("galore", {}), ("badam", {}), ("lomo", {}),
       ("freeze", {})]


@pytest.mark.parametrize("name, overrides", E2E, ids=[n for n, _ in E2E])
def test_result_file_reports_the_conformance_figures(runs: Runs, tmp_path: Path, name: str,
                                                     overrides: dict[str, Any]) -> None:
    """A real run's result file: trainable and total parameters, state bytes and file size
    equal the values checked above (the file size from the saved tensors, read by hand)."""
    from peftbench.engine.experiment import run_experiment
    from peftbench.engine.spec import ExperimentSpec, TrainParams

    if get_method(name).why_not("causal-lm"):
        pytest.skip(get_method(name).why_not("causal-lm"))
    run = runs(name, "causal-lm", overrides or None, 3 if overrides else STEPS)
    train = TrainParams(max_steps=3, batch_size=4, eval_every=3, max_new_tokens=2,
                        eval_batch_size=2, forgetting_samples=0, measure_inference=False,
                        eval_test=False, weight_decay=WEIGHT_DECAY)
    spec = ExperimentSpec(model="tiny-llama", task="arith", method=name, train=train,
                          task_options={"n_train": 8, "n_valid": 2, "n_test": 2},
                          adapter_config=overrides)
    outcome = run_experiment(spec, tmp_path, progress=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    info = outcome.result["train_info"]
    assert info["num_trainable_params"] == run.trainable_count() == TRAINABLE[name](run)
    assert info["num_total_params"] == run.outcome.total_params
    assert info["state_bytes"] == expected_state_bytes(run)
    folder = Path(outcome.result["run_info"]["peftbench"]["adapter_path"])
    files = [read_safetensors(f) for f in checkpoint_files(folder)]
    assert info["file_size"] == sum(8 + f.header_bytes + f.payload_bytes() for f in files)
    payload = sum(f.payload_elements() for f in files)
    assert payload == sum(f.payload_elements() for f in map(read_safetensors,
                                                             checkpoint_files(run.folder)))
