"""Benchmark of the analysis path: read 1,000 result files and draw the Pareto frontier.

Writes N result files of realistic size (half copies of the PEFT suite's published MetaMathQA
results with perturbed measurements, ~15 kB each; half in our layout, 5 seeds per
configuration), then times each stage: loading, pooling seeds, the frontier with noise, and the
Plotly figure serialized as the browser receives it. Prints the stages, the total against the
2 s target, the ratio of the vectorized frontier to a pure-Python pairwise one, and how the
total grows from N/10 to N files.

Run: ``.venv/bin/python benchmarks/bench_analysis.py [--files 1000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from peftbench import analysis as an
from peftbench.analysis.report import pareto_figure
from peftbench.engine.results import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT.parent / "shared" / "reference" / "peft-method-comparison" / "MetaMathQA" / "results"
TARGET_S = 2.0


def write_suite_like(folder: Path, count: int, rng: random.Random) -> None:
    """``count`` copies of the suite's results with perturbed memory and accuracy."""
    sources = sorted(SUITE.glob("*.json"))
    if not sources:
        sys.exit(f"missing {SUITE}: the PEFT suite's reference results are needed")
    templates = [json.loads(p.read_text()) for p in sources]
    folder.mkdir(parents=True)
    for i in range(count):
        data = json.loads(json.dumps(templates[i % len(templates)]))
        data["run_info"]["experiment_name"] += f"-copy{i}"
        data["train_info"]["accelerator_memory_max"] *= rng.uniform(0.8, 1.2)
        data["train_info"]["metrics"][-1]["test accuracy"] = rng.uniform(0.0, 0.6)
        (folder / f"run{i:05d}.json").write_text(json.dumps(data))


def write_ours(folder: Path, count: int, rng: random.Random) -> None:
    """``count`` results in our layout: configurations of 5 seeds each."""
    folder.mkdir(parents=True)
    for i in range(count):
        config, seed = divmod(i, 5)
        spec = {"model": "smollm2-135m", "task": "arith", "method": f"m{config % 40}",
                "adapter_config": {"r": 8 * (1 + config // 40)},
                "train": {"lr": 1e-3, "seed": seed}}
        score = 0.3 + 0.005 * config + rng.gauss(0, 0.01)
        metrics = [{"step": s, "train loss": 1.0 / s, "valid accuracy": score} for s in
                   range(25, 201, 25)]
        metrics.append({"step": 200, "test accuracy": score})
        atomic_write_json(folder / f"r{i:05d}.json", {
            "run_info": {"experiment_name": f"cfg{config}", "peft_config": {"r": 8},
                         "peftbench": {"spec": spec, "spec_hash": f"{i:016x}",
                                       "method": spec["method"], "lr": 1e-3}},
            "train_info": {"status": "success", "metrics": metrics, "test_score": score,
                           "test_metric": "accuracy", "peak_memory": rng.uniform(2e9, 4e9),
                           "train_time": rng.uniform(50, 200), "file_size": 1e6,
                           "num_trainable_params": 10_000},
            "meta_info": {},
        })


def timed_pipeline(folder: Path) -> dict[str, float]:
    """Seconds per stage of: load, aggregate, frontier, figure (as JSON)."""
    specs = [an.parse_metric_spec("peak_memory"), an.parse_metric_spec("test_score")]
    t0 = time.perf_counter()
    results = an.load_results([folder])
    t1 = time.perf_counter()
    groups = {}
    for run in results.runs:
        groups.setdefault((run.task, run.model), []).append(run)
    pooled = {g: an.aggregate(runs) for g, runs in groups.items()}
    t2 = time.perf_counter()
    status = {g: an.frontier_status(points, specs) for g, points in pooled.items()}
    t3 = time.perf_counter()
    for g, points in pooled.items():
        pareto_figure(points, status[g], specs).to_json()
    t4 = time.perf_counter()
    return {"load": t1 - t0, "aggregate": t2 - t1, "frontier": t3 - t2, "figure": t4 - t3,
            "total": t4 - t0, "runs": len(results.runs)}


def python_frontier(points: list[tuple[float, float]]) -> list[bool]:
    """The pairwise dominance check written plainly, for comparison."""
    return [not any(m2 <= m and s2 >= s and (m2 < m or s2 > s) for m2, s2 in points)
            for m, s in points]


def frontier_speedup(n: int, rng: random.Random) -> tuple[float, float]:
    """Seconds of the vectorized and of the pure-Python frontier over ``n`` points."""
    import numpy as np

    # a trade-off: more memory buys more score, so many points sit near the frontier
    pts = [(x, x + rng.gauss(0, 0.01)) for x in (rng.random() for _ in range(n))]
    t0 = time.perf_counter()
    fast = an.non_dominated(np.array(pts), [False, True])
    t1 = time.perf_counter()
    slow = python_frontier(pts)
    t2 = time.perf_counter()
    assert fast.tolist() == slow
    return t1 - t0, t2 - t1


def main() -> None:
    """Build the files, time the pipeline, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for n in (args.files // 10, args.files):
            folder = Path(tmp) / f"n{n}"
            write_suite_like(folder / "MetaMathQA" / "results", n // 2, rng)
            write_ours(folder / "ours", n - n // 2, rng)
            mb = sum(p.stat().st_size for p in folder.rglob("*.json")) / 1e6
            runs = [timed_pipeline(folder) for _ in range(args.repeat)]
            sizes[n] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{n} files ({mb:.1f} MB), median of {args.repeat}:")
            for stage in ("load", "aggregate", "frontier", "figure", "total"):
                print(f"  {stage:<10} {sizes[n][stage] * 1000:8.1f} ms")
        big, small = sizes[args.files], sizes[args.files // 10]
        print(f"total for {args.files} files: {big['total']:.3f} s = "
              f"{big['total'] / TARGET_S:.2f} x the {TARGET_S:.0f} s target")
        print(f"growth {args.files // 10} -> {args.files} files: "
              f"{big['total'] / small['total']:.1f}x time for 10x files")
        print(f"per file: {big['load'] / args.files * 1e3:.3f} ms to read and normalize")
    fast, slow = frontier_speedup(args.files, rng)
    print(f"frontier of {args.files} points: vectorized {fast * 1e3:.1f} ms, pure Python "
          f"{slow * 1e3:.1f} ms ({slow / fast:.0f}x)")


if __name__ == "__main__":
    main()
