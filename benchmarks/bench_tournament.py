"""The tournament's own cost: scheduler overhead per run, and what successive halving saves.

1. Overhead: the same specs run (a) by a tournament's local executor and (b) by hand, one
   `peftbench run --spec FILE` command after another; interleaved, wall seconds per run side
   by side and the ratio.
2. Halving: one technique's rate search on a learnable classification task with and without
   `halving`; optimizer steps and wall seconds of the search side by side, and whether both
   choose the same rate.
3. Start-up: the same tiny runs by a local executor with warm workers (forked by a fork server
   that imported the engine once) and with cold ones (a new process each), one at a time;
   wall seconds per run (all, first, after the first) side by side, also written to
   ``docs/bench_tournament.json`` (merged into what is there).

4. Estimate: a small tournament shaped like the quick preset (SmolLM2-135M on arith, base
   model scored, forgetting probe, warm workers), calibrated as the CLI does; the plan's
   estimate against the measured wall time of the tournament after the calibration, and
   their ratio (goal: within ±20%), merged into ``docs/bench_tournament.json``.

    .venv/bin/python benchmarks/bench_tournament.py [--runs 4] [--rounds 2]
        [--startup-runs 3] [--only overhead|halving|startup|estimate]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ratio_line

from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.tournament import (
    Tournament,
    TournamentConfig,
    calibrate,
    estimate_seconds,
    make_plan,
)
from peftbench.tournament.executors import InlineExecutor, LocalExecutor

ROOT = Path(__file__).resolve().parent.parent
TINY = TrainParams(max_steps=4, batch_size=8, eval_every=4, max_new_tokens=6,
                   forgetting_samples=0, eval_batch_size=16, max_seq_length=64,
                   measure_inference=False)


def specs(n: int) -> list[ExperimentSpec]:
    """``n`` distinct tiny-llama runs (different seeds)."""
    return [ExperimentSpec(model="tiny-llama", task="arith",
                           task_options={"n_train": 32, "n_valid": 8, "n_test": 8},
                           method="lora", train=TINY.model_copy(update={"seed": s}))
            for s in range(n)]


def by_tournament(batch: list[ExperimentSpec], out: Path) -> float:
    """Wall seconds for the local executor to run ``batch``."""
    executor = LocalExecutor()
    t0 = time.perf_counter()
    try:
        records = list(executor.run(batch, out, save_adapter=True))
    finally:
        executor.close()
    assert all(r.status == "success" for r in records), [r.error for r in records]
    return time.perf_counter() - t0


def by_hand(batch: list[ExperimentSpec], out: Path) -> float:
    """Wall seconds for `peftbench run --spec` commands, one after another."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for spec in batch:
        spec_file = out / f"spec-{spec.content_hash()}.spec"
        spec_file.write_text(spec.model_dump_json())
        subprocess.run([sys.executable, "-m", "peftbench.cli", "run", "--spec", str(spec_file),
                        "--out", str(out), "--no-progress"], check=True,
                       capture_output=True)
    return time.perf_counter() - t0


def overhead(runs: int, rounds: int) -> None:
    """Print per-run wall time of both ways of running the same specs."""
    ours, hand = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            batch = specs(runs)
            ours.append(by_tournament(batch, Path(tmp) / f"t{r}") / runs)
            hand.append(by_hand(batch, Path(tmp) / f"h{r}") / runs)
    print(f"scheduler overhead: {runs} tiny-llama runs x {rounds} rounds (median per run)")
    print(f"{'':<38} {'tournament':>12} | {'by hand':>12} |")
    print(ratio_line("wall time per run", statistics.median(ours), statistics.median(hand)))
    print(f"overhead per run: {statistics.median(ours) - statistics.median(hand):+.3f} s")


def sentiment_task(folder: Path) -> tuple[str, dict[str, str]]:
    """A learnable text/label task (label = whether a positive word appears), three files."""
    rng = random.Random(0)
    good, bad = ["great", "lovely", "superb", "fine"], ["awful", "poor", "dull", "bad"]
    filler = ["the", "film", "was", "plot", "and", "very", "acting", "story"]
    paths = {}
    for split, n in (("train", 192), ("validation", 48), ("test", 48)):
        rows = []
        for _ in range(n):
            label = rng.randint(0, 1)
            words = rng.sample(filler, 4) + [rng.choice(good if label else bad)]
            rng.shuffle(words)
            rows.append(json.dumps({"text": " ".join(words), "label": label}))
        paths[split] = str(folder / f"{split}.jsonl")
        Path(paths[split]).write_text("\n".join(rows) + "\n")
    return f"jsonl:{paths['train']}", {"validation": paths["validation"], "test": paths["test"]}


