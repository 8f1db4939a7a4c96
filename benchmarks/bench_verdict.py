"""Does the quick preset's verdict survive a rerun? And is its memory axis repeatable?

1. Memory repeatability: the same spec run 3 times (each in its own worker process, as in a
   tournament) for LoRA, IA3, OFT and full fine-tuning on SmolLM2-135M; the spread of each
   memory figure (the training phase's accounted memory, its measured RSS rise, the
   whole-process peak) against the smallest difference between two techniques.
2. Verdict agreement: the README's main command (``tournament --preset quick``) twice, with
   different training seeds (``--seed``); the ★ sets, and every pair of techniques marked
   significantly different, compared between the two.

Writes every figure to ``docs/bench_verdict.json`` (the README's verdict table is generated
from it by ``scripts/gen_readme_tables.py``).

    .venv/bin/python benchmarks/bench_verdict.py [--general-text ../shared/data/wikitext-2]
        [--seeds 0 10] [--repeats 3] [--skip-memory] [--skip-verdict]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "docs" / "bench_verdict.json"
MEMORY_TECHNIQUES = ("lora", "ia3", "oft", "full")
MEMORY_FIELDS = ("train_memory", "train_rss_increase", "train_peak_rss", "cpu_peak_rss")


def memory_repeatability(work: Path, repeats: int, general_text: str | None) -> dict:
    """Each technique's memory figures over ``repeats`` identical runs, and their spreads."""
    from peftbench.engine.spec import ExperimentSpec, TrainParams
    from peftbench.tournament.executors import LocalExecutor

    train = TrainParams(max_steps=6, eval_every=6, forgetting_samples=0,
                        measure_inference=False, eval_test=False, max_new_tokens=24)
    out: dict = {"steps": 6, "repeats": repeats, "techniques": {}}
    executor = LocalExecutor(jobs=1)
    for method in MEMORY_TECHNIQUES:
        lr = 1e-5 if method == "full" else None
        spec = ExperimentSpec(model="smollm2-135m", task="arith",
                              task_options={"difficulty": 2, "n_valid": 8, "n_test": 8},
                              method=method, general_text=general_text,
                              train=train.model_copy(update={"lr": lr}))
        figures: dict[str, list[float]] = {name: [] for name in MEMORY_FIELDS}
        for rep in range(repeats):
            records = list(executor.run([spec], work / f"{method}-{rep}", save_adapter=False))
            info = records[0].train_info
            if records[0].status != "success":
                raise SystemExit(f"{method}: run failed: {records[0].error}")
            for name in MEMORY_FIELDS:
                figures[name].append(float(info.get(name) or 0))
        out["techniques"][method] = {
            name: {"values": values, "mean": statistics.fmean(values),
                   "spread": (max(values) - min(values)) / statistics.fmean(values)
                   if statistics.fmean(values) else None}
            for name, values in figures.items()}
        out["techniques"][method]["breakdown"] = {
            key: info.get(key) for key in ("memory_frozen_weights", "memory_trainable_state",
                                           "memory_activations")}
        print(f"  {method:<6} " + "  ".join(
            f"{name} {statistics.fmean(v) / 2**20:8.1f} MiB ±{_pct(out, method, name)}"
            for name, v in figures.items()), flush=True)
    out["summary"] = {name: _separation(out["techniques"], name) for name in MEMORY_FIELDS}
    return out


def _pct(out: dict, method: str, name: str) -> str:
    spread = out["techniques"][method][name]["spread"]
    return "n/a" if spread is None else f"{100 * spread:.2f}%"


def _separation(techniques: dict, name: str) -> dict:
    """Largest repeat spread vs the smallest relative gap between two techniques' means."""
    spreads = [t[name]["spread"] for t in techniques.values() if t[name]["spread"] is not None]
    means = {m: t[name]["mean"] for m, t in techniques.items()}
    gaps = [abs(means[a] - means[b]) / max(means[a], means[b])
            for a, b in combinations(means, 2) if max(means[a], means[b]) > 0]
    worst, closest = max(spreads or [0.0]), min(gaps or [0.0])
    return {"max_spread": worst, "min_gap": closest,
            "gap_over_spread": closest / worst if worst else None}


