"""Cost-only runs: what a run measures when its scores would mean nothing.

A run is cost-only when its spec says so (``train.measure_scores=False``, as the memory-only
tournament sets) or when its model has random weights (``config:…``). It then trains and
measures memory, time, tokens/s, the checkpoint's size and the trainable parameters as any run
does, but skips validation, test, the base-model and forgetting probes: their figures are
recorded as not measured (null), with a note saying why, never as zero.
"""

from __future__ import annotations

from typing import Any


def scores_note(spec: Any, loaded: Any) -> str | None:
    """Why the run's scores are not measured (None when they are)."""
    if getattr(loaded, "random_weights", False):
        return (f"not measured: {spec.model} has random weights (built from its config); "
                "memory, time, tokens/s, checkpoint size and trainable parameters are real")
    if not spec.train.measure_scores:
        return "not measured: a cost-only run (measure_scores=false)"
    return None
