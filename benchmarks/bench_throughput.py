"""Training throughput of SmolLM2-135M + LoRA on this CPU, fp32 and bf16, as a fraction of the
machine's measured matmul peak in the same dtype, and what each speed-up of the training step
buys: length-bucketed batches, the optimizer's implementation (for-loop, foreach, fused) and
``torch.compile``.

Model FLOPs per token are counted as 2·N for the forward pass plus 2·N for the backward pass
through the frozen weights (activation gradients only; LoRA's own weight gradients are
negligible), with N the number of parameters in matmuls (embeddings excluded, LM head included).
Tokens are the batches' non-padding tokens, so that padding saved shows as tokens/s.

Every configuration trains the same examples (bucketing only regroups them) and runs
interleaved with the others, round after round, in one process: the ratios to the baseline
(plain shuffled batches, for-loop AdamW, as before this change) are what counts on a noisy
machine. Figures go to ``docs/bench_throughput.json``.

    .venv/bin/python benchmarks/bench_throughput.py [--steps 8] [--batch-size 8] [--rounds 3]
        [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from common import arith_features, lora_smollm2

from peftbench.engine.batching import collate, count_tokens, training_order
from peftbench.engine.measure import cpu_has_fast_bf16, matmul_peak_flops
from peftbench.engine.train import autocast_context

ROOT = Path(__file__).resolve().parent.parent


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls (Linear weights; tied LM head counted)."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings()
    if head is not None and not isinstance(head, torch.nn.Linear):
        n += head.weight.numel()
    return n


def make_optimizer(model, impl: str) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters in implementation ``impl``."""
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"loop": {"foreach": False}, "foreach": {"foreach": True},
              "fused": {"fused": True}}[impl]
    return torch.optim.AdamW(params, lr=1e-4, **kwargs)


def timed_steps(model, forward, batches, dtype, opt) -> tuple[float, float]:
    """(tokens/s over ``batches``, seconds per optimizer step) after one warm-up step."""
    device = torch.device("cpu")

    def step(batch) -> None:
        with autocast_context(device, dtype):
            loss = forward(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])
    t0 = time.perf_counter()
    for batch in batches:
        step(batch)
    seconds = time.perf_counter() - t0
    return sum(count_tokens(b) for b in batches) / seconds, seconds / len(batches)


def optimizer_step_seconds(model, impl: str, repeats: int = 50) -> float:
    """Seconds of one AdamW step alone (random gradients) in implementation ``impl``."""
    opt = make_optimizer(model, impl)
    params = [p for g in opt.param_groups for p in g["params"]]
    saved = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        opt.step()
    seconds = (time.perf_counter() - t0) / repeats
    with torch.no_grad():
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
            p.grad = None
    return seconds


def main() -> None:
    """Print tokens/s and the fraction of matmul peak per configuration, and the ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bucket-batches", type=int, default=8)
    ap.add_argument("--compile", action="store_true",
                    help="also measure torch.compile (its compile time is printed apart)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_throughput.json")
    args = ap.parse_args()
    model, tok = lora_smollm2()
    feats = arith_features(tok, args.batch_size * args.steps)

    def batches(window: int) -> list:
        order = training_order(feats, args.batch_size, args.steps, seed=0, bucket_window=window)
        return [collate([feats[i] for i in idx], tok.pad_token_id) for idx in order]

    plain, bucketed = batches(0), batches(args.bucket_batches)
    padded = {name: sum(b["input_ids"].numel() for b in bs) / sum(count_tokens(b) for b in bs)
              for name, bs in (("plain", plain), ("bucketed", bucketed))}
    bf16 = torch.bfloat16
    configs = {  # name: (dtype, batches, optimizer implementation, compiled)
        "fp32 baseline": (None, plain, "loop", False),
        "bf16 baseline": (bf16, plain, "loop", False),
        "bf16 + bucketed": (bf16, bucketed, "loop", False),
        "bf16 + bucketed + foreach AdamW": (bf16, bucketed, "foreach", False),
        "bf16 + bucketed + fused AdamW": (bf16, bucketed, "fused", False),
    }
    compiled = None
    compile_seconds = None
    if args.compile:
        configs["bf16 + bucketed + fused + compile"] = (bf16, bucketed, "fused", True)
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        timed_steps(model, compiled, bucketed[:2], bf16, make_optimizer(model, "fused"))
        compile_seconds = time.perf_counter() - t0
    tps: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (dtype, bs, impl, comp) in configs.items():
            forward = compiled if comp else model
            tps[name].append(timed_steps(model, forward, bs, dtype, make_optimizer(model, impl))[0])
    opt_seconds = {impl: statistics.median(optimizer_step_seconds(model, impl)
                                           for _ in range(args.rounds))
                   for impl in ("loop", "foreach", "fused")}
    peaks = {"fp32": matmul_peak_flops(torch.float32, repeats=3),
             "bf16": matmul_peak_flops(bf16, repeats=3)}
    flops_per_token = 4 * matmul_params(model)
    print(f"SmolLM2-135M + LoRA, batch {args.batch_size}, {args.steps} steps x {args.rounds} "
          f"rounds interleaved (median); CPU native bf16: {cpu_has_fast_bf16()}; threads: "
          f"{torch.get_num_threads()}")
    print(f"padded / real tokens: plain {padded['plain']:.3f}, bucketed (windows of "
          f"{args.bucket_batches} batches) {padded['bucketed']:.3f}")
    print(f"{'configuration':<36}{'tokens/s':>10}{'GFLOP/s':>10}{'peak':>8}{'fraction':>10}"
          f"{'÷ bf16 baseline':>17}")
    rows = {}
    base = statistics.median(tps["bf16 baseline"])
    for name, values in tps.items():
        med = statistics.median(values)
        peak = peaks["bf16" if configs[name][0] is bf16 else "fp32"]
        achieved = med * flops_per_token
        rows[name] = {"tokens_per_s": round(med, 1), "fraction_of_peak": round(achieved / peak, 3),
                      "ratio_to_bf16_baseline": round(med / base, 3)}
        print(f"{name:<36}{med:10.0f}{achieved / 1e9:10.1f}{peak / 1e9:8.0f}"
              f"{achieved / peak:10.2f}{med / base:17.3f}")
    print("AdamW step alone over LoRA's parameters (ms): " + ", ".join(
        f"{k} {v * 1e3:.2f}" for k, v in opt_seconds.items())
        + f"; fused ÷ loop {opt_seconds['fused'] / opt_seconds['loop']:.3f}")
    if compile_seconds is not None:
        print(f"torch.compile: {compile_seconds:.1f} s to compile (first two steps)")
    record = {"model": "smollm2-135m + lora", "task": "arith", "batch_size": args.batch_size,
              "steps": args.steps, "rounds": args.rounds, "bucket_batches": args.bucket_batches,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average": round(os.getloadavg()[0], 2),
              "padded_per_real_token": {k: round(v, 3) for k, v in padded.items()},
              "peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
              "configurations": rows,
              "optimizer_step_ms": {k: round(v * 1e3, 3) for k, v in opt_seconds.items()},
              "compile_seconds": None if compile_seconds is None else round(compile_seconds, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
