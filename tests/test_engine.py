"""The engine end to end on tiny models: result layout, measurements, failures, atomicity."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from peftbench.engine import experiment, train
from peftbench.engine.experiment import run_experiment
from peftbench.engine.results import atomic_write_json, read_result, summarize
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError

ARITH_SMALL = {"n_train": 48, "n_valid": 8, "n_test": 8}


def tiny_spec(**overrides) -> ExperimentSpec:
    train_fields = {"max_steps": 6, "batch_size": 4, "eval_every": 3, "max_new_tokens": 8,
                    "forgetting_samples": 0, "eval_batch_size": 8, "max_seq_length": 128}
    train_fields.update(overrides.pop("train", {}))
    fields = {"model": "tiny-llama", "task": "arith", "task_options": dict(ARITH_SMALL),
              "method": "lora", "train": TrainParams(**train_fields)}
    fields.update(overrides)
    return ExperimentSpec(**fields)


@pytest.fixture
def wikitext(shared_data: Path) -> str:
    return str(shared_data / "wikitext-2")


def test_run_writes_a_complete_result_in_the_peft_suite_layout(tmp_path, wikitext):
    spec = tiny_spec(general_text=wikitext, train={"forgetting_samples": 4})
    outcome = run_experiment(spec, tmp_path, progress=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    data = read_result(outcome.path)
    assert set(data) == {"run_info", "train_info", "meta_info"}
    info = data["train_info"]
    assert info["status"] == "success"
    # validation at steps 3 and 6, then the final test entry
    assert [m["step"] for m in info["metrics"]] == [3, 6, 6]
    assert "valid accuracy" in info["metrics"][0] and "test accuracy" in info["metrics"][-1]
    items = info["test_items"]  # the score is the share of test items answered right
    assert len(items) == ARITH_SMALL["n_test"] and set(items) <= {0, 1}
    assert info["test_score"] == sum(items) / len(items) == info["metrics"][-1]["test accuracy"]
    assert info["num_trainable_params"] > 0
    assert info["num_total_params"] > info["num_trainable_params"]
    assert info["file_size"] > 0 and Path(data["run_info"]["peftbench"]["adapter_path"]).is_dir()
    assert info["train_time"] > 0 and info["tokens_per_sec"] > 0 and info["train_tokens"] > 0
    assert info["cpu_peak_rss"] > 10 * 2**20 and info["peak_memory"] == info["train_memory"]
    assert info["train_memory"] == (info["memory_frozen_weights"] + info["memory_trainable_state"]
                                    + info["memory_activations"])
    assert info["memory_activations"] > 0 and info["train_peak_rss"] <= info["cpu_peak_rss"]
    assert math.isfinite(info["forgetting"]) and info["base_general_loss"] > 0
    assert info["inference_slowdown"] > 0 and info["mergeable"] is True
    assert data["run_info"]["peftbench"]["spec_hash"] == spec.content_hash()
    assert data["run_info"]["peft_config"]["peft_type"] == "LORA"
    assert data["meta_info"]["package_info"]["torch-version"] == torch.__version__.split("+")[0] \
        or data["meta_info"]["package_info"]["torch-version"].startswith(torch.__version__[:4])
    assert data["meta_info"]["system_info"]["cpu_count"] >= 1
    # the result alone reproduces the spec
    assert ExperimentSpec(**data["run_info"]["peftbench"]["spec"]) == spec
    summary = summarize(data, str(outcome.path))
    assert summary.ok and summary.method == "lora" and summary.test_score == info["test_score"]


def test_state_bytes_counts_params_grads_and_adam_moments(tmp_path):
    outcome = run_experiment(tiny_spec(train={"forgetting_samples": 0}), tmp_path,
                             progress=False, save_adapter=False)
    info = outcome.result["train_info"]
    # fp32 parameters, gradients and AdamW's two moments: 4 tensors of 4 bytes per parameter
    # (plus AdamW's scalar step counters, 4 bytes each)
    n = info["num_trainable_params"]
    assert 16 * n <= info["state_bytes"] <= 16 * n + 8 * 64


def test_same_seed_same_losses_and_different_seed_differs(tmp_path):
    def losses(seed: int, out: Path) -> list[float]:
        spec = tiny_spec(train={"seed": seed, "forgetting_samples": 0, "measure_inference": False})
        info = run_experiment(spec, out, progress=False, save_adapter=False).result["train_info"]
        return [m["train loss"] for m in info["metrics"]]

    a, b = losses(0, tmp_path / "a"), losses(0, tmp_path / "b")
    c = losses(1, tmp_path / "c")
    assert a == b
    assert a != c


def test_encoder_classification_on_sst2(tmp_path, shared_data):
    spec = ExperimentSpec(
        model="tiny-bert", task="sst2",
        task_options={"data": str(shared_data / "sst2"), "n_train": 64, "n_valid": 16,
                      "n_test": 16},
        method="lora", train=TrainParams(max_steps=4, batch_size=8, eval_every=2),
    )
    outcome = run_experiment(spec, tmp_path, progress=False)
    info = outcome.result["train_info"]
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    assert info["forgetting"] is None and info["forgetting_note"] == "not applicable"
    items = info["test_items"]  # the score is the share of test sentences classified right
    assert len(items) == 16 and info["test_score"] == sum(items) / 16
    # the classification head is trained alongside the adapter (PEFT's modules_to_save)
    assert info["num_trainable_params"] > 0


def test_causal_lm_on_a_classification_task(tmp_path, shared_data):
    spec = ExperimentSpec(
        model="tiny-llama", task="sst2",
        task_options={"data": str(shared_data / "sst2"), "n_train": 32, "n_valid": 8,
                      "n_test": 8},
        method="lora", train=TrainParams(max_steps=3, batch_size=4, forgetting_samples=0),
    )
    outcome = run_experiment(spec, tmp_path, progress=False, save_adapter=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]


def test_nan_loss_is_a_failed_result(tmp_path, monkeypatch):
    real = train._optimizer_step

    def poisoned(*args, **kwargs):
        loss, tokens = real(*args, **kwargs)
        return float("nan"), tokens

    monkeypatch.setattr(train, "_optimizer_step", poisoned)
    outcome = run_experiment(tiny_spec(), tmp_path, progress=False)
    info = outcome.result["train_info"]
    assert not outcome.ok and info["status"] == "failed"
    assert "NonFiniteLossError" in outcome.result["run_info"]["error_msg"]
    assert read_result(outcome.path)["train_info"]["status"] == "failed"


def test_exception_and_out_of_memory_are_failed_results(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(train, "_optimizer_step", boom)
    outcome = run_experiment(tiny_spec(), tmp_path / "oom", progress=False)
    assert not outcome.ok
    assert outcome.result["run_info"]["error_msg"].startswith("out of memory")

    def crash(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(train, "_optimizer_step", crash)
    outcome = run_experiment(tiny_spec(), tmp_path / "crash", progress=False)
    assert "RuntimeError: shape mismatch" in outcome.result["run_info"]["error_msg"]


def test_user_errors_are_raised_before_anything_is_written(tmp_path):
    for bad in (tiny_spec(model="no-such-model"), tiny_spec(task="no-such-task"),
                tiny_spec(method="no-such-method"), tiny_spec(adapter_config={"r": "eight"})):
        with pytest.raises(UserError):
            run_experiment(bad, tmp_path, progress=False)
    assert not any(tmp_path.rglob("*.json"))


def test_atomic_write_leaves_old_file_or_none_on_crash(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o644  # readable like any other file

    def interrupted_fsync(fd):  # the new text is written but the writer is killed before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"a": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_forgetting_without_network_is_recorded_not_fatal(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    from peftbench.tasks import general_text

    monkeypatch.setattr(general_text, "load_general_text", offline)
    spec = tiny_spec(train={"forgetting_samples": 4})
    outcome = run_experiment(spec, tmp_path, progress=False, save_adapter=False)
    info = outcome.result["train_info"]
    assert outcome.ok and info["forgetting"] is None
    assert "forgetting not measured" in info["forgetting_note"] or "unavailable" in \
        info["forgetting_note"]


def test_prepare_validates_everything_first(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(experiment, "_train_and_measure", lambda *a: calls.append(a) or {})
    bad = tmp_path / "bad.jsonl"
    good = '{"prompt": "a", "response": "b"}\n'
    bad.write_text(good * 11 + '{"prompt": "c"}\n' + good * 8)
    with pytest.raises(UserError, match="line 12"):
        run_experiment(tiny_spec(task=f"jsonl:{bad}", task_options={}), tmp_path,
                       progress=False)
    assert calls == []


def test_batched_generation_matches_one_by_one_and_cuts_at_stop_strings():
    from peftbench.engine.evaluate import generate
    from peftbench.engine.models import load_model

    loaded = load_model("tiny-llama", seed=3)
    prompts = ["Question: Tom has 12 apples.", "Review: dull", "0123", "The quick brown fox"]
    kwargs = {"max_new_tokens": 12, "device": torch.device("cpu")}
    batched = generate(loaded.model, loaded.tokenizer, prompts, batch_size=4, **kwargs)
    single = generate(loaded.model, loaded.tokenizer, prompts, batch_size=1, **kwargs)
    assert batched == single
    assert any(batched)
    stop = batched[0][3:5]
    cut = generate(loaded.model, loaded.tokenizer, prompts[:1], batch_size=1,
                   stop_strings=[stop], **kwargs)
    assert cut[0] == batched[0][: batched[0].find(stop)]


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning"])
def test_forgetting_probe_with_virtual_tokens(tmp_path, wikitext, method):
    """Prompt-based techniques prepend virtual tokens to the logits; the probe scores only
    the text's own positions."""
    spec = tiny_spec(method=method, general_text=wikitext,
                     train={"forgetting_samples": 4, "eval_base": True})
    outcome = run_experiment(spec, tmp_path, progress=False)
    info = outcome.result["train_info"]
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    assert math.isfinite(info["forgetting"])
    base = info["base_test_items"]  # the base model scored on the same test items
    assert len(base) == len(info["test_items"])
    assert info["base_test_score"] == sum(base) / len(base)


