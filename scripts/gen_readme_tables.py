"""Generate the README's tables of measured figures from the benchmarks' JSON under docs/.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in README.md or a
page under docs/; a table whose JSON is missing is left as it is. Run after a benchmark:
``python scripts/gen_readme_tables.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.0f} MiB"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def verdict_table(data: dict) -> list[str]:
    """The quick preset run twice with different seeds: ★, score [interval], memory."""
    verdict = data.get("verdict")
    if not verdict:
        return []
    seeds = [str(s) for s in verdict["seeds"]]
    runs = verdict["runs"]
    names = sorted({t for r in runs.values() for t in r["techniques"]},
                   key=lambda t: -(runs[seeds[0]]["techniques"].get(t, {}).get("test_score")
                                   or 0))
    head = "| technique | " + " | ".join(
        f"seed {s}: test score [95% interval] | peak memory | chosen lr" for s in seeds) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(seeds)]
    for name in names:
        cells = []
        for s in seeds:
            t = runs[s]["techniques"].get(name)
            if t is None:
                cells += ["—", "—", "—"]
                continue
            mark = {"frontier": "★ ", "within noise": "☆ "}.get(t["status"], "")
            ext = f" (grid +{len(t['extended'])})" if t.get("extended") else ""
            cells += [f"{mark}{t['test_score']:.3f} [{t['low']:.3f}, {t['high']:.3f}]",
                      _mib(t["peak_memory"]), f"{t['chosen_lr']:g}{ext}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    walls = ", ".join(f"{runs[s]['tournament_seconds'] / 60:.1f} min" for s in seeds)
    items = next(iter(runs[seeds[0]]["techniques"].values()))["items"]
    overrides = ", ".join(verdict.get("task_options") or [])
    lines += ["", f"Tournament time (after calibration) {walls}; {items} test items per "
              "technique" + (f" (`--task-opt {overrides}` over the preset)" if overrides else "")
              + "." + _estimates(runs, seeds)]
    agree = verdict.get("agreement")
    if agree is None:
        lines[-1] += " A rerun with another seed has not been measured yet."
        return lines
    both = ", ".join(agree["significant_in_both"]) or "none"
    flipped = ", ".join(agree["contradictions"]) or "none"
    one = ", ".join(agree["significant_in_one"]) or "none"
    same = "yes" if agree["same_stars"] else "no"
    lines[-1] += (f" Same ★ set: **{same}**. Pairs significantly different in both runs "
                  f"(paired test, Holm-corrected): {both}; ordered differently: {flipped}; "
                  f"significant in one run only: {one}.")
    return lines


def _estimates(runs: dict, seeds: list[str]) -> str:
    """The plan's estimates against those times, where the runs recorded one."""
    found = [runs[s]["estimate"] for s in seeds if runs[s].get("estimate")]
    if not found:
        return ""
    parts = ", ".join(f"{e['with_extensions_taken'] / 60:.1f} min (ratio {e['ratio']:.2f})"
                      for e in found)
    startup = ", ".join(f"{e['startup_seconds']:.1f} s" for e in found
                        if e.get("startup_seconds") is not None)
    calibrated = (f" Start-up per run (warm, from each tournament's own calibration): "
                  f"{startup}." if startup else "")
    return (f" The plan's estimate, with the grid extensions each run took: {parts}."
            + calibrated)


def memory_table(data: dict) -> list[str]:
    """Memory repeatability: each figure's spread over identical runs vs technique gaps."""
    memory = data.get("memory")
    if not memory:
        return []
    fields = [("train_memory", "training memory (accounted)"),
              ("train_rss_increase", "RSS rise while training"),
              ("cpu_peak_rss", "whole-process peak RSS")]
    lines = ["| technique | " + " | ".join(f"{label} (spread)" for _, label in fields) + " |",
             "|---|" + "---|" * len(fields)]
    for method, figures in memory["techniques"].items():
        lines.append(f"| {method} | " + " | ".join(
            f"{_mib(figures[name]['mean'])} ({_pct(figures[name]['spread'])})"
            for name, _ in fields) + " |")
    summary = memory["summary"]
    lines.append("| **largest spread / smallest gap between techniques** | " + " | ".join(
        f"{_pct(summary[name]['max_spread'])} / {_pct(summary[name]['min_gap'])}"
        for name, _ in fields) + " |")
    lines += ["", f"{memory['repeats']} identical runs of {memory['steps']} steps each, every "
              "run in its own worker process."]
    return lines


