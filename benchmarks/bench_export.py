"""Export on SmolLM2-135M, measured two ways; figures go to ``docs/bench_export.json``.

1. ``oft``: one OFT run on arith (a technique PEFT's LoRA converter does not take, so the
   general SVD path), then ``peftbench export`` at rank 16, 32, 64, at 90% energy and merged,
   each verified the way the command verifies it (both test-set scores, probe logits, the vLLM
   check). ``scripts/gen_readme_tables.py`` turns this part into the table in
   ``docs/export.md``.
2. ``synthetic``: the export's own work without the two test-set evaluations: factorizing all
   210 Linear layers of a synthetic update (a rank-64 product plus small full-rank noise, the
   shape of a typical fine-tuning update), writing the checkpoint and the vLLM check.

    .venv/bin/python benchmarks/bench_export.py                 # both parts (~10 min idle)
    .venv/bin/python benchmarks/bench_export.py --only synthetic
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from peftbench import export as ex
from peftbench.engine.models import load_model
from peftbench.engine.results import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "docs" / "bench_export.json"
RANKS = ["16", "32", "64", "0.9"]


def synthetic_update(model: torch.nn.Module, inner_rank: int, seed: int = 0) -> ex.Update:
    """A low-rank-plus-noise ΔW for every non-head Linear layer of ``model``."""
    generator = torch.Generator().manual_seed(seed)
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not ex.is_head(name):
            out_f, in_f = module.weight.shape
            low = torch.randn(out_f, inner_rank, generator=generator) @ torch.randn(
                inner_rank, in_f, generator=generator)
            layers[name] = (low + 0.05 * torch.randn(out_f, in_f, generator=generator)) * 1e-3
    return ex.Update(layers, {}, [], set(layers))


def synthetic(ranks: list[str], inner_rank: int) -> dict[str, Any]:
    """Factorize, write and check the synthetic update at each rank; print and return the rows."""
    model = load_model("smollm2-135m").model
    update = synthetic_update(model, inner_rank)
    print(f"\nsynthetic: {len(update.layers)} Linear layers, update of rank {inner_rank} + noise")
    print(f"{'rank':>6} {'factorize s':>12} {'write+check s':>14} {'mean error':>11} "
          f"{'max rank':>9} {'MiB':>8}")
    rows = []
    for text in ranks:
        t0 = time.perf_counter()
        factors, _ = ex.factorize(update, ex.parse_rank(text), torch.float32, None)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ex.write_lora(Path(tmp), factors, update, "causal-lm", "smollm2-135m")
            check = ex.vllm_compatible(tmp)
            size = ex.checkpoint_bytes(Path(tmp))
        t2 = time.perf_counter()
        assert check.compatible, check.problems
        row = {"rank": text, "factorize_seconds": t1 - t0, "write_check_seconds": t2 - t1,
               "mean_relative_error": sum(f.relative_error for f in factors) / len(factors),
               "max_rank": max(f.rank for f in factors), "checkpoint_bytes": size}
        rows.append(row)
        print(f"{text:>6} {row['factorize_seconds']:12.2f} {row['write_check_seconds']:14.2f} "
              f"{row['mean_relative_error']:11.4f} {row['max_rank']:9d} {size / 2**20:8.2f}")
    return {"layers": len(update.layers), "inner_rank": inner_rank, "rows": rows}


def oft_run_command(out: Path, steps: int, n_test: int, general_text: str | None) -> list[str]:
    """The `peftbench run` command line of the OFT run the exports start from."""
    cmd = [str(Path(sys.executable).parent / "peftbench"), "run", "--model", "smollm2-135m",
           "--task", "arith", "--method", "oft", "--steps", str(steps), "--batch-size", "8",
           "--eval-every", str(steps), "--task-opt", f"n_test={n_test}",
           "--task-opt", "n_valid=50", "--eval-base", "--out", str(out), "--no-progress"]
    if general_text:
        cmd += ["--general-text", general_text]
    return cmd


def oft_exports(work: Path, steps: int, n_test: int, ranks: list[str],
                general_text: str | None) -> dict[str, Any]:
    """Train the OFT run, export it at every rank and merged; return the run and each export."""
    cmd = oft_run_command(work, steps, n_test, general_text)
    print("oft run: peftbench " + " ".join(cmd[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    run_seconds = time.perf_counter() - started
    result_path = next(work.glob("oft--*.json"))
    result = json.loads(result_path.read_text())
    exports = []
    for text in [*ranks, "merged"]:
        folder = work / "export" / f"oft-{text}"
        if text == "merged":
            report = ex.export_merged(result_path, folder, overwrite=True, progress=False)
        else:
            report = ex.export_lora(result_path, folder, text, overwrite=True, progress=False)
        exports.append(export_row(text, report))
        print(export_line(exports[-1]), flush=True)
    return {"command": ["peftbench", *cmd[1:]], "run_seconds": run_seconds,
            "run": run_figures(result), "exports": exports}


def run_figures(result: dict[str, Any]) -> dict[str, Any]:
    """What the table's preamble says about the OFT run itself."""
    train, run = result["train_info"], result["run_info"]
    return {"trainable_params": train.get("num_trainable_params"),
            "learning_rate": run["peftbench"]["lr"], "test_score": train.get("test_score"),
            "base_score": train.get("base_test_score"), "adapter_bytes": train.get("file_size"),
            "n_test": len(train.get("test_items") or [])}


