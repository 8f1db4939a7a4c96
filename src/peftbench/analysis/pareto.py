"""Pareto frontiers that only claim what the data supports, and the summary table.

A point is beaten only by a *real* difference: test scores are compared paired on the same
items (`stats.paired_comparison`, Holm-corrected over the pairs of a comparison), other metrics
by a relative tolerance at least as large as their measured repeatability (`TIE_TOLERANCE`)
and, with several seeds, by non-overlapping intervals. Anything smaller is a tie.

`frontier_status` places each aggregate on the frontier (★: nothing beats it for real),
within noise (☆: its edge on the means is smaller than the noise), or dominated;
`summary_rows` turns that into table rows for reports and the dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from peftbench.analysis.aggregation import Aggregate
from peftbench.analysis.metrics import METRICS, MetricSpec, format_value
from peftbench.analysis.stats import Comparison, holm, paired_comparison

#: Relative differences at or below these are ties. Memory is the training phase's accounted
#: figure on CPU, which repeats exactly (benchmarks/bench_verdict.py: 0.00% spread over 3 runs),
#: or the allocator's peak on GPU; 0.5% leaves room for allocator jitter there. Times vary from
#: run to run by several percent.
TIE_TOLERANCE = {"peak_memory": 0.005, "train_time": 0.10, "total_time": 0.10,
                 "tokens_per_sec": 0.10, "inference_slowdown": 0.05}

FRONTIER, NEAR, DOMINATED, MISSING = "frontier", "within noise", "dominated", "not measured"


def non_dominated(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (n × k) that no other row Pareto-dominates."""
    return ~dominated_by_any(values, values, maximize)


def dominated_by_any(worse: np.ndarray, better: np.ndarray, maximize: Sequence[bool],
                     chunk: int = 512) -> np.ndarray:
    """For each row i of ``worse``, whether some row j of ``better`` is at least as good in
    every column and strictly better in one (rows compared by index: worse[i] vs better[j])."""
    sign = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    a, b = np.asarray(worse, float) * sign, np.asarray(better, float) * sign  # lower is better
    if a.shape[1] == 2:
        return _dominated_2d(a, b)
    out = np.zeros(len(a), dtype=bool)
    for start in range(0, len(a), chunk):
        block = a[start:start + chunk, None, :]
        no_worse = (b[None, :, :] <= block).all(axis=2)
        strictly = (b[None, :, :] < block).any(axis=2)
        out[start:start + chunk] = (no_worse & strictly).any(axis=1)
    return out


