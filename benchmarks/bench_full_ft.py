"""An adapter, or full fine-tuning that fits in the same memory? The memory-efficient
full-parameter techniques (GaLore, APOLLO, BAdam, Adam-mini, LOMO, freeze tuning) beside LoRA,
QLoRA, LoRA-FA and plain full fine-tuning, on SmolLM2-135M and arith.

Every technique trains the same steps on the same batches (each run in its own worker process,
as in a tournament), at its catalog default learning rate, and is scored on the same test
problems. Printed side by side, each as a ratio to full fine-tuning: the training phase's
memory and its breakdown (frozen weights, trainable state — parameters, gradients, optimizer
state —, activations), the test score with its interval, tokens/s and the checkpoint as
shipped; then where each lands on the memory-vs-score frontier (★ frontier, ☆ within the noise
of it, · dominated), by the analysis the tournament uses.

Writes every figure to ``docs/bench_full_ft.json``; ``scripts/gen_readme_tables.py`` makes the
README's table from it. Sized for about 15 minutes on two busy cores:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_full_ft.py [--steps 6] [--n-test 24]
        [--methods lora,galore,...] [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "docs" / "bench_full_ft.json"
TECHNIQUES = ("lora", "qlora", "lora_fa", "galore", "galore_layerwise", "apollo", "badam",
              "adam_mini", "lomo", "freeze", "full")
FIELDS = ("test_score", "train_memory", "memory_frozen_weights", "memory_trainable_state",
          "memory_activations", "train_rss_increase", "tokens_per_sec", "file_size",
          "num_trainable_params", "train_time", "base_test_score")


def spec_for(method: str, steps: int, n_test: int) -> object:
    """The run of ``method``: its default learning rate, the shared budget."""
    from peftbench.engine.spec import ExperimentSpec, TrainParams

    train = TrainParams(max_steps=steps, eval_every=steps, batch_size=8, forgetting_samples=0,
                        measure_inference=False, max_new_tokens=16, eval_batch_size=20)
    return ExperimentSpec(model="smollm2-135m", task="arith", method=method, train=train,
                          task_options={"difficulty": 2, "n_valid": 4, "n_test": n_test})


def run_all(methods: list[str], steps: int, n_test: int, work: Path) -> dict[str, dict]:
    """Each technique's result figures (a failed run records its error)."""
    from peftbench.tournament.executors import LocalExecutor

    executor = LocalExecutor(jobs=1)
    out: dict[str, dict] = {}
    for method in methods:
        started = time.perf_counter()
        record = list(executor.run([spec_for(method, steps, n_test)], work / method,
                                   save_adapter=True))[0]
        shutil.rmtree(work / method / "adapters", ignore_errors=True)  # sized; not kept
        info = record.train_info
        out[method] = {"status": record.status, "error": record.error,
                       "wall_seconds": time.perf_counter() - started,
                       "lr": _default_lr(method),
                       **{name: info.get(name) for name in FIELDS}}
        print(f"  {method:<17} {record.status:<8} {out[method]['wall_seconds']:6.1f} s",
              flush=True)
    return out


def _default_lr(method: str) -> float:
    from peftbench.methods import get_method

    return get_method(method).default_lr


def frontier(work: Path) -> dict[str, dict]:
    """Each technique's place on the memory-vs-score frontier, its score interval (from the
    test items), by the tournament's analysis."""
    from peftbench import analysis as an

    runs = [r for r in an.load_results([work]).runs if r.ok]
    aggs = [a for a in an.aggregate(runs, level="technique") if a.n]
    specs = [an.parse_metric_spec("peak_memory"), an.parse_metric_spec("test_score")]
    out = {}
    for agg, status in zip(aggs, an.frontier_status(aggs, specs), strict=True):
        low, high = agg.interval("test_score") or (None, None)
        out[agg.technique] = {"frontier": status, "low": low, "high": high,
                              "peak_memory": agg.value("peak_memory")}
    return out


def ratios(figures: dict[str, dict], reference: str = "full") -> None:
    """Print each technique's figures and their ratio to ``reference``'s."""
    ref = figures.get(reference) or {}
    print(f"\n{'technique':<17} {'score':>6} {'train memory':>14} {'÷ full':>7} "
          f"{'trainable state':>16} {'÷ full':>7} {'tokens/s':>9} {'÷ full':>7} "
          f"{'checkpoint':>11}")
    for name, f in figures.items():
        if f["status"] != "success":
            print(f"{name:<17} failed: {f['error']}")
            continue
        print(f"{name:<17} {f['test_score']:6.3f} {_mib(f['train_memory']):>14} "
              f"{_ratio(f, ref, 'train_memory'):>7} {_mib(f['memory_trainable_state']):>16} "
              f"{_ratio(f, ref, 'memory_trainable_state'):>7} {f['tokens_per_sec']:9.0f} "
              f"{_ratio(f, ref, 'tokens_per_sec'):>7} {_mib(f['file_size']):>11}")


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.1f} MiB"


def _ratio(figures: dict, reference: dict, key: str) -> str:
    a, b = figures.get(key), reference.get(key)
    return f"{a / b:.3f}" if a is not None and b else "—"


def main() -> None:
    """Run every technique, print the side-by-side figures, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--n-test", type=int, default=24)
    ap.add_argument("--methods", default=",".join(TECHNIQUES))
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-full-ft-"))
    started = time.perf_counter()
    print(f"{len(methods)} techniques, {args.steps} steps, {args.n_test} test problems "
          f"(runs in {work})", flush=True)
    figures = run_all(methods, args.steps, args.n_test, work)
    place = frontier(work)
    for name, f in figures.items():
        f.update(place.get(name, {}))
    ratios(figures)
    print("\nmemory-vs-score frontier: " + ", ".join(
        f"{name} {_mark(f.get('frontier'))}" for name, f in figures.items()))
    data = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model": "smollm2-135m", "task": "arith (difficulty 2)", "steps": args.steps,
            "batch_size": 8, "n_test": args.n_test, "learning_rates": "catalog defaults",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(),
            "seconds": time.perf_counter() - started, "techniques": figures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {args.out} ({data['seconds'] / 60:.1f} min)")


def _mark(place: str | None) -> str:
    return {"frontier": "★", "within noise": "☆", "dominated": "·"}.get(place or "", "?")


if __name__ == "__main__":
    main()
