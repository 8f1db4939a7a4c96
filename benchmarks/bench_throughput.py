"""Training throughput of SmolLM2-135M + LoRA on this CPU, fp32 and bf16, as a fraction of the
machine's measured matmul peak in the same dtype.

Model FLOPs per token are counted as 2·N for the forward pass plus 2·N for the backward pass
through the frozen weights (activation gradients only; LoRA's own weight gradients are
negligible), with N the number of parameters in matmuls (embeddings excluded, LM head included).

    .venv/bin/python benchmarks/bench_throughput.py [--steps 4] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import arith_features, lora_smollm2

from peftbench.engine.batching import batch_order, collate, count_tokens
from peftbench.engine.measure import cpu_has_fast_bf16, matmul_peak_flops
from peftbench.engine.train import autocast_context


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls (Linear weights; tied LM head counted)."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings()
    if head is not None and not isinstance(head, torch.nn.Linear):
        n += head.weight.numel()
    return n


def tokens_per_second(model, batches, dtype) -> float:
    """Mean training tokens/s over the batches (after one warm-up step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    device = torch.device("cpu")

    def step(batch) -> None:
        with autocast_context(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])
    t0 = time.perf_counter()
    for batch in batches:
        step(batch)
    return sum(count_tokens(b) for b in batches) / (time.perf_counter() - t0)


def main() -> None:
    """Print tokens/s, achieved FLOP/s and the fraction of matmul peak for fp32 and bf16."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    model, tok = lora_smollm2()
    feats = arith_features(tok, args.batch_size * args.steps)
    order = batch_order(len(feats), args.batch_size, args.steps, seed=0)
    batches = [collate([feats[i] for i in idx], tok.pad_token_id) for idx in order]
    flops_per_token = 4 * matmul_params(model)
    print(f"SmolLM2-135M + LoRA, batch {args.batch_size}, {args.steps} steps; "
          f"CPU native bf16: {cpu_has_fast_bf16()}; threads: {torch.get_num_threads()}")
    print(f"{'dtype':<10}{'tokens/s':>10}{'achieved GFLOP/s':>18}{'matmul peak GFLOP/s':>21}"
          f"{'fraction':>10}")
    for name, dtype, peak_dtype in (("fp32", None, torch.float32),
                                    ("bf16", torch.bfloat16, torch.bfloat16)):
        peak = matmul_peak_flops(peak_dtype, repeats=3)
        tps = tokens_per_second(model, batches, dtype)
        achieved = tps * flops_per_token
        print(f"{name:<10}{tps:10.0f}{achieved / 1e9:18.1f}{peak / 1e9:21.1f}"
              f"{achieved / peak:10.2f}")


if __name__ == "__main__":
    main()