def export_row(label: str, report: ex.ExportReport) -> dict[str, Any]:
    """One export's figures, from its report."""
    ranks = [layer["rank"] for layer in report.layers]
    at_bound = all(abs(layer["relative_error"] - layer["svd_bound"]) <= 1e-4
                   for layer in report.layers if layer.get("svd_bound") is not None)
    return {"export": label, "mode": report.mode, "layers": len(report.layers),
            "rank_min": min(ranks) if ranks else None, "rank_max": max(ranks) if ranks else None,
            "mean_relative_error": report.mean_relative_error,
            "max_relative_error": report.max_relative_error, "errors_at_svd_bound": at_bound,
            "score_before": report.score_before, "score_after": report.score_after,
            "score_ratio": report.score_ratio,
            "probe_relative_logit_diff": report.probe_relative_logit_diff,
            "size_original_bytes": report.size_original_bytes,
            "size_exported_bytes": report.size_exported_bytes,
            "vllm_compatible": (report.vllm or {}).get("compatible"),
            "vllm_max_lora_rank": (report.vllm or {}).get("max_lora_rank"),
            "seconds": report.seconds}


def export_line(row: dict[str, Any]) -> str:
    """One printed line per export: error, score before → after, sizes side by side."""
    err = ("—" if row["mean_relative_error"] is None
           else f"{row['mean_relative_error']:.3f}/{row['max_relative_error']:.3f}")
    ratio = "—" if row["score_ratio"] is None else f"{row['score_ratio']:.2f}"
    return (f"{row['export']:>7} rank {row['rank_min']}–{row['rank_max']} error {err} score "
            f"{row['score_before']:.3f} → {row['score_after']:.3f} (ratio {ratio}) size "
            f"{row['size_original_bytes'] / 2**20:.2f} → {row['size_exported_bytes'] / 2**20:.2f}"
            f" MiB ({row['size_exported_bytes'] / row['size_original_bytes']:.1f}×) "
            f"{row['seconds']:.0f} s")


def main() -> None:
    """Run the chosen parts, print their figures, merge them into the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["oft", "synthetic"], default=None)
    ap.add_argument("--ranks", nargs="+", default=RANKS)
    ap.add_argument("--inner-rank", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--general-text", default=None, help="passed to the OFT run (forgetting)")
    ap.add_argument("--work", type=Path, default=None, help="keep the OFT run and exports here")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args()
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.update({"created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                 "model": "smollm2-135m", "cpu_count": os.cpu_count(),
                 "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]})
    if args.only in (None, "oft"):
        work = args.work or Path(tempfile.mkdtemp(prefix="bench-export-"))
        data["oft"] = oft_exports(work, args.steps, args.n_test, args.ranks, args.general_text)
    if args.only in (None, "synthetic"):
        data["synthetic"] = synthetic(args.ranks, args.inner_rank)
    atomic_write_json(args.out, data)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
