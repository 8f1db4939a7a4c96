"""Export's own cost on SmolLM2-135M: factorizing every Linear update, writing the checkpoint
and the vLLM check, without the two test-set evaluations (those cost what `peftbench run`'s
test evaluation costs).

The update is synthetic: for each of the 210 Linear layers (q/k/v/o, gate/up/down in 30 blocks)
a rank-64 product plus small full-rank noise, the shape of a typical fine-tuning update. The
errors printed are therefore illustrative; the timings are what they are.

    .venv/bin/python benchmarks/bench_export.py [--ranks 16 32 64 0.9]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from peftbench import export as ex
from peftbench.engine.models import load_model


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


def main() -> None:
    """Print, per rank: factorize time, write + vLLM-check time, mean error, checkpoint size."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", nargs="+", default=["16", "32", "64", "0.9"])
    ap.add_argument("--inner-rank", type=int, default=64)
    args = ap.parse_args()
    model = load_model("smollm2-135m").model
    update = synthetic_update(model, args.inner_rank)
    print(f"{len(update.layers)} Linear layers, synthetic update of rank {args.inner_rank} "
          f"+ noise; torch threads {torch.get_num_threads()}")
    print(f"{'rank':>6} {'factorize s':>12} {'write+check s':>14} {'mean error':>11} "
          f"{'max rank':>9} {'MiB':>8}")
    for text in args.ranks:
        rank = ex.parse_rank(text)
        t0 = time.perf_counter()
        factors, _ = ex.factorize(update, rank, torch.float32, None)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ex.write_lora(Path(tmp), factors, update, "causal-lm", "smollm2-135m")
            check = ex.vllm_compatible(tmp)
            size = ex.checkpoint_bytes(Path(tmp))
        t2 = time.perf_counter()
        mean = sum(f.relative_error for f in factors) / len(factors)
        assert check.compatible, check.problems
        print(f"{text:>6} {t1 - t0:12.2f} {t2 - t1:14.2f} {mean:11.4f} "
              f"{max(f.rank for f in factors):9d} {size / 2**20:8.2f}")


if __name__ == "__main__":
    main()