def quick_tournament(out: Path, seed: int, general_text: str | None,
                     task_opts: list[str]) -> float | None:
    """The README's main command with training seed ``seed`` (and ``task_opts`` as
    ``--task-opt`` values over the preset's); returns its wall time (None when ``out`` already
    holds that tournament, finished: it is read, not rerun)."""
    if (out / "tournament.json").exists():
        return None
    command = [sys.executable, "-m", "peftbench.cli", "tournament", "--preset", "quick",
               "--seed", str(seed), "--out", str(out), "--no-progress"]
    if general_text:
        command += ["--general-text", general_text]
    for opt in task_opts:
        command += ["--task-opt", opt]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def verdict(folder: Path) -> dict:
    """A finished tournament folder's verdict: per technique its score, interval, memory and
    ★/☆ status; every pair's paired comparison."""
    from peftbench import analysis as an
    from peftbench.analysis.pareto import score_comparisons

    runs = [r for r in an.load_results([folder]).runs
            if r.ok and (r.spec.get("train") or {}).get("eval_test", True)]
    aggs = [a for a in an.aggregate(runs, level="technique") if a.n]
    specs = [an.parse_metric_spec("peak_memory"), an.parse_metric_spec("test_score")]
    status = an.frontier_status(aggs, specs)
    comps = score_comparisons(aggs)
    manifest = json.loads((folder / "tournament.json").read_text())
    techniques = {}
    for agg, st in zip(aggs, status, strict=True):
        low, high = agg.interval("test_score") or (None, None)
        entry = manifest["techniques"].get(agg.technique, {})
        techniques[agg.technique] = {
            "status": st, "test_score": agg.value("test_score"), "low": low, "high": high,
            "peak_memory": agg.value("peak_memory"), "items": len(agg.test_items[0])
            if agg.test_items else None, "chosen_lr": entry.get("chosen_lr"),
            "grid": entry.get("grid"), "extended": entry.get("extended", [])}
    pairs = {}
    for (i, j), comp in comps.items():
        if i < j:
            pairs[f"{aggs[i].technique} vs {aggs[j].technique}"] = {
                "difference": comp.difference, "p": comp.p, "p_holm": comp.p_adjusted,
                "significant": comp.significant}
    return {"techniques": techniques, "pairs": pairs,
            "stars": sorted(t for t, v in techniques.items() if v["status"] == an.FRONTIER)}


def estimate_check(manifest: dict) -> dict | None:
    """The plan's time estimate against the measured tournament time: planned runs, plus the
    grid extensions the tournament really took (None when it was not calibrated)."""
    est = manifest.get("estimate")
    if not est:
        return None
    taken = sum(est["extension_run_seconds"].get(method, 0.0) * len(t.get("extended") or [])
                for method, t in manifest["techniques"].items())
    expected = est["planned_seconds"] + taken
    return {"planned_seconds": est["planned_seconds"], "with_extensions_taken": expected,
            "upper_seconds": est["planned_seconds"] + est["all_extensions_seconds"],
            "measured_seconds": manifest["seconds"], "startup_seconds": est["startup"],
            "step_seconds": est["step"], "validation_seconds": est["validation"],
            "ratio": expected / manifest["seconds"] if manifest["seconds"] else None}


def agreement(a: dict, b: dict) -> dict:
    """Same ★ set? Every pair significant in both ordered the same way? Which pairs are
    significant in only one run?"""
    both, one, contradictions = [], [], []
    for pair, ca in a["pairs"].items():
        cb = b["pairs"].get(pair)
        if cb is None:
            continue
        if ca["significant"] and cb["significant"]:
            both.append(pair)
            if (ca["difference"] > 0) != (cb["difference"] > 0):
                contradictions.append(pair)
        elif ca["significant"] or cb["significant"]:
            one.append(pair)
    return {"same_stars": a["stars"] == b["stars"], "significant_in_both": both,
            "significant_in_one": one, "contradictions": contradictions,
            "holds": a["stars"] == b["stars"] and not contradictions}


def main() -> None:
    """Run both parts, print the figures side by side, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--general-text", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=(0, 10),
                    help="training seeds of the reruns (two to compare)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / ".bench-verdict")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-verdict", action="store_true")
    ap.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="override a task option of the preset (e.g. n_test=300)")
    args = ap.parse_args()
    figures: dict = {"date": dt.date.today().isoformat()}
    if not args.skip_memory:
        print(f"memory repeatability ({args.repeats} identical runs each):", flush=True)
        figures["memory"] = memory_repeatability(args.work / "memory", args.repeats,
                                                 args.general_text)
        for name, s in figures["memory"]["summary"].items():
            ratio = s["gap_over_spread"]
            print(f"  {name:<20} max spread {100 * s['max_spread']:6.2f}% | smallest gap "
                  f"between techniques {100 * s['min_gap']:6.2f}% | gap/spread "
                  f"{'inf' if ratio is None else f'{ratio:.1f}'}")
    if not args.skip_verdict:
        runs = {}
        for seed in args.seeds:
            folder = args.work / f"quick-seed{seed}"
            wall = quick_tournament(folder, seed, args.general_text, args.task_opt)
            manifest = json.loads((folder / "tournament.json").read_text())
            runs[str(seed)] = {"wall_seconds": wall, "tournament_seconds": manifest["seconds"],
                               "estimate": estimate_check(manifest), **verdict(folder)}
            est = runs[str(seed)]["estimate"]
            guess = (f" (estimated {est['with_extensions_taken'] / 60:.1f} min, ratio "
                     f"{est['ratio']:.2f})" if est else "")
            print(f"quick preset, seed {seed}: {manifest['seconds'] / 60:.1f} min{guess}, "
                  f"★ {runs[str(seed)]['stars']}", flush=True)
        figures["verdict"] = {"seeds": list(args.seeds), "runs": runs,
                              "task_options": args.task_opt}
        if len(args.seeds) < 2:
            print("one rerun only: no agreement to measure")
        else:
            first, second = (runs[str(s)] for s in args.seeds[:2])
            figures["verdict"]["agreement"] = agree = agreement(first, second)
            print(f"same ★ set: {agree['same_stars']}; significant in both: "
                  f"{agree['significant_in_both']}; contradictions: {agree['contradictions']}; "
                  f"significant in one only: {agree['significant_in_one']}")
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    # merge with what another part wrote meanwhile (the parts can run as separate processes)
    latest = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {}
    OUT_JSON.write_text(json.dumps({**latest, **figures}, indent=2) + "\n")
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    main()
