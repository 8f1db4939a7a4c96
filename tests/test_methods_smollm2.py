"""One short training run per technique on the embedded SmolLM2-135M, recorded per technique.

Each run keeps the first 4 of SmolLM2's 30 blocks: the real weights, widths, head and module
names a technique is built on, at about a sixth of the cost (the full depth made this file a
fifth of the suite's time). Full-depth runs happen in tests/test_engine_real_models.py and the
benchmarks."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from methods_helpers import train_briefly  # noqa: E402

from peftbench.methods import all_methods, get_method  # noqa: E402

STEPS = 2
BLOCKS = 4  # of SmolLM2's 30
CONTESTANTS = [m.name for m in all_methods() if m.why_not("causal-lm", probe=False) is None]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTESTANTS)
def test_one_short_run_on_smollm2(name: str, record_property) -> None:
    method = get_method(name)
    reason = method.why_not("causal-lm")
    if reason:  # a hardware probe (QLoRA without bitsandbytes, a CUDA-only optimizer): stated
        record_property("run", {"method": name, "not_run": reason})
        assert reason.startswith(("not supported here", "needs a CUDA GPU"))
        return
    started = time.perf_counter()
    run = train_briefly(method, "smollm2-135m", "causal-lm", steps=STEPS, evaluate=False,
                        layers=BLOCKS)
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    record = {"method": name, "steps": STEPS, "blocks": BLOCKS, "losses": run.losses,
              "trainable_parameters": trainable, "seconds": time.perf_counter() - started}
    record_property("run", record)
    folder = os.environ.get("PEFTBENCH_METHOD_RUNS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(record, indent=1))
    assert all(math.isfinite(x) for x in run.losses) and len(run.losses) == STEPS
    assert trainable > 0
    if name != "trainable_tokens":  # SmolLM2's special tokens are not in these inputs
        assert run.losses[-1] != run.losses[0]  # the first step changed the model


@pytest.mark.slow
def test_at_least_35_contestants_on_smollm2() -> None:
    assert len(CONTESTANTS) >= 35
