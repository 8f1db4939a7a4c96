"""Harness overhead: peftbench's training step vs a bare PEFT + torch loop.

Same model (SmolLM2-135M + LoRA), same batches, same dtype, same optimizer; the two loops run
interleaved in one process so that machine noise hits both alike; both step AdamW in the
implementation the harness picks (fused on CPU), so that the ratio is the harness's own overhead.
Target: ratio <= 1.03. Figures go to ``docs/bench_harness_overhead.json``.

    .venv/bin/python benchmarks/bench_harness_overhead.py [--steps 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from pathlib import Path

import torch
from common import arith_features, lora_smollm2, ratio_line

from peftbench.engine.batching import batch_order, collate
from peftbench.engine.measure import MemoryTracker
from peftbench.engine.results import atomic_write_json
from peftbench.engine.spec import TrainParams
from peftbench.engine.train import train
from peftbench.methods import get_method
from peftbench.methods.base import adamw_implementation

OUT_JSON = Path(__file__).resolve().parent.parent / "docs" / "bench_harness_overhead.json"


def bare_loop(model, batches, lr: float) -> float:
    """The 20-line loop a practitioner would write: returns seconds for all steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, **adamw_implementation(params))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model.train()
    t0 = time.perf_counter()
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return time.perf_counter() - t0


def harness_loop(model, feats, steps: int, batch_size: int, lr: float, pad_id: int) -> float:
    """peftbench.engine.train on the same features; returns its measured train time."""
    params = TrainParams(max_steps=steps, batch_size=batch_size, eval_every=10**6,
                         warmup_steps=0, lr_scheduler="constant")
    out = train(model, get_method("lora"), feats, params, lr=lr, pad_id=pad_id,
                device=torch.device("cpu"), amp_dtype=None,
                memory=MemoryTracker(torch.device("cpu")))
    return out.train_time


def main() -> None:
    """Print per-step times of both loops and their ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args()
    model, tok = lora_smollm2()
    feats = arith_features(tok, args.batch_size * args.steps)
    # the bare loop gets exactly the batches peftbench will draw (same order, same padding)
    order = batch_order(len(feats), args.batch_size, args.steps, seed=0)
    batches = [collate([feats[i] for i in idx], tok.pad_token_id) for idx in order]
    bare_loop(model, batches[:1], 1e-4)  # warm-up
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(bare_loop(model, batches, 1e-4) / args.steps)
        ours.append(harness_loop(model, feats, args.steps, args.batch_size, 1e-4,
                                 tok.pad_token_id) / args.steps)
    harness, loop = statistics.median(ours), statistics.median(bare)
    print(f"SmolLM2-135M + LoRA, batch {args.batch_size}, fp32, {args.steps} steps x "
          f"{args.rounds} rounds (median per step)")
    print(f"{'':<38} {'peftbench':>12} | {'bare loop':>12} |")
    print(ratio_line("step time", harness, loop))
    print("target: ratio <= 1.03")
    atomic_write_json(args.out, {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": "smollm2-135m", "method": "lora", "dtype": "float32",
        "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
        "optimizer": adamw_implementation([p for p in model.parameters() if p.requires_grad]),
        "harness_step_seconds": harness, "bare_step_seconds": loop, "ratio": harness / loop,
        "rounds_harness": ours, "rounds_bare": bare, "target_ratio": 1.03,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0]})
    print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
