"""Evaluation speed: batched generation (left padding, KV cache) vs one prompt at a time.

Both decode the same 64 arith problems greedily with SmolLM2-135M in fp32, in one process.
Targets: identical answers, batched at least 5x faster.

    .venv/bin/python benchmarks/bench_generation.py [--n 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ratio_line

from peftbench.evaluate import generate
from peftbench.models import load_model
from peftbench.tasks import get_task


def main() -> None:
    """Print both timings, their ratio, and how many answers agree."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    loaded = load_model("smollm2-135m")
    task = get_task("arith", {"n_test": args.n})
    examples = task.load_split("test")[: args.n]
    prompts = [e.prompt for e in examples]
    kwargs = {"max_new_tokens": args.max_new_tokens, "device": torch.device("cpu"),
              "stop_strings": task.stop_strings}

    t0 = time.perf_counter()
    batched = generate(loaded.model, loaded.tokenizer, prompts, batch_size=args.batch_size,
                       **kwargs)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = generate(loaded.model, loaded.tokenizer, prompts, batch_size=1, **kwargs)
    t_single = time.perf_counter() - t0

    same = sum(a == b for a, b in zip(batched, single, strict=True))
    same_answer = sum(task.extract_answer(a) == task.extract_answer(b)
                      for a, b in zip(batched, single, strict=True))
    print(f"SmolLM2-135M fp32, {args.n} arith problems, <= {args.max_new_tokens} new tokens")
    print(f"{'':<38} {'one by one':>12} | {'batched':>12} |")
    print(ratio_line("wall time", t_single, t_batched))
    print(f"identical generations: {same}/{args.n}; identical extracted answers: "
          f"{same_answer}/{args.n}")
    print("targets: speed-up >= 5, identical answers")


if __name__ == "__main__":
    main()
