"""Recommending the best technique for one (task, base model) group under constraints.

Constraints (a memory bound, required capabilities, a filter) apply per configuration; each
technique keeps its best remaining configuration, techniques are ranked on the optimized metric,
and every technique ruled out is listed with the reasons (`Recommendation.explain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from peftbench.analysis.aggregation import (
    Aggregate,
    aggregate,
    choose_best_config,
    reported_candidates,
)
from peftbench.analysis.caveats import all_tied, score_caveats
from peftbench.analysis.filters import (
    Clause,
    apply_filter,
    parse_filter,
    parse_must,
    parse_quantity,
)
from peftbench.analysis.metrics import (
    METRICS,
    Metric,
    MetricSpec,
    format_value,
    parse_metric_spec,
)
from peftbench.analysis.stats import Comparison, paired_comparison
from peftbench.engine.results import RunSummary
from peftbench.errors import UserError


@dataclass
class Recommendation:
    """The best technique under constraints, its runners-up, and what was ruled out and why."""

    optimize: MetricSpec
    constraints: list[str]
    ranked: list[Aggregate]
    excluded: list[tuple[Aggregate, list[str]]]
    task: str = ""
    model: str = ""
    #: what the test scores cannot tell (a tiny test split, every technique scoring the same)
    caveats: list[str] = field(default_factory=list)
    #: every remaining technique has the same test score: there is no best
    tied: bool = False
    #: why nothing is ranked when no run measured the optimized metric ("" otherwise)
    unmeasured: str = ""

    @property
    def best(self) -> Aggregate | None:
        """The winner, or None when nothing satisfies the constraints or all tie."""
        return self.ranked[0] if self.ranked and not self.tied else None

    def runners_up(self, count: int = 3) -> list[Aggregate]:
        """The next ``count`` techniques after the winner."""
        return self.ranked[1:1 + count]

    def versus_best(self, agg: Aggregate) -> Comparison | None:
        """The best's test score against ``agg``'s, paired on the same items (None when the
        optimized metric is not the test score or the items were not recorded for both)."""
        best = self.best
        if (best is None or self.optimize.name != "test_score" or not best.test_items
                or not agg.test_items or best.items_fingerprint != agg.items_fingerprint):
            return None
        return paired_comparison(best.test_items, agg.test_items)

    def within_noise_of_best(self, agg: Aggregate) -> bool:
        """Whether ``agg`` is not really worse than the best on the optimized metric: a paired
        test on the test items where they were recorded, else overlapping intervals."""
        comparison = self.versus_best(agg)
        if comparison is not None:
            return not comparison.significant
        best = self.best
        name = self.optimize.name
        if best is None or agg.interval(name) is None or best.interval(name) is None:
            return False
        lo, hi = agg.interval(name)
        best_lo, best_hi = best.interval(name)
        return lo <= best_hi and best_lo <= hi and (agg.n > 1 or best.n > 1)

    def explain(self, runners_up: int = 3) -> list[str]:
        """The recommendation as plain-text lines: winner, runners-up, exclusions."""
        metric = self.optimize.metric
        where = f" on {self.task} / {self.model}" if self.task else ""
        cons = "; ".join(self.constraints) or "none"
        lines = [f"Recommendation{where} — optimize {metric.name} {self.optimize.arrow()}, "
                 f"constraints: {cons}"]
        if not self.ranked:
            lines.append(self.unmeasured or "No technique satisfies the constraints.")
        elif self.best is None:
            lines.append(f"No best: every technique has the same {metric.name}.")
            lines += [f"  tied: {describe(agg, metric)}" for agg in self.ranked]
        else:
            lines.append(f"Best: {describe(self.best, metric)}")
            lines += self._margin_lines()
            for agg in self.runners_up(runners_up):
                noise = " (within noise of the best)" if self.within_noise_of_best(agg) else ""
                lines.append(f"  runner-up: {describe(agg, metric)}{noise}")
        lines += [f"  note: {line}" for line in self.caveats]
        for agg, reasons in self.excluded:
            lines.append(f"  ruled out {agg.technique}: {'; '.join(reasons)}")
        return lines


    def _margin_lines(self) -> list[str]:
        """Whether the winner's lead over the runner-up is supported by the data."""
        runner = self.runners_up(1)
        if not runner:
            return []
        other = runner[0]
        comparison = self.versus_best(other)
        if comparison is not None:
            detail = (f"difference {comparison.difference:+.3f} "
                      f"[{comparison.low:+.3f}, {comparison.high:+.3f}], "
                      f"{comparison.test} p={comparison.p:.3g}, "
                      f"{len(other.test_items[0])} items paired")
            if comparison.significant:
                return [f"  significantly better than {other.technique} ({detail})"]
            return [f"  NOT significantly better than {other.technique} ({detail}): on this "
                    "evidence the two tie; more test items or seeds would separate them"]
        if self.within_noise_of_best(other):
            return [f"  NOT significantly better than {other.technique}: their intervals "
                    "overlap"]
        if self.best is not None and self.best.n <= 1 and other.n <= 1:
            return [f"  lead over {other.technique} not tested: one run each and no per-item "
                    "outcomes recorded"]
        return []


