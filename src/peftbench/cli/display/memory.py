"""What the memory-only tournament prints: one row per technique with its memory and speed."""

from __future__ import annotations

from typing import Any

from peftbench.cli.display.tables import Grid

HEADERS = ["technique", "peak memory", "frozen weights", "trainable state", "activations",
           "step time", "tokens/s", "checkpoint", "trainable params", "note"]


def memory_grid(rows: list[dict[str, Any]], device: dict[str, Any], model: str) -> Grid:
    """The memory-only table: ``rows`` as `peftbench.tournament.memory.memory_rows` gives
    them, on ``device`` (as `device_of` describes it), for ``model``."""
    grid = Grid(HEADERS, title=f"Memory and speed: {model} (memory-only, no scores)",
                right=set(range(1, len(HEADERS) - 1)))
    for row in rows:
        grid.rows.append(_cells(row))
    grid.caption = _caption(rows, device)
    return grid


def _cells(row: dict[str, Any]) -> list[str]:
    if row["status"] != "success":
        return [row["method"], *[""] * (len(HEADERS) - 2), f"✗ {row['error'] or row['status']}"]
    return [row["method"], _bytes(row["peak_memory"]), _bytes(row["frozen_weights"]),
            _bytes(row["trainable_state"]), _bytes(row["activations"]),
            "—" if row["step_seconds"] is None else f"{row['step_seconds']:.3g} s",
            "—" if row["tokens_per_sec"] is None else f"{row['tokens_per_sec']:,.0f}",
            _bytes(row["file_size"]), _count(row["trainable_params"]), ""]


def _bytes(value: float | None) -> str:
    from peftbench.analysis.metrics import METRICS, format_value

    return format_value(METRICS["peak_memory"], value)


def _count(value: float | None) -> str:
    from peftbench.analysis.metrics import METRICS, format_value

    return format_value(METRICS["trainable_params"], value)


def _caption(rows: list[dict[str, Any]], device: dict[str, Any]) -> str:
    steps = max((r["steps"] for r in rows), default=0)
    threads = device.get("torch_threads")
    where = device.get("accelerator") or f"CPU ({device.get('cpu_model') or 'unknown'}, " \
        f"{threads or '?'} thread{'' if threads == 1 else 's'})"
    cuda = any(r.get("memory_method") == "cuda allocator" for r in rows)
    peak = ("the CUDA allocator's maximum while training" if cuda else
            "the training phase's accounted memory: frozen weights + trainable state "
            "(parameters, gradients, optimizer) + activations saved for backward")
    total = device.get("accelerator_memory")
    size = f" ({total / 2**30:.0f} GiB)" if isinstance(total, int | float) else ""
    return (f"{steps} steps per technique at its default learning rate on {where}{size}; "
            f"step time and tokens/s: median over the steps after the first; peak memory = "
            f"{peak}. Scores not measured (cost-only runs).")
