"""Evaluation speed: batched greedy generation vs one prompt at a time.

All runs decode the same arith problems greedily with SmolLM2-135M in fp32, in one process,
through the public `generate`:

- batched: ``batch_size=--batch-size`` (our own decode loop: KV cache, finished rows dropped);
- one by one, the reference: ``batch_size=1`` through the same function and loop;
- fallback: transformers' ``model.generate`` batched (``use_hf_generate=True``), the path that
  prompt-learning techniques take;
- prefill only (``max_new_tokens=1``), batched and one by one: the part of the work that
  batching cannot shrink on a CPU, since it is matmul-bound either way.

Targets: identical generations, batched at least 5x faster than one by one. The figures are
also written to ``docs/bench_generation.json``.

Torch runs on one thread by default: on a machine whose cores other processes share, two
OpenMP threads wait on each other in every matmul; on our shared 2-core machine that made
one-by-one decoding 4x slower and batched decoding (larger matrix products) 8x slower than on
one thread, so the ratio mostly measured the other load. ``--threads 0`` keeps torch's default.

    .venv/bin/python benchmarks/bench_generation.py [--n 64] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from common import ratio_line

from peftbench.engine.evaluate import generate, own_loop_fits
from peftbench.engine.models import load_model
from peftbench.tasks import get_task

OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_generation.json"


def timed(fn: Any, **kwargs: Any) -> tuple[list[str], float, float]:
    """``fn(**kwargs)``, its wall time and this process's CPU time, in seconds.

    On a shared machine the CPU time is the steadier figure: it leaves out the time other
    processes hold the cores (threads waiting on each other still count).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(**kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Print the timings side by side with their ratios and agreement; write them as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads, 0 for torch's default (one: see the docstring)")
    ap.add_argument("--no-fallback", action="store_true", help="skip the model.generate run")
    ap.add_argument("--no-prefill", action="store_true", help="skip the prefill-only runs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m")
    task = get_task("arith", {"n_test": args.n})
    examples = task.load_split("test")[: args.n]
    base = {"model": loaded.model, "tokenizer": loaded.tokenizer,
            "prompts": [e.prompt for e in examples], "device": torch.device("cpu"),
            "stop_strings": task.stop_strings, "max_new_tokens": args.max_new_tokens}
    batched_kw = {**base, "batch_size": args.batch_size}
    load_before = os.getloadavg()[0]

    batched, t_batched, cpu_batched = timed(generate, **batched_kw)
    single, t_single, cpu_single = timed(generate, **{**base, "batch_size": 1})
    fallback, t_fallback, _ = (None, None, None) if args.no_fallback else \
        timed(generate, **batched_kw, use_hf_generate=True)
    t_prefill = None
    if not args.no_prefill:
        first = {"max_new_tokens": 1}
        t_prefill = (timed(generate, **{**base, **first, "batch_size": 1})[1],
                     timed(generate, **{**batched_kw, **first})[1])

    def agree(other: list[str]) -> tuple[int, int]:
        same = sum(a == b for a, b in zip(other, single, strict=True))
        answers = sum(task.extract_answer(a) == task.extract_answer(b)
                      for a, b in zip(other, single, strict=True))
        return same, answers

    same, same_answer = agree(batched)
    tokens = loaded.tokenizer(base["prompts"], add_special_tokens=False)["input_ids"]
    answers = loaded.tokenizer(single, add_special_tokens=False)["input_ids"]
    threads = torch.get_num_threads()
    loop = "own greedy loop" if own_loop_fits(loaded.model) else "model.generate"
    print(f"SmolLM2-135M fp32, {args.n} arith problems, <= {args.max_new_tokens} new tokens, "
          f"batch size {args.batch_size}, torch threads {threads}, "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"prompt tokens {sum(map(len, tokens))}, answer tokens {sum(map(len, answers))}")
    print(f"reference: one by one = generate(batch_size=1), same public function ({loop})")
    print(f"{'':<38} {'one by one':>12} | {'batched':>12} |")
    print(ratio_line("wall time", t_single, t_batched))
    print(ratio_line("CPU time of this process", cpu_single, cpu_batched))
    print(f"identical generations: {same}/{args.n}; identical extracted answers: "
          f"{same_answer}/{args.n}")
    record: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": "smollm2-135m", "dtype": "float32", "task": "arith", "n": args.n,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "torch_threads": threads, "cpu_count": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "prompt_tokens": sum(map(len, tokens)), "answer_tokens": sum(map(len, answers)),
        "reference": "one by one: generate(batch_size=1), the same public function",
        "decoder": loop,
        "one_by_one_s": round(t_single, 3), "batched_s": round(t_batched, 3),
        "ratio": round(t_single / t_batched, 3),
        "one_by_one_cpu_s": round(cpu_single, 3), "batched_cpu_s": round(cpu_batched, 3),
        "cpu_ratio": round(cpu_single / cpu_batched, 3),
        "identical_generations": same, "identical_answers": same_answer,
    }
    if fallback is not None:
        f_same, f_answer = agree(fallback)
        print(ratio_line("fallback (model.generate) batched", t_single, t_fallback))
        print(f"fallback vs one by one: identical generations {f_same}/{args.n}; "
              f"identical extracted answers {f_answer}/{args.n}")
        record.update(fallback_batched_s=round(t_fallback, 3),
                      fallback_ratio=round(t_single / t_fallback, 3),
                      fallback_identical_generations=f_same,
                      fallback_identical_answers=f_answer)
    if t_prefill is not None:
        print(ratio_line("prefill only (max_new_tokens=1)", *t_prefill))
        record.update(prefill_one_by_one_s=round(t_prefill[0], 3),
                      prefill_batched_s=round(t_prefill[1], 3),
                      prefill_ratio=round(t_prefill[0] / t_prefill[1], 3))
    print("targets: speed-up >= 5, identical answers")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
