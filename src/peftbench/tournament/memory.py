"""The memory-only tournament: which techniques fit on this hardware for this model, and how
fast each trains, before any tuning.

    plan (techniques) ─ one cost-only run each: a few steps at the technique's default rate,
        no validation, test or probes ─ per technique: peak memory and its breakdown, step
        time and tokens/s (steady state: the first step left out), checkpoint size, trainable
        parameters ─ ``memory.json`` in the folder

With ``--model config:…`` the model has random weights, so this is the only kind of tournament
that means something: it answers "which techniques fit on my GPU for this model?" without
downloading any weights. Runs are named by their spec's hash as in any tournament, so the same
command again resumes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from peftbench.engine.results import STATUS_SUCCESS, atomic_write_json
from peftbench.engine.spec import ExperimentSpec
from peftbench.tournament.executors import RunRecord
from peftbench.tournament.outcome import TournamentOutcome
from peftbench.tournament.plan import TournamentConfig
from peftbench.tournament.runner import Tournament
from peftbench.tournament.storage import FolderLock, remove_leftovers

#: optimizer steps of each technique's run unless told otherwise: the first one (allocations,
#: kernel choice) is left out of the speed, the others give its median
MEMORY_STEPS = 4
MEMORY_STAGE = "memory"


def memory_spec(cfg: TournamentConfig, method: str) -> ExperimentSpec:
    """A technique's cost-only run: the tournament's training parameters at the technique's
    default rate, no scores, one loss entry per step (for the steady-state speed)."""
    train = cfg.train.model_copy(update={
        "lr": None, "seed": cfg.search_seed, "eval_test": False, "eval_base": False,
        "forgetting_samples": 0, "measure_inference": False, "measure_scores": False,
        "stop_after": None, "eval_every": 1})
    return ExperimentSpec(model=cfg.model, task=cfg.task, task_options=cfg.task_options,
                          method=method, targets=cfg.targets, train=train,
                          name=f"{method}-memory")


class MemoryTournament(Tournament):
    """Runs one cost-only run per technique of a plan (resuming finished ones) and writes
    ``memory.json``; each technique's run is its only "final" run."""

    def run(self) -> TournamentOutcome:
        """Run every technique's cost-only run; returns the records by technique."""
        from peftbench.methods import get_method

        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.out_dir):
            remove_leftovers(self.out_dir)
            specs = [memory_spec(self.cfg, m) for m in self.plan.methods]
            for record in self._execute(MEMORY_STAGE, specs):
                outcome = self.outcomes[record.spec.method]
                outcome.finals.append(record)
                outcome.chosen_lr = get_method(record.spec.method).default_lr
            outcome = TournamentOutcome(self.plan, self.outcomes, self.out_dir,
                                        time.perf_counter() - started, self.notes)
            write_memory_manifest(outcome)
        return outcome

    def _saves(self, stage: str) -> bool:
        return True  # a cost-only run measures its checkpoint's size, then removes the files


def cost_figures(record: RunRecord) -> dict[str, Any]:
    """One run's cost figures: status and error, peak memory (the CUDA allocator's maximum,
    or on CPU the training phase's accounted memory) and its breakdown, the steady-state step
    time and tokens/s, checkpoint size, trainable and total parameters; None where not
    measured."""
    info, view = record.train_info, record.view
    steps = [m for m in view.metrics if isinstance(m.get("train time"), int | float)]
    steady = steps[1:] or steps  # the first step pays one-time costs
    return {
        "method": record.spec.method, "status": record.status, "error": record.error or None,
        "lr": record.spec.train.lr, "steps": len(steps),
        "peak_memory": info.get("peak_memory"),
        "memory_method": info.get("memory_method"),
        "frozen_weights": info.get("memory_frozen_weights"),
        "trainable_state": info.get("memory_trainable_state"),
        "activations": info.get("memory_activations"),
        "train_peak_rss": info.get("train_peak_rss"),
        "cuda_memory_max_reserved": info.get("cuda_memory_max_reserved"),
        "step_seconds": _median([m["train time"] for m in steady]),
        "tokens_per_sec": _median([m["tokens / sec"] for m in steady
                                   if isinstance(m.get("tokens / sec"), int | float)]),
        "file_size": info.get("file_size"),
        "trainable_params": info.get("num_trainable_params"),
        "total_params": info.get("num_total_params"),
        "device": info.get("device"),
        "result": str(record.path),
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def memory_rows(outcome: TournamentOutcome) -> list[dict[str, Any]]:
    """Every technique's cost figures, successful runs by peak memory (lowest first), then
    the failed ones (out of memory is the answer "does not fit")."""
    rows = [cost_figures(r) for t in outcome.techniques.values() for r in t.finals]
    ok = sorted((r for r in rows if r["status"] == STATUS_SUCCESS),
                key=lambda r: (r["peak_memory"] is None, r["peak_memory"] or 0))
    return ok + [r for r in rows if r["status"] != STATUS_SUCCESS]


def device_of(outcome: TournamentOutcome) -> dict[str, Any]:
    """The device the runs trained on (name and memory, from the first result that says)."""
    for tech in outcome.techniques.values():
        for record in tech.finals:
            system = record.view.meta_info.get("system_info") or {}
            if system:
                return {"accelerator": system.get("accelerator"),
                        "accelerator_memory": system.get("accelerator_memory"),
                        "cpu_model": system.get("cpu_model"),
                        "torch_threads": system.get("torch_threads")}
    return {}


def write_memory_manifest(outcome: TournamentOutcome) -> None:
    """``memory.json`` (the config, what did not apply, the device, each technique's cost
    figures) and ``tournament.json`` pointing at it, so that the folder says what it holds."""
    plan = outcome.plan
    data = {"mode": "memory-only", "config": plan.cfg.model_dump(mode="json"),
            "excluded": plan.excluded, "seconds": outcome.seconds,
            "device": device_of(outcome), "techniques": memory_rows(outcome)}
    atomic_write_json(outcome.out_dir / "memory.json", data)
    atomic_write_json(outcome.out_dir / "tournament.json",
                      {"mode": "memory-only", "config": data["config"],
                       "excluded": plan.excluded, "figures": "memory.json"})
