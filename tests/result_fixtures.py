"""Builders of result files in our layout (see `peftbench.engine.results`), for analysis tests.

Our engine's real results do not exist yet in tests; these files follow the documented layout:
``run_info.peftbench = {spec, spec_hash, method, lr}`` and ``train_info`` with our extra fields.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from peftbench.engine.results import atomic_write_json, result_filename

#: technique -> (lr, mean test score, peak memory GB, train time s, checkpoint MB, params)
OUR_TECHNIQUES: dict[str, tuple[float, float, float, float, float, int]] = {
    "lora": (1e-3, 0.60, 3.0, 100.0, 5.0, 400_000),
    "ia3": (5e-3, 0.50, 2.5, 90.0, 0.5, 40_000),
    "prefix_tuning": (5e-3, 0.30, 2.6, 95.0, 1.0, 100_000),
    "full": (1e-5, 0.62, 6.0, 150.0, 500.0, 135_000_000),
    "loha": (1e-3, 0.59, 3.05, 120.0, 8.0, 800_000),
}


def our_result(method: str, lr: float, seed: int, test_score: float, peak_gb: float,
               train_time: float = 100.0, file_mb: float = 5.0, params: int = 1000,
               status: str = "success", model: str = "smollm2-135m", task: str = "arith",
               valid_score: float | None = None, rank: int = 16) -> dict[str, Any]:
    """One result dict in our layout."""
    spec = {"model": model, "task": task, "task_options": {}, "method": method,
            "adapter_config": {"r": rank}, "targets": None, "name": None,
            "train": {"max_steps": 40, "batch_size": 8, "lr": lr, "seed": seed}}
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    valid = test_score - 0.01 if valid_score is None else valid_score
    ok = status == "success"
    metrics = [{"step": s, "train loss": 2.0 / s, "valid accuracy": valid * s / 40}
               for s in (10, 20, 30, 40)]
    if ok:
        metrics.append({"step": 40, "test accuracy": test_score, "train loss": 0.05})
    train_info: dict[str, Any] = {
        "status": status, "metrics": metrics if ok else metrics[:1],
        "num_trainable_params": params, "num_total_params": 135_000_000,
    }
    if ok:
        train_info.update({
            "test_score": test_score, "test_metric": "accuracy", "valid_score": valid,
            "peak_memory": peak_gb * 1e9, "train_time": train_time, "file_size": file_mb * 1e6,
            "forgetting": 0.05, "tokens_per_sec": 1000.0, "total_time": train_time + 20,
        })
    return {
        "run_info": {
            "created_at": "2026-01-01T00:00:00+00:00",
            "experiment_name": f"{method}--{model}--{task}",
            "error_msg": "" if ok else "CUDA out of memory",
            "peft_config": {"peft_type": method.upper(), "r": rank},
            "train_config": {},
            "peftbench": {"spec": spec, "spec_hash": spec_hash, "method": method, "lr": lr},
        },
        "train_info": train_info,
        "meta_info": {"package_info": {}, "system_info": {}},
    }


def seed_noise(seed: int) -> float:
    """A small deterministic offset per seed (mean zero over seeds 0, 1, 2)."""
    return (-0.01, 0.0, 0.01)[seed % 3]


def write_our_results(folder: Path, seeds: int = 3, failed: bool = True,
                      unreadable: bool = True) -> Path:
    """A small tournament in our layout: five techniques × ``seeds`` seeds, plus a second
    learning rate for LoRA, one failed run and (optionally) one truncated file."""
    folder.mkdir(parents=True, exist_ok=True)
    for method, (lr, score, mem, time, mb, params) in OUR_TECHNIQUES.items():
        for seed in range(seeds):
            data = our_result(method, lr, seed, score + seed_noise(seed), mem + 0.01 * seed,
                              time, mb, params)
            _write(folder, data)
    for seed in range(seeds):
        _write(folder, our_result("lora", 1e-4, seed, 0.40 + seed_noise(seed), 3.0,
                                  valid_score=0.39))
    if failed:
        _write(folder, our_result("vera", 1e-3, 0, 0.0, 0.0, status="failed"))
    if unreadable:
        (folder / "truncated--0000.json").write_text('{"run_info": {')
    return folder


def write_glue_results(folder: Path) -> Path:
    """LoRA on every GLUE task, IA3 on MRPC and RTE only, each task's official metrics."""
    from peftbench.analysis import SUITES

    for method, tasks in (("lora", None), ("ia3", ("mrpc", "rte"))):
        for component, parts in SUITES["glue"].items():
            if tasks is not None and component not in tasks:
                continue
            for task in dict.fromkeys(t for t, _ in parts):
                score = 0.7 if method == "lora" else 0.8
                data = our_result(method, 1e-3, 1, score, 1.0, task=task)
                final = data["train_info"]["metrics"][-1]
                final.pop("test accuracy")
                final.update({f"test {metric}": score for t, metric in parts if t == task})
                data["run_info"]["peftbench"]["spec_hash"] += task  # one file per task
                _write(folder / task.partition(":")[2], data)
    return folder