def pairs_table(data: dict) -> list[str]:
    """The paired comparisons behind the verdict: each pair's test-score difference on the same
    items, its Holm-corrected p-value and whether it is significant, per seed run."""
    verdict = data.get("verdict")
    if not verdict:
        return []
    lines = ["| seed | pair (A vs B) | test score A − B | p (Holm) | significant |",
             "|---|---|---|---|---|"]
    for seed, run in verdict["runs"].items():
        for pair, c in sorted(run.get("pairs", {}).items(), key=lambda kv: -abs(
                kv[1]["difference"])):
            lines.append(f"| {seed} | {pair} | {c['difference']:+.3f} | {c['p_holm']:.2g} | "
                         f"{'yes' if c['significant'] else 'no'} |")
    return lines


def breakdown_table(data: dict) -> list[str]:
    """Where each technique's training memory goes: frozen weights, trainable state
    (parameters, gradients, optimizer moments) and activations saved for backward."""
    memory = data.get("memory")
    if not memory:
        return []
    parts = [("memory_frozen_weights", "frozen weights"),
             ("memory_trainable_state", "trainable state"),
             ("memory_activations", "activations")]
    lines = ["| technique | " + " | ".join(label for _, label in parts) + " |",
             "|---|" + "---|" * len(parts)]
    for method, figures in memory["techniques"].items():
        split = figures.get("breakdown") or {}
        lines.append(f"| {method} | " + " | ".join(_mib(split.get(key)) for key, _ in parts)
                     + " |")
    return lines


def cli_table(data: dict) -> list[str]:
    """The first steps' speed (`benchmarks/bench_cli.py`): median seconds against targets."""
    figures = data.get("figures")
    if not figures:
        return []
    lines = ["| step | median | target |", "|---|---|---|"]
    for name, f in figures.items():
        lines.append(f"| `{name}` | {f['seconds']:.2f} s | < {f['target_seconds']:g} s |")
    lines += ["", f"Median of {data['repeat']} tries (`benchmarks/bench_cli.py`; load average "
              f"{data['load_average']:.2f} on {data['cpus']} cores)."]
    return lines


def startup_table(data: dict) -> list[str]:
    """Warm (forked from a fork server) vs cold (a fresh interpreter) worker start-up."""
    startup = data.get("startup")
    if not startup:
        return []
    warm, cold = startup["warm"], startup["cold"]
    rows = [("wall time per run, all runs", "wall_per_run_s"),
            ("first run (warm: starts the server)", "first_run_s"),
            ("each later run", "later_runs_s"),
            ("time outside the run's own total_time", "outside_run_s")]
    lines = ["| per run | warm | cold | warm / cold |", "|---|---|---|---|"]
    for label, key in rows:
        ratio = warm[key] / cold[key] if cold[key] else float("nan")
        lines.append(f"| {label} | {warm[key]:.1f} s | {cold[key]:.1f} s | {ratio:.2f} |")
    lines += ["", f"{startup['runs']} {startup['model']} runs each way, in one benchmark run "
              f"(`benchmarks/bench_tournament.py --only startup`; load average "
              f"{startup['load_average']} on {startup['cpu_count']} cores while it ran)."]
    return lines


