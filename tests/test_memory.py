"""The training phase's own memory: the peak counter reset at training start, the accounted
breakdown, and its repeatability (tiny models)."""

from __future__ import annotations

import sys

import pytest
import torch
from test_engine import tiny_spec

from peftbench.engine.experiment import run_experiment
from peftbench.engine.measure import MemoryTracker, SavedTensorMeter, reset_peak_rss
from peftbench.engine.models import load_model
from peftbench.engine.record import MemoryFigures

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="clear_refs/VmHWM are Linux's")


def _training_peak(allocate_mb: int) -> MemoryFigures:
    tracker = MemoryTracker(torch.device("cpu"))
    tracker.reset()
    block = torch.ones(allocate_mb * 2**20 // 4)  # touched: resident
    tracker.sample()
    del block
    return tracker.report(param_bytes=0, trainable_bytes=0, state_bytes=0, activation_bytes=0)


@linux_only
def test_a_phase_that_allocates_more_shows_a_larger_training_peak() -> None:
    assert reset_peak_rss()
    small, large = _training_peak(16), _training_peak(256)
    assert small.memory_method == "clear_refs"
    # the peak counter was reset at each start: the earlier, larger block does not linger
    assert large.train_rss_increase >= 250 * 2**20
    assert small.train_rss_increase < 100 * 2**20
    assert large.train_peak_rss > small.train_peak_rss


@linux_only
def test_validation_is_left_out_of_the_training_peak() -> None:
    tracker = MemoryTracker(torch.device("cpu"))
    tracker.reset()
    tracker.sample()
    with tracker.paused():
        block = torch.ones(256 * 2**18)  # 256 MiB during "validation"
        del block
    report = tracker.report(param_bytes=0, trainable_bytes=0, state_bytes=0, activation_bytes=0)
    assert report.train_rss_increase < 100 * 2**20


def test_saved_tensor_meter_counts_activations_in_proportion_to_the_batch() -> None:
    model = load_model("tiny-llama", "causal-lm", seed=0).model
    meter = SavedTensorMeter(model)
    sizes = []
    for batch in (2, 4):
        ids = torch.randint(0, 300, (batch, 64))
        meter.peak = 0
        with meter.micro_batch():
            model(input_ids=ids, labels=ids).loss.backward()
        sizes.append(meter.peak)
    assert sizes[0] > 0 and sizes[1] == pytest.approx(2 * sizes[0], rel=0.1)


def test_accounted_memory_repeats_exactly_and_full_fine_tuning_shows_its_optimizer(
        tmp_path) -> None:
    train = {"max_steps": 3, "eval_every": 3, "measure_inference": False}
    first = run_experiment(tiny_spec(train=train), tmp_path / "a", progress=False,
                           save_adapter=False).result["train_info"]
    again = run_experiment(tiny_spec(train=train), tmp_path / "b", progress=False,
                           save_adapter=False).result["train_info"]
    assert first["train_memory"] == again["train_memory"] == first["peak_memory"]
    full = run_experiment(tiny_spec(method="full", train={**train, "lr": 1e-4}),
                          tmp_path / "c", progress=False, save_adapter=False)
    info = full.result["train_info"]
    assert full.ok, full.result["run_info"]["error_msg"]
    # AdamW: parameters + gradients + two moments, all fp32
    assert info["memory_trainable_state"] >= 4 * 4 * info["num_trainable_params"]
    assert info["memory_frozen_weights"] < first["memory_frozen_weights"]
    assert info["train_memory"] > first["train_memory"]
