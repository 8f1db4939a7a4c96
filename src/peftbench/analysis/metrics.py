"""Metrics: what can be compared between runs, in which direction, and how it is shown.

`METRICS` names every measured quantity of a run (`Metric`); `get_metric` and
`parse_metric_spec` turn user text ('memory', 'peak_memory:min') into them, and `format_value`
prints a value in readable units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from peftbench.engine.results import RunSummary
from peftbench.errors import UserError, unknown_name


@dataclass(frozen=True)
class Metric:
    """A measured quantity of a run, with the direction in which it is better."""

    name: str
    label: str
    higher_is_better: bool
    kind: str  # "fraction", "bytes", "seconds", "count", "ratio", "nats", "rate"
    getter: Callable[[RunSummary], float | None]

    def get(self, run: RunSummary) -> float | None:
        """The metric's value for ``run``, or None when it was not measured."""
        value = self.getter(run)
        if value is None or isinstance(value, bool):
            return None
        value = float(value)
        return value if math.isfinite(value) else None


def last_valid_score(run: RunSummary) -> float | None:
    """The last validation score recorded during training, or None when there is none."""
    return run.valid_curve[-1][1] if run.valid_curve else None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("test_score", "test score", True, "fraction", lambda r: r.test_score),
        Metric("valid_score", "validation score", True, "fraction", last_valid_score),
        Metric("peak_memory", "peak memory", False, "bytes", lambda r: r.peak_memory),
        Metric("train_time", "train time", False, "seconds", lambda r: r.train_time),
        Metric("total_time", "total time", False, "seconds", lambda r: r.total_time),
        Metric("file_size", "checkpoint size", False, "bytes", lambda r: r.file_size),
        Metric("trainable_params", "trainable params", False, "count",
               lambda r: r.trainable_params),
        Metric("forgetting", "forgetting", False, "nats", lambda r: r.forgetting),
        Metric("tokens_per_sec", "tokens/s", True, "rate", lambda r: r.tokens_per_sec),
        Metric("inference_slowdown", "inference slowdown", False, "ratio",
               lambda r: r.inference_slowdown),
    ]
}

_ALIASES = {
    "accuracy": "test_score", "test_accuracy": "test_score", "score": "test_score",
    "test": "test_score", "valid_accuracy": "valid_score", "memory": "peak_memory",
    "mem": "peak_memory", "time": "train_time", "runtime": "train_time",
    "size": "file_size", "checkpoint_size": "file_size", "params": "trainable_params",
    "throughput": "tokens_per_sec", "slowdown": "inference_slowdown",
}


@dataclass(frozen=True)
class MetricSpec:
    """A metric together with the direction the user wants (by default the metric's own)."""

    metric: Metric
    maximize: bool

    @property
    def name(self) -> str:
        """The metric's canonical name."""
        return self.metric.name

    def arrow(self) -> str:
        """'↑' when higher is wanted, '↓' when lower is."""
        return "↑" if self.maximize else "↓"


def get_metric(name: str) -> Metric:
    """Resolve a metric name or alias; an unknown name is a `UserError` listing the known ones."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in METRICS:
        raise unknown_name("metric", name, list(METRICS))
    return METRICS[key]


def parse_metric_spec(text: str) -> MetricSpec:
    """Parse 'peak_memory', 'peak_memory:min' or 'test_score:max' into a `MetricSpec`."""
    name, _, direction = text.partition(":")
    metric = get_metric(name)
    direction = direction.strip().lower()
    if direction in ("", "auto"):
        return MetricSpec(metric, metric.higher_is_better)
    if direction in ("max", "up", "higher"):
        return MetricSpec(metric, True)
    if direction in ("min", "down", "lower"):
        return MetricSpec(metric, False)
    raise UserError(f"unknown direction '{direction}' in '{text}'; use ':min' or ':max'")


# --------------------------------------------------------------------------------------------
# Formatting


def format_value(metric: Metric, value: float | None) -> str:
    """A value in readable units: '22.3 GB', '15.7 min', '9.18M', '0.478'."""
    if value is None:
        return "—"
    if metric.kind == "bytes":
        return _si(value, ["B", "kB", "MB", "GB", "TB"], 1000)
    if metric.kind == "seconds":
        return f"{value / 3600:.2f} h" if value >= 3600 else (
            f"{value / 60:.1f} min" if value >= 60 else f"{value:.1f} s")
    if metric.kind == "count":
        return _si(value, ["", "K", "M", "B"], 1000).replace(" ", "")
    if metric.kind == "rate":
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _si(value: float, units: list[str], base: int) -> str:
    index = 0
    while abs(value) >= base and index < len(units) - 1:
        value /= base
        index += 1
    return f"{value:.3g} {units[index]}".rstrip() if index else f"{value:.0f} {units[0]}".rstrip()