def test_per_item_outcomes_and_a_loss_curve_round_trip(tmp_path):
    spec = tiny_spec(train={"max_steps": 24, "eval_every": 24, "measure_inference": False,
                            "eval_base": True})
    outcome = run_experiment(spec, tmp_path, progress=False, save_adapter=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    info = read_result(outcome.path)["train_info"]
    items = info["test_items"]
    assert len(items) == ARITH_SMALL["n_test"] and set(items) <= {0, 1}
    assert sum(items) / len(items) == pytest.approx(info["test_score"])
    assert len(info["base_test_items"]) == len(items)
    run = summarize(read_result(outcome.path), str(outcome.path))
    assert run.test_items == items and run.items_fingerprint == info["test_items_fingerprint"]
    # one validation only, yet the curve has a point per step
    assert len(info["metrics"]) == 2 and len(run.train_loss_curve) == 24
    assert [step for step, _ in run.train_loss_curve] == list(range(1, 25))
    again = run_experiment(tiny_spec(train={"seed": 1, "max_steps": 1, "eval_every": 1,
                                                    "measure_inference": False}),
                           tmp_path / "other", progress=False, save_adapter=False)
    # same test items (the task's seed, not the run's): pairable
    assert again.result["train_info"]["test_items_fingerprint"] == run.items_fingerprint


def test_base_model_figures_are_measured_once_per_folder_and_reused(tmp_path, wikitext):
    train = {"max_steps": 2, "eval_every": 2, "eval_base": True, "forgetting_samples": 4,
             "measure_inference": False}
    first = run_experiment(tiny_spec(general_text=wikitext, train=train), tmp_path,
                           progress=False, save_adapter=False).result["train_info"]
    ia3 = tiny_spec(general_text=wikitext, method="ia3", train=train)
    second = run_experiment(ia3, tmp_path, progress=False, save_adapter=False)
    fresh = run_experiment(ia3, tmp_path / "fresh", progress=False, save_adapter=False)
    reused, measured = second.result["train_info"], fresh.result["train_info"]
    assert first["base_probes"] == "measured" and reused["base_probes"] == "reused"
    assert measured["base_probes"] == "measured"
    # reusing changes nothing the run measures
    for key in ("base_test_items", "base_general_loss", "test_items", "forgetting",
                "train_loss_curve", "data_order"):
        assert reused[key] == measured[key], key
    # a different seed is a different base model for tiny random models: measured again
    other = tiny_spec(general_text=wikitext, train={**train, "seed": 7})
    again = run_experiment(other, tmp_path, progress=False, save_adapter=False)
    assert again.result["train_info"]["base_probes"] == "measured"


def test_counts_are_taken_after_the_optimizer_freezes_what_it_does_not_train(tmp_path):
    """LoRA-FA's optimizer freezes the A matrices: half of LoRA's trainable parameters here."""
    train = {"max_steps": 1, "eval_every": 1, "measure_inference": False}
    lora = run_experiment(tiny_spec(train=train), tmp_path / "lora", progress=False,
                          save_adapter=False).result["train_info"]
    fa = run_experiment(tiny_spec(method="lora_fa", train=train), tmp_path / "fa",
                        progress=False, save_adapter=False).result["train_info"]
    assert lora["num_trainable_params"] == 14_336 and fa["num_trainable_params"] == 6_144
    # fp32 trainable parameters, their gradients and AdamW's two moments
    assert fa["memory_trainable_state"] == 4 * 4 * 6_144
