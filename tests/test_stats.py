"""Intervals and paired comparisons against hand-computed cases, and the verdict they drive."""

from __future__ import annotations

import math

import pytest

from peftbench import analysis as an
from peftbench.analysis.aggregation import Aggregate
from peftbench.analysis.pareto import score_comparisons
from peftbench.analysis.stats import (
    holm,
    mcnemar_exact,
    paired_comparison,
    score_interval,
    wilson_interval,
)


def test_wilson_interval_hand_computed() -> None:
    # 18 of 48: p = 0.375; centre = (p + z²/2n)/(1 + z²/n), half = z·√(p(1−p)/n + z²/4n²)/(…)
    z, n, p = 1.959963984540054, 48, 18 / 48
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = wilson_interval(18, 48)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert (round(low, 3), round(high, 3)) == (0.252, 0.516)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_one_seed_interval_is_wilson_and_seeds_widen_nothing_when_equal() -> None:
    items = [1] * 18 + [0] * 30
    mean, low, high = score_interval([items])
    assert mean == pytest.approx(0.375) and (low, high) == pytest.approx(wilson_interval(18, 48))
    mean3, low3, high3 = score_interval([items, items, items])  # bootstrap over items, seeds
    assert mean3 == pytest.approx(0.375) and low3 < 0.375 < high3
    assert high3 - low3 == pytest.approx(high - low, abs=0.05)


def test_seeds_are_pooled_item_by_item() -> None:
    a = [1, 0] * 24
    b = [0, 1] * 24  # same score, every item flipped: seed noise, no item signal
    agree = score_interval([a, a])
    disagree = score_interval([a, b])
    assert agree[0] == disagree[0] == pytest.approx(0.5)
    assert (disagree[2] - disagree[1]) < (agree[2] - agree[1])  # averaging flips cancels items
    assert mcnemar_exact(a, b) == 1.0  # 24 vs 24 discordant: no difference


def test_mcnemar_exact_hand_computed() -> None:
    a = [1] * 10 + [0] * 2 + [1] * 5 + [0] * 31
    b = [0] * 10 + [1] * 2 + [1] * 5 + [0] * 31
    # 12 discordant pairs, 2 in b's favour: p = 2·(C(12,0)+C(12,1)+C(12,2))/2^12 = 158/4096
    assert mcnemar_exact(a, b) == pytest.approx(158 / 4096)
    assert mcnemar_exact(a, a) == 1.0
    comp = paired_comparison([a], [b])
    assert comp.test == "McNemar exact" and comp.significant
    assert comp.difference == pytest.approx(8 / 48) and comp.low < 8 / 48 < comp.high


def test_paired_bootstrap_with_seeds() -> None:
    better = [[1] * 30 + [0] * 18, [1] * 29 + [0] * 19]
    worse = [[1] * 10 + [0] * 38, [1] * 12 + [0] * 36]
    comp = paired_comparison(better, worse)
    assert comp.test == "paired bootstrap" and comp.significant and comp.low > 0
    same = paired_comparison(better, better)
    assert same.difference == 0 and same.p == 1.0 and not same.significant


def test_a_difference_one_lucky_seed_makes_is_not_significant() -> None:
    # technique A: one seed gets 40 of 48 right, the other 8; B gets 18 and 20 of the same 48.
    # Items alone (each item's mean over seeds) favour A; its seeds disagree more than that.
    lucky = [[1] * 40 + [0] * 8, [1] * 8 + [0] * 40]
    steady = [[1] * 18 + [0] * 30, [1] * 20 + [0] * 28]
    comp = paired_comparison(lucky, steady)
    assert comp.difference == pytest.approx(0.5 - 38 / 96)
    assert comp.low < 0 < comp.high and not comp.significant
    items_only = paired_comparison([[sum(x) / 2 for x in zip(*lucky, strict=True)]],
                                   [[sum(x) / 2 for x in zip(*steady, strict=True)]])
    assert items_only.difference == pytest.approx(comp.difference)
    assert items_only.high - items_only.low < comp.high - comp.low


def test_holm_hand_computed() -> None:
    # sorted 0.01, 0.03, 0.04 → 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def _agg(name: str, items: list[int], memory: float) -> Aggregate:
    agg = Aggregate(key=name, label=name, technique=name, task="t", model="m",
                    source="peftbench", runs=[])
    agg.values = {"test_score": sum(items) / len(items), "peak_memory": memory}
    agg.test_items, agg.items_fingerprint = [items], "same"
    mean, low, high = score_interval([items])
    agg.bounds["test_score"] = (low, high)
    return agg


def test_frontier_needs_a_significant_paired_difference() -> None:
    specs = [an.parse_metric_spec("peak_memory"), an.parse_metric_spec("test_score")]
    strong = _agg("strong", [1] * 30 + [0] * 18, 3.0e9)
    # 2 more right answers than "strong" (not significant), at a cost of 10% memory
    noisy = _agg("noisy", [1] * 32 + [0] * 16, 3.3e9)
    weak = _agg("weak", [1] * 5 + [0] * 43, 3.0e9 * 1.005)  # same memory within tolerance
    status = an.frontier_status([strong, noisy, weak], specs)
    # noisy's only edge (score) is noise, and it costs more memory: beaten for real, but on
    # the frontier of the means → within noise; weak: tied memory, far worse score → dominated
    assert status == [an.FRONTIER, an.NEAR, an.DOMINATED]
    comps = score_comparisons([strong, noisy, weak])
    assert not comps[(1, 0)].significant and comps[(0, 2)].significant
    assert comps[(0, 2)].p_adjusted >= comps[(0, 2)].p


def test_recommend_says_when_the_winner_is_not_significantly_better() -> None:
    from peftbench.analysis.recommendation import Recommendation

    spec = an.parse_metric_spec("test_score")
    best = _agg("lora", [1] * 20 + [0] * 28, 3e9)
    runner = _agg("oft", [1] * 18 + [0] * 30, 3e9)
    text = "\n".join(Recommendation(spec, [], [best, runner], []).explain())
    assert "NOT significantly better than oft" in text and "McNemar" in text
    clear = _agg("ia3", [0] * 48, 3e9)
    text = "\n".join(Recommendation(spec, [], [best, clear], []).explain())
    assert "significantly better than ia3" in text and "NOT" not in text