def _dominated_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`dominated_by_any` for two minimized metrics in O(n log n): sort ``b`` by the first
    metric and keep running minima of the second."""
    order = np.argsort(b[:, 0], kind="stable")
    xs = b[order, 0]
    best_y = np.concatenate([[np.inf], np.minimum.accumulate(b[order, 1])])
    upto = np.searchsorted(xs, a[:, 0], side="right")  # b with x <= a's x
    before = np.searchsorted(xs, a[:, 0], side="left")  # b with x < a's x
    return (best_y[upto] < a[:, 1]) | (best_y[before] <= a[:, 1])


def score_comparisons(aggs: Sequence[Aggregate]) -> dict[tuple[int, int], Comparison]:
    """Paired comparisons of the test score for every pair of aggregates scored on the same
    items, keyed by (i, j) with ``difference`` = score(i) − score(j), Holm-corrected together."""
    pairs: list[tuple[int, int]] = []
    found: list[Comparison] = []
    for i, a in enumerate(aggs):
        for j in range(i + 1, len(aggs)):
            b = aggs[j]
            if (a.test_items and b.test_items and a.items_fingerprint
                    and a.items_fingerprint == b.items_fingerprint):
                pairs.append((i, j))
                found.append(paired_comparison(a.test_items, b.test_items))
    out: dict[tuple[int, int], Comparison] = {}
    for (i, j), comp, p_adj in zip(pairs, found, holm([c.p for c in found]), strict=True):
        out[(i, j)] = Comparison(comp.difference, comp.low, comp.high, comp.p, comp.test, p_adj)
        out[(j, i)] = Comparison(-comp.difference, -comp.high, -comp.low, comp.p, comp.test,
                                 p_adj)
    return out


def real_order(aggs: Sequence[Aggregate], i: int, j: int, spec: MetricSpec,
               scores: dict[tuple[int, int], Comparison]) -> int:
    """+1 when aggregate i is really better than j on ``spec``, −1 when really worse, 0 for a
    difference within the noise (see the module docstring)."""
    name = spec.name
    a, b = aggs[i].value(name), aggs[j].value(name)
    if a is None or b is None or a == b:
        return 0
    better = 1 if (a > b) == spec.maximize else -1
    if name == "test_score" and (i, j) in scores:
        return better if scores[(i, j)].significant else 0
    tolerance = TIE_TOLERANCE.get(name, 0.0)
    if abs(a - b) <= tolerance * max(abs(a), abs(b)):
        return 0
    low_a, high_a = aggs[i].interval(name) or (a, a)
    low_b, high_b = aggs[j].interval(name) or (b, b)
    if high_a >= low_b and high_b >= low_a and (low_a, high_a) != (a, a):
        return 0  # the seeds' intervals overlap
    return better


def frontier_status(aggs: Sequence[Aggregate], specs: Sequence[MetricSpec]) -> list[str]:
    """Each aggregate's place relative to the Pareto frontier over ``specs``.

    'frontier' (★): no other point beats it for real — better beyond the noise on one metric
    and not worse beyond the noise on any. 'within noise' (☆): beaten for real, but on the
    frontier of the means (its edge is noise). 'dominated': beaten for real and off the means'
    frontier. 'not measured': a metric is missing.
    """
    names = [s.name for s in specs]
    maximize = [s.maximize for s in specs]
    status = [MISSING] * len(aggs)
    idx = [i for i, a in enumerate(aggs) if all(a.value(n) is not None for n in names)]
    if not idx:
        return status
    scores = score_comparisons(aggs) if "test_score" in names else {}
    mean = np.array([[aggs[i].value(n) for n in names] for i in idx], dtype=float)
    on_means_front = non_dominated(mean, maximize)
    for pos, i in enumerate(idx):
        beaten = False
        for j in idx:
            if j == i:
                continue
            orders = [real_order(aggs, j, i, spec, scores) for spec in specs]
            if min(orders) >= 0 and max(orders) > 0:
                beaten = True
                break
        status[i] = FRONTIER if not beaten else NEAR if on_means_front[pos] else DOMINATED
    return status


def pareto_frontier(aggs: Sequence[Aggregate], specs: Sequence[MetricSpec]) -> list[Aggregate]:
    """The aggregates on the Pareto frontier of the means (noise not considered: the line a
    plot draws), sorted along the first metric. `frontier_status` says which of them, and
    which others, the data supports."""
    names = [s.name for s in specs]
    points = [a for a in aggs if all(a.value(n) is not None for n in names)]
    if not points:
        return []
    mean = np.array([[a.value(n) for n in names] for a in points], dtype=float)
    mask = non_dominated(mean, [s.maximize for s in specs])
    front = [a for a, keep in zip(points, mask, strict=True) if keep]
    return sorted(front, key=lambda a: a.value(specs[0].name))


# --------------------------------------------------------------------------------------------
# Summary table


def cell_text(agg: Aggregate, name: str) -> str:
    """One metric of an aggregate as table text: its interval from the test items where
    recorded ('0.392 [0.309, 0.481]'), else ± over seeds when there are several."""
    metric = METRICS[name]
    text = format_value(metric, agg.value(name))
    if name in agg.bounds:
        low, high = agg.bounds[name]
        text += f" [{format_value(metric, low)}, {format_value(metric, high)}]"
    elif agg.n > 1 and agg.value(name) is not None:
        text += f" ± {format_value(metric, agg.ci.get(name, 0.0))}"
    return text


def summary_rows(aggs: Sequence[Aggregate], specs: Sequence[MetricSpec],
                 metrics: Sequence[str] = ("test_score", "peak_memory", "train_time",
                                           "file_size", "trainable_params", "forgetting")
                 ) -> list[dict[str, Any]]:
    """Table rows (label, technique, frontier status, formatted metrics) sorted by frontier
    status, then by the second metric of ``specs`` (the score, usually)."""
    status = frontier_status(aggs, specs)
    order = {FRONTIER: 0, NEAR: 1, DOMINATED: 2, MISSING: 3}
    key_metric = specs[-1]
    rows = []
    for agg, st in zip(aggs, status, strict=True):
        row: dict[str, Any] = {"configuration": agg.label, "technique": agg.technique,
                               "frontier": st, "seeds": agg.n}
        for name in dict.fromkeys([*(s.name for s in specs), *metrics]):
            row[METRICS[name].label] = cell_text(agg, name)
        value = agg.value(key_metric.name)
        sort_value = -math.inf if value is None else value * (1 if key_metric.maximize else -1)
        rows.append((order[st], -sort_value, agg.label, row))
    return [row for *_, row in sorted(rows, key=lambda t: t[:3])]