def halving(points: int, steps: int) -> None:
    """Print the search cost with and without successive halving, and the chosen rates."""
    with tempfile.TemporaryDirectory() as tmp:
        task, options = sentiment_task(Path(tmp))
        rows = {}
        warm = TournamentConfig(model="tiny-bert", task=task, task_options=options,
                                methods=["lora"], lr_grid=[1e-3],
                                train=TrainParams(max_steps=2, batch_size=16,
                                                  max_seq_length=32, measure_inference=False))
        Tournament(make_plan(warm, "seq-cls"), Path(tmp) / "warm", InlineExecutor(),
                   save_adapters=False).run()  # first-use costs (tokenizer, kernels) go here
        for flag in (True, False):
            cfg = TournamentConfig(
                model="tiny-bert", task=task, task_options=options, methods=["lora"],
                lr_grid=[1e-5 * 10 ** (i * 4 / (points - 1)) for i in range(points)],
                halving=flag, eta=3, min_rung_steps=4,
                train=TrainParams(max_steps=steps, batch_size=32, eval_every=steps,
                                  eval_batch_size=48, max_seq_length=32,
                                  measure_inference=False))
            plan = make_plan(cfg, "seq-cls")
            t0 = time.perf_counter()
            outcome = Tournament(plan, Path(tmp) / f"h{flag}", InlineExecutor(),
                                 save_adapters=False).run()
            tech = outcome.techniques["lora"]
            search_seconds = sum(r.train_info.get("total_time") or 0 for r in tech.search)
            rows[flag] = (plan.search_steps(), search_seconds, tech.chosen_lr,
                          time.perf_counter() - t0, plan.rungs,
                          {r.spec.train.lr: (r.train_info.get("valid_score"),
                                             (r.train_info.get("metrics") or [{}])[-1].get(
                                                 "train loss"))
                           for r in tech.search if r.spec.train.steps_to_run() == steps},
                          tech.finals[0].train_info.get("test_score"))
    print(f"\nsuccessive halving: {points} rates, {steps} steps, eta 3, tiny-bert, one "
          f"technique (rungs {rows[True][4]})")
    print(f"{'':<38} {'halving':>12} | {'full grid':>12} |")
    print(ratio_line("search optimizer steps", rows[True][0], rows[False][0], unit=""))
    print(ratio_line("search run seconds (sum of runs)", rows[True][1], rows[False][1]))
    print(ratio_line("tournament wall seconds (with finals)", rows[True][3], rows[False][3]))
    same = "same" if rows[True][2] == rows[False][2] else "DIFFERENT"
    print(f"chosen rate: halving {rows[True][2]:g}, full grid {rows[False][2]:g} ({same})")
    grid = rows[False][5]
    for lr in sorted(grid):
        valid, loss = grid[lr]
        mark = " <- halving" if lr == rows[True][2] else ""
        mark += " <- full grid" if lr == rows[False][2] else ""
        print(f"  full-length run at lr {lr:<9.3g} validation {_fmt(valid)}, final train loss "
              f"{_fmt(loss, '.4f')}{mark}")
    print(f"final test score: halving {_fmt(rows[True][6])}, full grid {_fmt(rows[False][6])}")


def timed_runs(batch: list[ExperimentSpec], out: Path, warm: bool) -> dict[str, float]:
    """Run ``batch`` one at a time, warm or cold: wall seconds per run (all of them, with the
    fork server's start; the first; those after it), the runs' own ``total_time`` and the
    start-up outside it (medians)."""
    executor = LocalExecutor(warm=warm)
    t0 = time.perf_counter()
    try:
        records = list(executor.run(batch, out, save_adapter=False))
    finally:
        executor.close()
    wall = time.perf_counter() - t0
    assert all(r.status == "success" for r in records), [r.error for r in records]
    inside = [r.result["run_info"]["total_time"] for r in records]
    later = [r.seconds for r in records[1:]] or [records[0].seconds]
    return {"wall_per_run_s": wall / len(batch), "first_run_s": records[0].seconds,
            "later_runs_s": statistics.median(later),
            "run_total_time_s": statistics.median(inside),
            "outside_run_s": statistics.median(r.seconds - t for r, t in
                                                zip(records, inside, strict=True))}


STARTUP_ROWS = {
    "wall_per_run_s": "wall time per run (all runs)",
    "first_run_s": "wall time of the first run",
    "later_runs_s": "wall time per run after the first",
    "run_total_time_s": "the run's own total_time",
    "outside_run_s": "start-up outside total_time",
}


