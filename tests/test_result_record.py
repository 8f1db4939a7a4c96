"""The result file's layout, built through the real paths on a tiny model: the keys (and their
order, which is part of the file's bytes) of a successful run, a run that crashed in training,
and a result written for a run that could not write its own. The expected keys were recorded
from files written before the layout got its one typed builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftbench.engine import train
from peftbench.engine.experiment import run_experiment
from peftbench.engine.record import ResultView
from peftbench.engine.results import read_result
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.tournament.executors.base import record_failure, result_path

RUN_INFO = ["created_at", "total_time", "experiment_name", "train_config", "peft_config",
            "error_msg", "peftbench"]
PEFTBENCH = ["spec", "spec_hash", "method", "lr", "adapter_path", "inputs"]
TRAIN_CONFIG = ["model_id", "dtype", "max_seq_length", "batch_size", "batch_size_eval",
                "max_steps", "eval_steps", "seed", "grad_norm_clip", "optimizer_type",
                "optimizer_kwargs", "lr_scheduler", "use_amp", "generation_kwargs",
                "gradient_accumulation_steps", "warmup_steps", "task", "task_options"]
TRAIN_INFO = [
    "accelerator_memory_reserved_avg", "accelerator_memory_max",
    "accelerator_memory_reserved_99th", "train_time", "file_size", "num_trainable_params",
    "num_total_params", "status", "metrics", "test_score", "base_test_score", "valid_score",
    "peak_memory", "cuda_memory_max_allocated", "cuda_memory_max_reserved", "cpu_peak_rss",
    "state_bytes", "tokens_per_sec", "forgetting", "base_general_loss", "mergeable",
    "inference_slowdown", "train_tokens", "device", "autocast_dtype", "data_order",
    "train_peak_rss", "train_rss_increase", "train_memory", "memory_frozen_weights",
    "memory_trainable_state", "memory_activations", "memory_method", "test_items",
    "base_test_items", "base_probes", "phase_seconds", "train_loss_curve",
    "test_items_fingerprint",
    "test_metric", "total_time", "param_bytes", "forgetting_note", "test_answers",
    "scores_note"]
VALIDATION_ENTRY = ["step", "train loss", "train samples", "train time", "tokens / sec",
                    "valid accuracy", "eval time", "elapsed time"]
FINAL_ENTRY = ["step", "test accuracy", "train loss", "train samples", "train total tokens",
               "forgetting"]
META_INFO = ["model_info", "dataset_info", "package_info", "system_info", "pytorch_info"]


def tiny_spec(**train_fields) -> ExperimentSpec:
    fields = {"max_steps": 2, "batch_size": 4, "eval_every": 1, "max_new_tokens": 4,
              "forgetting_samples": 0, "eval_batch_size": 8, "max_seq_length": 64,
              "eval_base": True, **train_fields}
    return ExperimentSpec(model="tiny-llama", task="arith",
                          task_options={"n_train": 16, "n_valid": 4, "n_test": 4},
                          method="lora", train=TrainParams(**fields))


def assert_run_info(data: dict, train_config: list[str]) -> None:
    assert list(data) == ["run_info", "train_info", "meta_info"]
    assert list(data["run_info"]) == RUN_INFO
    assert list(data["run_info"]["peftbench"]) == PEFTBENCH
    assert list(data["run_info"]["train_config"]) == train_config


def test_a_successful_run_writes_the_recorded_layout(tmp_path: Path):
    outcome = run_experiment(tiny_spec(), tmp_path, progress=False)
    assert outcome.ok
    data = read_result(outcome.path)
    assert_run_info(data, TRAIN_CONFIG)
    info = data["train_info"]
    assert list(info) == TRAIN_INFO
    assert [list(m) for m in info["metrics"]] == [VALIDATION_ENTRY] * 2 + [FINAL_ENTRY]
    assert list(data["meta_info"]) == META_INFO
    assert info["metrics"][-1]["train loss"] == info["train_loss_curve"][-1][1]
    assert info["base_probes"] == "measured" and info["test_items_fingerprint"]
    view = ResultView(data)
    assert view.status == "success" and view.error == "" and outcome.error == ""
    assert view.spec_hash == tiny_spec().content_hash() and view.spec_data["method"] == "lora"
    assert Path(view.adapter_path).is_dir()
    assert view.final_train_loss == info["train_loss_curve"][-1][1]
    assert view.valid_score == info["valid_score"] and view.test_score == info["test_score"]
    assert view.dataset_sizes == {"train": 16, "validation": 4, "test": 4}
    assert view.eval_seconds == sum(m.get("eval time", 0.0) for m in info["metrics"])


def test_the_view_reads_a_peft_suite_file(peft_reference: Path):
    path = next((peft_reference / "MetaMathQA" / "results").glob("lora--*.json"))
    view = ResultView(read_result(path))
    last = view.train_info["metrics"][-1]
    assert view.status == "success" and view.spec_hash is None and view.spec_data is None
    assert view.final_train_loss == last["train loss"]  # no curve: the last metrics entry
    assert view.adapter_path is None and view.test_score is None


def test_a_search_run_has_no_final_entry(tmp_path: Path):
    outcome = run_experiment(tiny_spec(eval_test=False, eval_base=False,
                                       measure_inference=False), tmp_path, progress=False,
                             save_adapter=False)
    info = outcome.result["train_info"]
    assert list(info) == TRAIN_INFO
    assert [list(m) for m in info["metrics"]] == [VALIDATION_ENTRY] * 2
    assert info["test_score"] is None and info["file_size"] is None
    assert outcome.result["run_info"]["peftbench"]["adapter_path"] is None


def test_a_crash_in_training_keeps_the_layout_without_measurements(tmp_path: Path,
                                                                  monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(train, "_optimizer_step", crash)
    outcome = run_experiment(tiny_spec(), tmp_path, progress=False)
    data = outcome.result
    assert_run_info(data, TRAIN_CONFIG)
    info = data["train_info"]
    assert list(info) == TRAIN_INFO and info["metrics"] == [] and info["status"] == "failed"
    assert all(info[k] is None for k in ("num_trainable_params", "device", "peak_memory",
                                         "base_test_score", "test_items"))
    assert info["train_loss_curve"] == [] and info["test_metric"] == "accuracy"
    assert data["run_info"]["train_config"]["dtype"] == "float32"
    assert data["run_info"]["peftbench"]["lr"] is None
    assert data["run_info"]["peft_config"] == {"method": "lora"}
    assert "RuntimeError: shape mismatch" in data["run_info"]["error_msg"]
    assert ResultView(data).error == data["run_info"]["error_msg"] == outcome.error
    assert ResultView(data).final_train_loss is None
    assert list(data["meta_info"]) == META_INFO


@pytest.mark.parametrize("status", ["timeout", "failed"])
def test_a_result_written_for_a_run_is_the_short_layout(tmp_path: Path, status: str):
    spec = tiny_spec(lr=0.01)
    record = record_failure(spec, result_path(spec, tmp_path), status, "killed", 4.5)
    data = read_result(record.path)
    assert_run_info(data, ["model_id", "seed", "optimizer_kwargs", "max_steps", "task"])
    assert data["train_info"] == {"status": status, "metrics": [], "total_time": 4.5}
    assert list(data["meta_info"]) == ["package_info"]
    assert data["run_info"]["peftbench"] == {
        "spec": spec.model_dump(mode="json"), "spec_hash": spec.content_hash(),
        "method": "lora", "lr": 0.01, "adapter_path": None, "inputs": []}
    assert data["run_info"]["train_config"]["optimizer_kwargs"] == {"lr": 0.01}
    assert data["run_info"]["error_msg"] == "killed" and data["run_info"]["total_time"] == 4.5