def _write(folder: Path, data: dict[str, Any]) -> None:
    ours = data["run_info"]["peftbench"]
    name = f"{ours['method']}-lr{ours['lr']:g}-seed{ours['spec']['train']['seed']}"
    atomic_write_json(folder / result_filename(name, ours["spec_hash"]), data)


CAPABILITIES = {
    "lora": {"merge": True, "multi_adapter": True, "layers": ["Linear", "Conv", "Embedding"],
             "quantized": ["bnb-4bit", "bnb-8bit"], "lora_convertible": True,
             "prompt_only": False},
    "ia3": {"merge": True, "multi_adapter": True, "layers": ["Linear", "Conv"],
            "quantized": ["bnb-4bit"], "lora_convertible": False, "prompt_only": False},
    "loha": {"merge": True, "multi_adapter": True, "layers": ["Linear", "Conv"],
             "quantized": [], "lora_convertible": True, "prompt_only": False},
    "prefix_tuning": {"merge": False, "multi_adapter": False, "layers": [], "quantized": [
        "bnb-4bit"], "lora_convertible": False, "prompt_only": True},
    "miss": {"merge": True, "multi_adapter": True, "layers": ["Linear"], "quantized": [],
             "lora_convertible": True, "prompt_only": False},
}


def fake_capabilities(name: str) -> dict[str, Any]:
    """A stand-in for `peftbench.methods.capabilities` with a few techniques."""
    from peftbench.errors import UserError

    if name not in CAPABILITIES:
        raise UserError(f"unknown method '{name}'")
    return CAPABILITIES[name]


def suite_memory_accuracy_frontier(folder: Path, memory_tie: float = 0.0) -> set[str]:
    """Experiment names on the frontier of peak memory (lower better) vs test accuracy
    (higher better), computed from the raw JSON by comparing every pair of runs.

    With ``memory_tie`` > 0, memories within that relative distance count as equal (the
    published files carry one seed and no per-item outcomes, so every score difference
    counts)."""
    points = {}
    for file in folder.glob("*.json"):
        data = json.loads(file.read_text())
        final = data["train_info"]["metrics"][-1]
        points[data["run_info"]["experiment_name"]] = (
            data["train_info"]["accelerator_memory_max"], final["test accuracy"])
    front = set()
    for name, (mem, score) in points.items():
        def equal(a: float, b: float) -> bool:
            return abs(a - b) <= memory_tie * max(a, b)

        beaten = any((m2 <= mem or equal(m2, mem)) and s2 >= score
                     and ((m2 < mem and not equal(m2, mem)) or s2 > score)
                     for other, (m2, s2) in points.items() if other != name)
        if not beaten:
            front.add(name)
    return front