def throughput_table(data: dict) -> list[str]:
    """Training tokens/s per configuration of the step, each against the bf16 baseline."""
    rows = data.get("configurations")
    if not rows:
        return []
    lines = ["| training step | tokens/s | share of the matmul peak | ÷ bf16 baseline |",
             "|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['tokens_per_s']:,.0f} | {row['fraction_of_peak']:.2f} "
                     f"| {row['ratio_to_bf16_baseline']:.2f} |")
    pad = data.get("padded_per_real_token", {})
    opt = data.get("optimizer_step_ms", {})
    note = (f"SmolLM2-135M + LoRA on arith, batch {data['batch_size']}, {data['steps']} steps × "
            f"{data['rounds']} rounds interleaved in one benchmark run (medians; "
            f"`benchmarks/bench_throughput.py`, torch on {data['threads']} thread(s), load average "
            f"{data['load_average']} on {data['cpu_count']} cores). Padded ÷ real tokens: "
            f"{pad.get('plain', float('nan')):.3f} plain, {pad.get('bucketed', float('nan')):.3f} "
            f"bucketed (windows of {data['bucket_batches']} batches).")
    if opt:
        note += (" AdamW's step alone over LoRA's parameters: " + ", ".join(
            f"{k} {v:.2f} ms" for k, v in opt.items()) + ".")
    if data.get("compile_seconds") is not None:
        note += f" torch.compile took {data['compile_seconds']:.0f} s to compile."
    return [*lines, "", note]


def estimate_table(data: dict) -> list[str]:
    """The plan's time estimate against the measured time of the same tournament."""
    est = data.get("estimate")
    if not est:
        return []
    cal = est["calibration"]
    return ["| tournament | estimated | measured | estimated / measured |", "|---|---|---|---|",
            f"| {est['model']}, {', '.join(est['methods'])}, {est['steps']} steps, {est['runs']} "
            f"runs | {est['estimated_s']:.0f} s | {est['measured_s']:.0f} s | {est['ratio']:.2f} |",
            "", f"Calibrated on two short runs ({est['calibration_seconds']:.0f} s, in neither "
            f"figure): {cal['startup']:.2f} s start-up per warm run, {cal['step']:.2f} s per "
            f"step, {cal['validation']:.1f} s per validation, base-model probes "
            f"{cal['base_probes']:.1f} s once (`benchmarks/bench_tournament.py --only estimate`; "
            f"load average {est['load_average']} on {est['cpu_count']} cores)."]


def full_ft_table(data: dict) -> list[str]:
    """Adapters against memory-efficient full-parameter training (`bench_full_ft.py`): score,
    memory and its breakdown, speed and checkpoint, each against full fine-tuning."""
    techniques = data.get("techniques")
    if not techniques:
        return []
    ref = techniques.get("full") or {}
    lines = ["| technique | test score [95% interval] | training memory (÷ full) | frozen "
             "weights | trainable state (÷ full) | activations | tokens/s (÷ full) | "
             "checkpoint | default lr |", "|---|---|---|---|---|---|---|---|---|"]
    for name, t in techniques.items():
        if t.get("status") != "success":
            lines.append(f"| {name} | failed: {t.get('error') or '?'} | | | | | | | |")
            continue
        mark = {"frontier": "★ ", "within noise": "☆ "}.get(t.get("frontier") or "", "")
        interval = (f" [{t['low']:.3f}, {t['high']:.3f}]" if t.get("low") is not None
                    else "")
        lines.append(
            f"| {mark}{name} | {t['test_score']:.3f}{interval} | "
            f"{_mib(t['train_memory'])} ({_times(t, ref, 'train_memory')}) | "
            f"{_mib(t['memory_frozen_weights'])} | {_mib(t['memory_trainable_state'])} "
            f"({_times(t, ref, 'memory_trainable_state')}) | {_mib(t['memory_activations'])} | "
            f"{t['tokens_per_sec']:.0f} ({_times(t, ref, 'tokens_per_sec')}) | "
            f"{_mib(t['file_size'])} | {t['lr']:g} |")
    lines += ["", f"{data['steps']} steps of {data['batch_size']} {data['task']} problems on "
              f"{data['model']} per technique, at its catalog default learning rate; "
              f"{data['n_test']} test problems; each run in its own process "
              f"(`benchmarks/bench_full_ft.py`, {data['seconds'] / 60:.0f} min, load average "
              f"{data['load_average']:.1f} on {data['cpu_count']} cores). ★ on the "
              "memory-vs-score frontier, ☆ within its noise (the tournament's analysis)."
              + _overlap_note(techniques, ref) + " Memory is accounted, so it repeats exactly; "
              "tokens/s were measured one run after another on shared cores, so only large "
              "ratios mean anything. `tournament --preset memory` searches the learning rates."]
    return lines