def describe(agg: Aggregate, metric: Metric) -> str:
    """'lora (lora/rank32): test score 0.478 [0.41, 0.55] (3 seeds)' for tables and
    explanations: the interval from the test items where recorded, else ± over seeds."""
    value = agg.value(metric.name)
    text = format_value(metric, value)
    half = agg.ci.get(metric.name, 0.0)
    if metric.name in agg.bounds and value is not None:
        low, high = agg.bounds[metric.name]
        seeds = f", {agg.n} seeds" if agg.n > 1 else ""
        text += (f" [{format_value(metric, low)}, {format_value(metric, high)}] "
                 f"(95% interval from {len(agg.test_items[0]) if agg.test_items else '?'} "
                 f"items{seeds})")
    elif agg.n > 1 and value is not None:
        text += f" ± {format_value(metric, half)} ({agg.n} seeds)"
    label = f" ({agg.label})" if agg.label != agg.technique else ""
    return f"{agg.technique}{label}: {metric.label} {text}"


def recommend(runs: Sequence[RunSummary], optimize: str = "test_score",
              max_memory: str | float | None = None, must: str | Sequence[str] = (),
              where: str = "", stat: str = "mean") -> Recommendation:
    """Recommend the best technique for one (task, model) group under constraints.

    Constraints apply per configuration; each technique keeps its best remaining configuration
    (chosen on validation when optimizing the test score), and techniques are ranked on
    ``optimize``. Every technique with no remaining configuration is listed with the reasons.
    """
    _require_single_group(runs)
    spec = parse_metric_spec(optimize)
    clauses, described = _constraint_clauses(max_memory, must, where)
    configs = reported_candidates([a for a in aggregate(runs, "config", stat) if a.runs])
    kept, dropped = apply_filter(configs, clauses)
    ranked = _rank_techniques(kept, spec)
    winners = {a.technique for a in ranked}
    excluded = _exclusions(dropped, winners)
    first = runs[0]
    on_test = spec.name == "test_score"
    return Recommendation(spec, described, ranked, excluded, first.task, first.model,
                          score_caveats(ranked or configs) if on_test else [],
                          on_test and all_tied(ranked), _unmeasured(configs, spec))


def _unmeasured(configs: Sequence[Aggregate], spec: MetricSpec) -> str:
    """A line for when no configuration measured ``spec``'s metric (cost-only runs leave
    their scores out): a cost is the thing to optimize then."""
    if any(a.value(spec.name) is not None for a in configs):
        return ""
    return (f"No run measured {spec.name}: nothing to rank on; optimize a cost instead, "
            "e.g. --optimize peak_memory or --optimize train_time")


def _require_single_group(runs: Sequence[RunSummary]) -> None:
    groups = {(r.task, r.model) for r in runs}
    if not groups:
        raise UserError("no runs to compare")
    if len(groups) > 1:
        found = ", ".join(f"{t} / {m}" for t, m in sorted(groups))
        raise UserError(f"runs span several task/model groups ({found}); pick one with "
                        f"--task and --model")


def _constraint_clauses(max_memory: str | float | None, must: str | Sequence[str],
                        where: str) -> tuple[list[Clause], list[str]]:
    clauses: list[Clause] = []
    if max_memory not in (None, ""):
        bound = memory_bound(max_memory)
        clauses.append(Clause("metric", f"peak_memory <= {max_memory}", metric="peak_memory",
                              op="<=", value=bound))
    must_text = must if isinstance(must, str) else ",".join(must)
    clauses += parse_must(must_text)
    clauses += parse_filter(where)
    return clauses, [c.text for c in clauses]


def memory_bound(max_memory: str | float) -> float:
    """A memory bound in bytes: a number is bytes already, text needs its unit ('20GB',
    '24GiB', '512MiB'); a bare '20' is a `UserError`, since GB and bytes differ by 10^9."""
    if isinstance(max_memory, int | float):
        return float(max_memory)
    text = str(max_memory).strip()
    if text and text[-1].isdigit():
        raise UserError(f"bad value '{text}' for peak_memory: give a unit, e.g. {text}GB or "
                        f"{text}GiB (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    return parse_quantity(text, METRICS["peak_memory"])


def _rank_techniques(configs: Sequence[Aggregate], spec: MetricSpec) -> list[Aggregate]:
    by_tech: dict[str, list[Aggregate]] = {}
    for agg in configs:
        if agg.value(spec.name) is not None:
            by_tech.setdefault(agg.technique, []).append(agg)
    chosen = []
    for members in by_tech.values():
        if spec.name == "test_score":
            best, on = choose_best_config(members)
        else:
            best, on = _extreme(members, spec), spec.name
        best.selected_on, best.n_configs = on, len(members)
        chosen.append(best)
    sign = -1.0 if spec.maximize else 1.0
    return sorted(chosen, key=lambda a: (sign * a.value(spec.name), a.technique))


def _extreme(members: list[Aggregate], spec: MetricSpec) -> Aggregate:
    pick = max if spec.maximize else min
    return pick(members, key=lambda a: a.value(spec.name))


def _exclusions(dropped: Sequence[tuple[Aggregate, list[str]]],
                winners: set[str]) -> list[tuple[Aggregate, list[str]]]:
    """Per ruled-out technique, the reasons: those shared by all its configurations once,
    otherwise each configuration's own."""
    by_tech: dict[str, list[tuple[Aggregate, list[str]]]] = {}
    for agg, reasons in dropped:
        if agg.technique not in winners:
            by_tech.setdefault(agg.technique, []).append((agg, reasons))
    out = []
    for _tech, items in sorted(by_tech.items()):
        common = [r for r in items[0][1] if all(r in reasons for _, reasons in items)]
        if common or len(items) == 1:
            out.append((items[0][0], common or items[0][1]))
        else:
            out.append((items[0][0], [f"{a.label}: {', '.join(rs)}" for a, rs in items]))
    return out