def startup(runs: int, out_json: Path) -> None:
    """Print start-up per run with warm and cold workers; merge the figures into ``out_json``."""
    os.environ.pop("PEFTBENCH_COLD_WORKERS", None)
    with tempfile.TemporaryDirectory() as tmp:
        warm = timed_runs(specs(runs), Path(tmp) / "warm", warm=True)
        cold = timed_runs(specs(runs), Path(tmp) / "cold", warm=False)
    print(f"\nstart-up per run: {runs} tiny-llama runs each way, one at a time (a cold run "
          "imports transformers/peft's\nmodels inside its total_time; the fork server before)")
    print(f"{'':<38} {'warm':>12} | {'cold':>12} |")
    for key, name in STARTUP_ROWS.items():
        print(ratio_line(name, warm[key], cold[key]))
    saved = cold["later_runs_s"] - warm["later_runs_s"]
    print(f"saved per run after the first: {saved:.2f} s")
    record = {"runs": runs, "model": "tiny-llama", "cpu_count": os.cpu_count(),
              "load_average": round(os.getloadavg()[0], 2),
              "warm": {k: round(v, 3) for k, v in warm.items()},
              "cold": {k: round(v, 3) for k, v in cold.items()},
              "wall_ratio": round(warm["wall_per_run_s"] / cold["wall_per_run_s"], 3),
              "later_runs_ratio": round(warm["later_runs_s"] / cold["later_runs_s"], 3),
              "saved_per_run_after_first_s": round(saved, 3)}
    figures = json.loads(out_json.read_text()) if out_json.exists() else {}
    figures["startup"] = record
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out_json}")


def measured_parts(outcome) -> dict[str, float]:
    """Seconds the tournament's runs spent per part, summed: steps, validations, the phases
    outside training (test, probes, saving…)."""
    parts: dict[str, float] = {"train": 0.0, "validation": 0.0}
    for tech in outcome.techniques.values():
        for record in [*tech.search, *tech.finals]:
            run = record.view
            parts["train"] += run.train_time or 0.0
            parts["validation"] += run.eval_seconds
            for name, sec in (run.train_info.get("phase_seconds") or {}).items():
                parts[name] = parts.get(name, 0.0) + sec
    return parts


def estimate_check(steps: int, out_json: Path, model: str = "smollm2-135m") -> None:
    """Print the plan's estimate against the measured time of a small quick-shaped
    tournament; merge the figures into ``out_json``."""
    os.environ.pop("PEFTBENCH_COLD_WORKERS", None)
    cfg = TournamentConfig(
        model=model, task="arith", methods=["lora", "ia3"], lr_points=2, lr_extend=0,
        task_options={"difficulty": 2, "n_valid": 8, "n_test": 24},
        train=TrainParams(max_steps=steps, eval_every=steps, forgetting_samples=4,
                          eval_base=True))
    plan = make_plan(cfg, "causal-lm")
    executor = LocalExecutor(jobs=1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t"
        try:
            t0 = time.perf_counter()
            cal = calibrate(cfg, plan, out, executor)
            calibration_s = time.perf_counter() - t0
            estimated = estimate_seconds(plan, cal)
            t0 = time.perf_counter()
            outcome = Tournament(plan, out, executor, save_adapters=True).run()
            measured = time.perf_counter() - t0
            parts = measured_parts(outcome)
        finally:
            executor.close()
    assert not outcome.failed(), "a run failed"
    runs = plan.search_runs() + plan.final_runs()
    print(f"\nestimate vs measured: {model} on arith, {cfg.methods}, {steps} steps, "
          f"{runs} runs, warm workers (calibration {calibration_s:.0f} s, not in either)")
    print(f"calibration: {cal.startup:.2f} s start-up/run, {cal.step:.2f} s/step, "
          f"{cal.validation:.1f} s/validation, test x{cal.test_ratio:g}, probes "
          f"{cal.final_probes:.1f} s/final, base probes {cal.base_probes:.1f} s "
          f"(kept: {cal.base_probes_kept})")
    print("measured, summed over the runs: " + ", ".join(f"{k} {v:.1f} s"
                                                         for k, v in parts.items()))
    print(f"{'':<38} {'estimate':>12} | {'measured':>12} |")
    print(ratio_line("tournament wall seconds", estimated, measured))
    record = {"model": model, "methods": cfg.methods, "steps": steps, "runs": runs,
              "cpu_count": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
              "calibration_seconds": round(calibration_s, 1),
              "calibration": {k: round(v, 3) for k, v in vars(cal).items()},
              "estimated_s": round(estimated, 1), "measured_s": round(measured, 1),
              "ratio": round(estimated / measured, 3),
              "measured_parts_s": {k: round(v, 1) for k, v in parts.items()}}
    figures = json.loads(out_json.read_text()) if out_json.exists() else {}
    figures["estimate"] = record
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out_json}")


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "failed" if value is None else format(value, spec)


def main() -> None:
    """The four measurements (or the one ``--only`` names)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--points", type=int, default=9)
    ap.add_argument("--steps", type=int, default=108)
    ap.add_argument("--startup-runs", type=int, default=3)
    ap.add_argument("--estimate-steps", type=int, default=12)
    ap.add_argument("--estimate-model", default="smollm2-135m")
    ap.add_argument("--only", choices=["overhead", "halving", "startup", "estimate"])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_tournament.json")
    args = ap.parse_args()
    if args.only in (None, "overhead"):
        overhead(args.runs, args.rounds)
    if args.only in (None, "halving"):
        halving(args.points, args.steps)
    if args.only in (None, "startup"):
        startup(args.startup_runs, args.out)
    if args.only in (None, "estimate"):
        estimate_check(args.estimate_steps, args.out, args.estimate_model)


if __name__ == "__main__":
    main()
