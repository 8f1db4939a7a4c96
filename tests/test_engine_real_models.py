"""The engine on the embedded real models (slower: seconds to a minute each)."""

from __future__ import annotations

import pytest

from peftbench.engine.experiment import run_experiment
from peftbench.engine.models import load_model
from peftbench.engine.spec import ExperimentSpec, TrainParams

pytestmark = pytest.mark.slow


def test_smollm2_loads_from_the_cache():
    # the reload's speed (< 2 s on an idle machine) is measured by benchmarks/bench_cli.py
    load_model("smollm2-135m")  # converts once if the cache is cold
    loaded = load_model("smollm2-135m")
    assert loaded.info["num_parameters"] == 134_515_008
    assert loaded.info["source"] == "embedded"


def test_smollm2_lora_on_arith(tmp_path, shared_data):
    spec = ExperimentSpec(
        model="smollm2-135m", task="arith", method="lora",
        task_options={"n_train": 32, "n_valid": 4, "n_test": 8},
        general_text=str(shared_data / "wikitext-2"),
        train=TrainParams(max_steps=3, batch_size=4, eval_batch_size=8, max_new_tokens=24,
                          forgetting_samples=4, eval_base=True),
    )
    outcome = run_experiment(spec, tmp_path, progress=False)
    info = outcome.result["train_info"]
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    assert info["num_total_params"] > 134_000_000
    assert 0 < info["num_trainable_params"] < 0.05 * info["num_total_params"]
    for prefix in ("", "base_"):  # each score is the share of its 8 test items answered right
        items = info[f"{prefix}test_items"]
        assert len(items) == 8 and info[f"{prefix}test_score"] == sum(items) / 8
    # forgetting: the general-text loss's rise over the base model's (a loss of a few nats)
    assert 0 < info["base_general_loss"] < 10 and abs(info["forgetting"]) < 1.0
    # LoRA at r=16 on attention in fp32: a few MB
    assert 1e6 < info["file_size"] < 20e6


def test_minilm_classifies_sst2(tmp_path, shared_data):
    spec = ExperimentSpec(
        model="minilm-l6", task="sst2", method="lora",
        task_options={"data": str(shared_data / "sst2"), "n_train": 256, "n_valid": 32,
                      "n_test": 64},
        train=TrainParams(max_steps=12, batch_size=16, lr=2e-3),
    )
    outcome = run_experiment(spec, tmp_path, progress=False)
    info = outcome.result["train_info"]
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    items = info["test_items"]
    assert info["test_metric"] == "accuracy" and len(items) == 64
    assert info["test_score"] == sum(items) / 64
