"""Benchmark of the adoption census: cards per second, and memory as the input grows 10x.

Builds synthetic model cards of realistic size (front matter, prose, a hyperparameter table,
some naming techniques), writes them as Parquet and JSONL, and prints measured figures side by
side: throughput per input format and per detection stage, and peak memory at N vs 10*N cards
as ratios (flat memory: ratios near 1). Run: ``.venv/bin/python benchmarks/bench_census.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from peftbench import census

_PROSE = ("This model is a fine-tuned version of the base model on an instruction data set. "
          "It was trained for three epochs with a cosine schedule and evaluated on held-out "
          "data. Intended uses include chat, summarisation and classification. ")
_MENTIONS = ["Trained with LoRA (r=16).", "QLoRA on a 4-bit base; LoRA rank 64.",
             "We use DoRA adapters.", "LoHa and LoKr compared.", "(IA)^3 rescaling vectors.",
             "Prompt-tuning of T5.", "LoRaWAN sensor data.", "Flora dataset."]
_TAGS = [["transformers", "text-generation"], ["peft", "lora", "base_model:adapter:org/llama"],
         ["diffusers", "template:sd-lora"], ["safetensors", "region:us"]]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` synthetic cards (about 2 kB each), a third naming a technique."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        body = _PROSE * rng.randint(3, 12)
        if rng.random() < 0.33:
            body += rng.choice(_MENTIONS) + "\n\n| lora_alpha | 32 |\n"
        front = f"---\nlicense: apache-2.0\nbase_model: org/base-{i % 50}\n---\n"
        rows.append({"modelId": f"org/m{i}", "card": front + body, "tags": rng.choice(_TAGS),
                     "library_name": rng.choice(["peft", "transformers", None])})
    return rows


def write_parquet(path: Path, n: int) -> Path:
    """Write ``n`` cards to ``path`` in 1,000-card row groups without holding them all."""
    writer = None
    for start in range(0, n, 1000):
        table = pa.Table.from_pylist(make_rows(min(1000, n - start), seed=start))
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return path


def _best_seconds(fn, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def throughput(path: Path, n: int) -> dict[str, float]:
    """Cards/s of reading alone, of detection alone, and of the whole census (best of 2)."""
    cards = list(census.iter_cards(str(path)))
    read = _best_seconds(lambda: list(census.iter_cards(str(path))))
    detect = _best_seconds(lambda: [census.detect_card(card) for card in cards])
    whole = _best_seconds(lambda: census.census_cards(str(path)))
    return {"read": n / read, "detect": n / detect, "census": n / whole}


def _child_peak(path: str) -> None:
    """Run in a subprocess: print peak RSS growth and Arrow pool peak during one census."""
    import pyarrow

    census.name_matcher()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    census.census_cards(path)
    heap = tracemalloc.get_traced_memory()[1]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_kib": after, "rss_growth_kib": after - before, "heap": heap,
                      "arrow": pyarrow.default_memory_pool().max_memory()}))


def peak_memory(path: Path) -> dict[str, int]:
    """Peak memory of one census over ``path``, measured in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Print throughput per format and memory at N vs 10*N cards."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=5000, help="N (memory compares N, 10*N)")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return _child_peak(args.child)
    n = args.cards
    with tempfile.TemporaryDirectory() as tmp:
        small = write_parquet(Path(tmp) / "small.parquet", n)
        large = write_parquet(Path(tmp) / "large.parquet", 10 * n)
        jsonl = Path(tmp) / "small.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in make_rows(n)))
        mb = small.stat().st_size / 1e6
        kb = sum(len(r["card"]) for r in make_rows(n)) / n / 1e3
        print(f"{n:,} cards, Parquet {mb:.1f} MB, {kb:.1f} kB of text per card")
        speeds = {"parquet": throughput(small, n), "jsonl": throughput(jsonl, n)}
        print(f"{'cards/s':<10}{'read':>12}{'detect':>12}{'census':>12}")
        for fmt, s in speeds.items():
            print(f"{fmt:<10}{s['read']:>12,.0f}{s['detect']:>12,.0f}{s['census']:>12,.0f}")
        at_n, at_10n = peak_memory(small), peak_memory(large)
        print(f"{'memory':<24}{'N':>12}{'10N':>12}{'10N / N':>10}")
        for key, label in [("heap", "Python heap peak (B)"), ("arrow", "Arrow pool peak (B)"),
                           ("rss_kib", "process peak RSS (KiB)"),
                           ("rss_growth_kib", "RSS growth in census")]:
            ratio = f"{at_10n[key] / at_n[key]:.2f}" if at_n[key] else "n/a"
            print(f"{label:<24}{at_n[key]:>12,}{at_10n[key]:>12,}{ratio:>10}")


if __name__ == "__main__":
    main()
