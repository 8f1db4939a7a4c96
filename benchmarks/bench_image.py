"""The image track's embedded default, measured: tiny-flux2's pretraining and the quick-image
tournament.

1. Pretraining: tiny-flux2 pretrained from an empty cache on one CPU thread (goal: at most
   about 3 minutes); wall seconds against the goal.
2. Tournament: ``peftbench tournament --preset quick-image`` (tiny-flux2 learning the built-in
   "sks digit": four techniques, a two-rate search each, one final run each, the base model
   scored) from the cached model; wall seconds against the 10-minute goal, and per technique
   its chosen rate, test digit_similarity with its interval, drift and trainable parameters,
   beside the base model's similarity.

Both are written to ``docs/bench_image.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_image.py [--skip-pretraining]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ratio_line

ROOT = Path(__file__).resolve().parent.parent
PRETRAIN_GOAL_S = 180.0
TOURNAMENT_GOAL_S = 600.0


def time_pretraining() -> float:
    """Seconds to pretrain tiny-flux2 into an empty cache, in a fresh one-thread process."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PEFTBENCH_CACHE": cache, "OMP_NUM_THREADS": "1"}
        code = ("import time; t = time.perf_counter(); "
                "from peftbench.engine.tiny_flux2 import cached_folder; cached_folder(); "
                "print(time.perf_counter() - t)")
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def run_tournament(out: Path) -> tuple[float, dict]:
    """Wall seconds of the quick-image tournament (model cached beforehand) and its summary."""
    subprocess.run([sys.executable, "-c", "from peftbench.engine.tiny_flux2 import "
                    "cached_folder; cached_folder()"], check=True)
    command = [sys.executable, "-m", "peftbench.cli", "tournament", "--preset", "quick-image",
               "--out", str(out), "--json", "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, json.loads(done.stdout)


def technique_figures(summary: dict) -> dict[str, dict]:
    """Per technique: chosen rate, test similarity and interval, drift, trainable params."""
    out = {}
    for name, tech in summary["techniques"].items():
        finals = [json.loads(Path(p).read_text())["train_info"] for p in tech["results"]]
        ok = [f for f in finals if f.get("status") == "success"]
        score = tech["metrics"].get("test_score", {})
        out[name] = {
            "chosen_lr": tech["chosen_lr"], "status": tech["status"],
            "test_digit_similarity": score.get("value"), "interval": score.get("interval"),
            "drift": ok[0].get("drift") if ok else None,
            "trainable_params": ok[0].get("num_trainable_params") if ok else None,
            "train_time_s": ok[0].get("train_time") if ok else None,
        }
    return out


def main() -> None:
    """Measure, print side by side, write docs/bench_image.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-pretraining", action="store_true")
    args = parser.parse_args()
    figures: dict = {"command": "peftbench tournament --preset quick-image",
                     "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                     "cpus": os.cpu_count()}
    if not args.skip_pretraining:
        seconds = time_pretraining()
        figures["pretraining_s"] = round(seconds, 1)
        print(ratio_line("tiny-flux2 pretraining vs 3 min goal", seconds, PRETRAIN_GOAL_S))
    with tempfile.TemporaryDirectory() as folder:
        wall, summary = run_tournament(Path(folder) / "quick-image")
        figures["tournament_s"] = round(wall, 1)
        figures["base_test_digit_similarity"] = summary.get("base_test_score")
        figures["test_items"] = summary.get("test_items")
        figures["techniques"] = technique_figures(summary)
    print(ratio_line("quick-image tournament vs 10 min goal", wall, TOURNAMENT_GOAL_S))
    print(f"base model digit_similarity: {figures['base_test_digit_similarity']}")
    for name, tech in figures["techniques"].items():
        print(f"  {name:<6} lr {tech['chosen_lr']}: similarity {tech['test_digit_similarity']} "
              f"± {tech['interval']}, drift {tech['drift']}, "
              f"{tech['trainable_params']} trainable, {tech['status']}")
    path = ROOT / "docs" / "bench_image.json"
    path.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