def _overlap_note(techniques: dict, ref: dict) -> str:
    """A sentence when every score's interval overlaps full fine-tuning's."""
    done = [t for t in techniques.values() if t.get("status") == "success"
            and t.get("low") is not None]
    if ref.get("low") is None or not done or any(
            t["high"] < ref["low"] or t["low"] > ref["high"] for t in done):
        return ""
    return (" Every score's interval overlaps full fine-tuning's: at this budget the scores do "
            "not separate the techniques, the memory columns do.")


def _times(figures: dict, reference: dict, key: str) -> str:
    a, b = figures.get(key), reference.get(key)
    return f"×{a / b:.2f}" if a is not None and b else "—"


NOT_ON_GPU = ["Not measured yet on a GPU: no CUDA machine has run `benchmarks/gpu_check.py` "
              "(without CUDA it", "only checks its own plumbing on the CPU and writes nothing); "
              "on one, it writes", "`docs/gpu_check.json`, from which this table is made."]


def gpu_table(data: dict) -> list[str]:
    """The CUDA check (`benchmarks/gpu_check.py`): per model and technique the harness's peak
    memory against `torch.cuda.max_memory_allocated` around a bare loop, the step time against
    that loop's, bf16 throughput as a share of the measured matmul peak; then the device, the
    tournaments and the checks. Without GPU figures: says they are not measured yet."""
    gpu = (data.get("environment") or {}).get("gpu")
    if not gpu or not data.get("runs"):
        return list(NOT_ON_GPU)
    lines = ["| model | technique | peak memory (harness) | bare loop's max_memory_allocated "
             "| harness / bare | step: harness / bare | tokens/s | share of bf16 peak |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["runs"]:
        if r.get("status") != "success":
            lines.append(f"| {r['model']} | {r['method']} | failed: {r.get('error')} "
                         "| | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['method']} | {_mib(r['peak_memory'])} | "
                     f"{_mib(r['bare_max_allocated'])} | {_ratio(r['memory_ratio'])} | "
                     f"{_ratio(r['step_ratio'])} | {r['tokens_per_sec'] or 0:,.0f} | "
                     f"{_pct(r.get('peak_share'))} |")
    return lines + ["", _gpu_notes(data, gpu)]


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _gpu_notes(data: dict, gpu: dict) -> str:
    """The line under the GPU table: device, versions, tournaments, checks."""
    env, peak = data["environment"], data.get("matmul_peak_tflops") or {}
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    parts = [f"{gpu['name']} ({gpu['memory'] / 2**30:.0f} GiB), bf16 matmul peak "
             f"{peak.get('bfloat16', 0):.0f} TFLOP/s measured; {versions}"]
    for name, label in (("tournament", "tiny tournament"), ("memory_only", "memory-only "
                                                            "tournament on config:llama-3.2-1b")):
        part = data.get(name) or {}
        parts.append(f"{label}: {'ran' if part.get('exit_code') == 0 else 'FAILED'} "
                     f"({part.get('seconds', 0):.0f} s)")
    failed = [name for name, ok in (data.get("checks") or {}).items() if not ok]
    parts.append("checks failed: " + ", ".join(failed) if failed else "every check passed")
    return "; ".join(parts) + f" (`benchmarks/gpu_check.py`, {data.get('created_at', '')[:10]})."


def export_table(data: dict) -> list[str]:
    """One OFT run exported at several ranks and merged (`benchmarks/bench_export.py`)."""
    oft = data.get("oft")
    if not oft:
        return []
    run = oft["run"]
    lines = [f"The run: `{' '.join(oft['command'])}`. OFT's default config, "
             f"{run['trainable_params']:,} trainable parameters, learning rate "
             f"{run['learning_rate']:g}; test accuracy {run['test_score']:.2f} on {run['n_test']} "
             f"arith problems (base model {_score(run['base_score'])}), adapter "
             f"{run['adapter_bytes'] / 2**20:.2f} MiB. Measured {data['created_at'][:10]}, "
             f"{data['cpu_count']} CPUs, torch on {data['torch_threads']} thread(s).", "",
             "| export | per-layer rank | mean / max relative error | test accuracy before → "
             "after | probe logits (relative diff) | checkpoint | vLLM `--max-lora-rank` | "
             "time |", "|---|---|---|---|---|---|---|---|"]
    for row in oft["exports"]:
        label = {"merged": "merged model"}.get(row["export"], None) or (
            f"LoRA {float(row['export']):.0%} energy" if "." in row["export"]
            else f"LoRA r={row['export']}")
        ranks = ("—" if row["rank_min"] is None else str(row["rank_min"])
                 if row["rank_min"] == row["rank_max"]
                 else f"{row['rank_min']}–{row['rank_max']}")
        error = ("—" if row["mean_relative_error"] is None else
                 f"{row['mean_relative_error']:.3f} / {row['max_relative_error']:.3f}")
        ratio = "not measured" if row["score_ratio"] is None else f"{row['score_ratio']:.2f}"
        size = (f"{row['size_original_bytes'] / 2**20:.2f} → "
                f"{row['size_exported_bytes'] / 2**20:.2f} MiB")
        lines.append(f"| {label} | {ranks} | {error} | {row['score_before']:.2f} → "
                     f"{row['score_after']:.2f} (ratio {ratio}) | "
                     f"{row['probe_relative_logit_diff']:.1e} | {size} | "
                     f"{row['vllm_max_lora_rank'] or '—'} | {row['seconds']:.0f} s |")
    lora = [r for r in oft["exports"] if r["mode"] == "lora"]
    bound = "every layer's error equals the SVD bound for its rank" if all(
        r["errors_at_svd_bound"] for r in lora) else "some layers' errors exceed the SVD bound"
    vllm = "every LoRA export passed the vLLM check" if all(
        r["vllm_compatible"] for r in lora) else "some LoRA exports failed the vLLM check"
    layers = sorted({r["layers"] for r in lora})
    lines += ["", f"{'/'.join(map(str, layers))} layers exported on every LoRA row; {bound}; "
              f"{vllm}. Time is the whole export, both test-set evaluations included "
              f"(load average {data['load_average']:.1f} at the start)."]
    return lines


def export_synthetic_table(data: dict) -> list[str]:
    """The export's own work on a synthetic update, without the test-set evaluations."""
    part = data.get("synthetic")
    if not part:
        return []
    lines = ["| rank | factorize | write + vLLM check | mean relative error | largest rank | "
             "checkpoint (float32) |", "|---|---|---|---|---|---|"]
    for row in part["rows"]:
        lines.append(f"| {row['rank']} | {row['factorize_seconds']:.1f} s | "
                     f"{row['write_check_seconds']:.2f} s | {row['mean_relative_error']:.4f} | "
                     f"{row['max_rank']} | {row['checkpoint_bytes'] / 2**20:.1f} MiB |")
    lines += ["", f"{part['layers']} Linear layers, a synthetic update of rank "
              f"{part['inner_rank']} plus noise; {data['cpu_count']} CPUs, torch on "
              f"{data['torch_threads']} thread(s), {data['created_at'][:10]}."]
    return lines


def _score(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}"


def overhead_table(data: dict) -> list[str]:
    """The harness's training step against a bare PEFT + torch loop (bench_harness_overhead)."""
    opt = ", ".join(k for k, v in data["optimizer"].items() if v) or "torch's default"
    return ["| per step | peftbench | bare loop | peftbench / bare (target ≤ "
            f"{data['target_ratio']:g}) |", "|---|---|---|---|",
            f"| SmolLM2-135M + LoRA, batch {data['batch_size']}, {data['dtype']} | "
            f"{data['harness_step_seconds']:.3f} s | {data['bare_step_seconds']:.3f} s | "
            f"{data['ratio']:.3f} |", "",
            f"Median of {data['rounds']} interleaved rounds of {data['steps']} steps, AdamW "
            f"({opt}) in both (`benchmarks/bench_harness_overhead.py`, "
            f"{data['created_at'][:10]}; torch on {data['torch_threads']} thread(s), load average "
            f"{data['load_average']:.1f} on {data['cpu_count']} CPUs)."]


def image_table(data: dict) -> list[str]:
    """The quick-image preset on tiny-flux2 (`benchmarks/bench_image.py`): per technique its
    rate, test similarity with interval, drift, size and place on the frontier."""
    techniques = data.get("techniques")
    if not techniques:
        return []
    lines = [f"Measured with `OMP_NUM_THREADS={data['threads']} python benchmarks/bench_image.py` "
             f"(`{data['command']}`) on {data['cpus']} CPUs: tiny-flux2 pretraining from an empty "
             f"cache {data['pretraining_s']:.0f} s, the whole tournament (model cached) "
             f"{data['tournament_s']:.0f} s; the base model's test digit_similarity "
             f"{data['base_test_digit_similarity']:.3f} ({data['test_items']} test images).", "",
             "| technique | chosen rate | test digit_similarity (95% interval) | drift | "
             "trainable parameters | verdict |", "|---|---:|---|---:|---:|---|"]
    for name, t in techniques.items():
        low, high = t["interval"]
        mark = {"frontier": "★ frontier", "within noise": "☆ within noise"}.get(t["status"],
                                                                             t["status"])
        lines.append(f"| {name} | {t['chosen_lr']:g} | {t['test_digit_similarity']:.3f} "
                     f"({low:.3f}–{high:.3f}) | {t['drift']:.4f} | {t['trainable_params']:,} | "
                     f"{mark} |")
    return lines


TABLES: dict[str, tuple[str, Callable[[dict], list[str]]]] = {
    "verdict-table": ("bench_verdict.json", verdict_table),
    "memory-table": ("bench_verdict.json", memory_table),
    "pairs-table": ("bench_verdict.json", pairs_table),
    "breakdown-table": ("bench_verdict.json", breakdown_table),
    "startup-table": ("bench_tournament.json", startup_table),
    "estimate-table": ("bench_tournament.json", estimate_table),
    "throughput-table": ("bench_throughput.json", throughput_table),
    "cli-table": ("bench_cli.json", cli_table),
    "gpu-table": ("gpu_check.json", gpu_table),
    "full-ft-table": ("bench_full_ft.json", full_ft_table),
    "overhead-table": ("bench_harness_overhead.json", overhead_table),
    "export-table": ("bench_export.json", export_table),
    "image-table": ("bench_image.json", image_table),
    "export-synthetic-table": ("bench_export.json", export_synthetic_table),
}


def replace_block(text: str, name: str, lines: list[str]) -> str:
    """``text`` with the block between ``name``'s markers replaced by ``lines``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text or not lines:
        return text
    head, rest = text.split(start, 1)
    return head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]


def main() -> None:
    """Rewrite every table whose JSON exists, in the README and the pages under docs/."""
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = original = page.read_text()
        for name, (file, render) in TABLES.items():
            path = DOCS / file
            if path.exists():
                text = replace_block(text, name, render(json.loads(path.read_text())))
        if text != original:
            page.write_text(text)
            print(f"wrote {page}")


if __name__ == "__main__":
    main()
