"""The full-parameter and partial fine-tuning entries (`peftbench.methods.full_ft`) as catalog
citizens: config checking, a missing package named by its extra, GPU-only entries, their
capabilities and presets, subset checkpoints, AdaLomo's wrapper, and export to LoRA."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from peftbench.engine.experiment import run_experiment
from peftbench.engine.models import load_model
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError
from peftbench.methods import capabilities, get_method
from peftbench.methods.full_ft import EXTRA
from peftbench.methods.table import catalog_rows, exportable_to_lora

FULL_FT = ["galore", "galore_layerwise", "galore_8bit", "apollo", "apollo_mini", "badam",
           "adam_mini", "lomo", "adalomo", "freeze"]
PACKAGES = {"galore": "galore_torch", "apollo": "apollo_torch", "badam": "badam",
            "adam_mini": "adam_mini", "lomo": "lomo_optim"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and threads stall when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_entries_are_weight_training_contestants_without_merge() -> None:
    """No merge (the trained weights are the model), exportable to LoRA through trained −
    base, every default learning rate sourced."""
    rows = {row["name"]: row for row in catalog_rows()}
    for name in FULL_FT:
        method = get_method(name)
        assert method.trains_base_weights and method.lr_source and method.default_lr > 0
        caps = capabilities(name)
        assert not caps["merge"] and not caps["prompt_only"] and not caps["multi_adapter"]
        assert exportable_to_lora(rows[name])
        assert not method.can_merge(load_model("tiny-llama").model)


@pytest.mark.parametrize("name, module", sorted(PACKAGES.items()))
def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                        name: str, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod == module else real(mod, *a))
    method = get_method(name)
    reason = method.why_not("causal-lm")
    assert reason and f"pip install 'peftbench[{EXTRA}]'" in reason and "\n" not in reason
    with pytest.raises(UserError, match=r"peftbench\[full-ft\]") as refused:
        method.build(load_model("tiny-llama").model, "causal-lm", None, {})
    assert "\n" not in str(refused.value)
    from peftbench.tournament.plan import resolve_methods

    chosen, excluded = resolve_methods("preset:memory", "causal-lm")
    if name in ("galore", "apollo", "badam"):
        assert name not in chosen and "peftbench[full-ft]" in excluded[name]


@pytest.mark.parametrize("name", ["galore_8bit", "adalomo"])
def test_gpu_only_entries_say_so_without_a_gpu(name: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    reason = get_method(name).why_not("causal-lm")
    assert reason and reason.startswith("needs a CUDA GPU")


@pytest.mark.parametrize("name, overrides, message", [
    ("galore", {"ranks": 4}, "unknown galore config field 'ranks'"),
    ("galore", {"rank": "4"}, "rank='4' is not a int"),
    ("galore", {"rank": 0}, "rank must be >= 1"),
    ("galore", {"rank": 2.5}, "is not an int"),
    ("galore", {"target_modules": 3}, "is not a name or a list"),
    ("badam", {"switch_mode": "sideways"}, "switch_mode must be"),
    ("freeze", {"trainable_layers": 0}, "must not be 0"),
    ("freeze", {"trainable_layers": 9}, "the model has 2 layers"),
    ("freeze", {"trainable_modules": "ffn"}, "names 'ffn', which is no module"),
    ("lomo", {"momentum": 0.9}, "unknown lomo config field 'momentum' (fields: none)"),
])
def test_bad_config_is_one_clear_line(name: str, overrides: dict, message: str) -> None:
    with pytest.raises(UserError) as refused:
        get_method(name).build(load_model("tiny-llama").model, "causal-lm", None, overrides)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_galore_targets_a_chosen_module_list() -> None:
    """``target_modules`` narrows the projection to the named layers; the rest trains with
    plain AdamW moments in the same optimizer."""
    method = get_method("galore")
    model = method.build(load_model("tiny-llama").model, "causal-lm", None,
                         {"target_modules": ["q_proj", "v_proj"]})
    optimizer = method.make_optimizer(model, 1e-4, 0.0)
    projected = [g for g in optimizer.param_groups if "rank" in g]
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)].rsplit(".", 2)[-2] for p in projected[0]["params"]] == \
        ["q_proj", "v_proj"] * 2


def test_memory_and_full_presets() -> None:
    from peftbench.tournament.plan import BUDGETS, PRESETS, resolve_methods

    assert PRESETS["memory"] == ["lora", "qlora", "lora_fa", "galore", "apollo", "badam",
                                 "freeze", "full"]
    assert BUDGETS["memory"]["methods"] == "preset:memory"
    chosen, _ = resolve_methods("preset:full", "causal-lm")
    assert {"galore", "galore_layerwise", "apollo", "apollo_mini", "badam", "adam_mini",
            "lomo", "freeze"} <= set(chosen)


def test_subset_checkpoint_refuses_a_tensor_the_base_lacks(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from peftbench.methods.full_ft.checkpoint import WEIGHTS_NAME

    save_file({"model.layers.7.mlp.up_proj.weight": torch.zeros(2, 2)},
              str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(UserError, match="has 'model.layers.7.mlp.up_proj.weight', which this"):
        get_method("freeze").load(load_model("tiny-llama").model, "causal-lm", tmp_path)
    save_file({"model.norm.weight": torch.zeros(3)}, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(UserError, match="has shape"):
        get_method("freeze").load(load_model("tiny-llama").model, "causal-lm", tmp_path)


def test_adalomo_wrapper_counts_steps_and_factored_moments(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """AdaLomo (GPU-only here: its package puts its state on CUDA) trained on the CPU with
    ``.cuda()`` made a no-op: one step per backward pass, factored second moments (a row and
    a column vector per matrix) counted in the trainable state, no loss scaling."""
    from peftbench.methods.full_ft.fused import fused_optimizer
    from peftbench.methods.full_ft.state import trainable_bytes

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    loaded = load_model("tiny-llama", "causal-lm", seed=0)
    model = loaded.model
    optimizer = fused_optimizer(model, 5e-4, 0.0, adaptive=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    assert optimizer.step_num == 2 and not optimizer.loss_scale
    assert all(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
    rows = sum(v.numel() for v in optimizer.exp_avg_sq_row.values())
    cols = sum(v.numel() for v in optimizer.exp_avg_sq_col.values())
    vectors = sum(v.numel() for v in optimizer.exp_avg_sq.values())
    assert rows == sum(p.shape[0] for p in model.parameters() if p.dim() == 2)
    assert optimizer.trainable_state_bytes(model) == trainable_bytes(model) \
        + optimizer.peak_gradient_bytes + 4 * (rows + cols + vectors)


# ---------------------------------------------------------------------------- export


def _tiny_run(method: str, out: Path) -> Path:
    train = TrainParams(max_steps=3, batch_size=4, eval_every=3, max_new_tokens=4,
                        forgetting_samples=0, eval_batch_size=8, max_seq_length=96,
                        measure_inference=False)
    spec = ExperimentSpec(model="tiny-llama", task="arith", method=method, train=train,
                          task_options={"n_train": 12, "n_valid": 4, "n_test": 4})
    outcome = run_experiment(spec, out, progress=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    return outcome.path


@pytest.mark.parametrize("method, exported", [
    ("freeze", {"model.layers.0", "model.layers.1"}),  # 2 trainable layers: all of them
    ("galore", {"model.layers.0", "model.layers.1"}),
])
def test_export_to_lora_factorizes_trained_minus_base(method: str, exported: set[str],
                                                      tmp_path: Path) -> None:
    """The SVD export of trained − base takes these runs like full fine-tuning's: the block
    linear layers become LoRA factors; the result file's memory breakdown has the technique's
    own trainable state."""
    from peftbench import export as ex

    result = _tiny_run(method, tmp_path / "run")
    info = json.loads(result.read_text())["train_info"]
    assert info["memory_trainable_state"] == info["state_bytes"] > 0
    with ex.one_thread():
        report = ex.export_lora(result, tmp_path / "out", 8, progress=False)
    assert report.layers and {layer["name"].rsplit(".", 2)[0] for layer in report.layers} \
        == exported
    assert 0 <= report.mean_relative_error < 1 and report.vllm["compatible"]
