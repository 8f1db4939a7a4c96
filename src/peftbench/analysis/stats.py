"""How sure a score is, and whether two scores really differ.

A test score rests on a finite set of items and a few seeds. Each run records its per-item
outcomes (``test_items``: 1 right, 0 wrong, in the test split's order), so

- a score's interval comes from its items (Wilson's interval for one seed of right/wrong
  outcomes, else a bootstrap that resamples items and seeds together);
- two techniques are compared *paired*, on the same items (McNemar's exact test for one seed
  each, else a paired bootstrap of the per-item differences), which is far more sensitive than
  comparing two intervals;
- a set of pairwise comparisons is corrected for multiplicity (Holm), so that a table of many
  techniques does not call chance differences significant.

Everything here is plain numpy and deterministic (fixed bootstrap seed), so the same results
give the same verdict on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
BOOTSTRAP_SAMPLES = 4000
_Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n <= 0:
        raise ValueError("no items")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def as_matrix(item_lists: Sequence[Sequence[float]]) -> np.ndarray:
    """Per-item outcomes of several seeds as a (seeds × items) array; lengths must agree."""
    lengths = {len(items) for items in item_lists}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("per-item outcomes of different lengths cannot be pooled")
    return np.asarray(item_lists, dtype=float)


def _is_binary(matrix: np.ndarray) -> bool:
    return bool(np.isin(matrix, (0.0, 1.0)).all())


def score_interval(item_lists: Sequence[Sequence[float]],
                   samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float, float]:
    """(mean, low, high): the score and its 95% interval from the items (and seeds).

    One seed of right/wrong outcomes: Wilson. Otherwise a bootstrap resampling items and
    seeds jointly, so the interval carries both sources of variation.
    """
    matrix = as_matrix(item_lists)
    mean = float(matrix.mean())
    seeds, items = matrix.shape
    if seeds == 1 and _is_binary(matrix):
        low, high = wilson_interval(int(matrix.sum()), items)
        return mean, low, high
    rng = np.random.default_rng(0)
    # a resample of seeds is a multinomial weighting of them; then items are resampled
    weights = rng.multinomial(seeds, [1 / seeds] * seeds, size=samples) / seeds
    per_item = weights @ matrix  # (samples, items): item outcomes averaged over drawn seeds
    item_idx = rng.integers(0, items, size=(samples, items))
    means = np.take_along_axis(per_item, item_idx, axis=1).mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return mean, float(low), float(high)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes of two models."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    only_a = int(((a_arr == 1) & (b_arr == 0)).sum())
    only_b = int(((a_arr == 0) & (b_arr == 1)).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two scores on the same items.

    ``difference`` is a − b with its 95% interval; ``p`` the test's two-sided p-value and
    ``p_adjusted`` the same after the multiplicity correction of the comparisons it was made
    with (equal to ``p`` for a single comparison)."""

    difference: float
    low: float
    high: float
    p: float
    test: str
    p_adjusted: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the difference is real at the 5% level (after correction)."""
        p = self.p if self.p_adjusted is None else self.p_adjusted
        return p < ALPHA


def paired_comparison(a_lists: Sequence[Sequence[float]], b_lists: Sequence[Sequence[float]],
                      samples: int = BOOTSTRAP_SAMPLES) -> Comparison:
    """Compare two techniques on the same items (each given as its seeds' per-item outcomes).

    One seed each of right/wrong outcomes: McNemar's exact test, the interval of the difference
    from a paired bootstrap. Otherwise a bootstrap that resamples each technique's seeds and,
    jointly for both, the items, so that a difference one lucky seed makes is not taken for a
    real one; the p-value is twice the smaller tail of that distribution.
    """
    a, b = as_matrix(a_lists), as_matrix(b_lists)
    if a.shape[1] != b.shape[1]:
        raise ValueError("the two techniques were scored on different numbers of items")
    diff_items = a.mean(axis=0) - b.mean(axis=0)
    difference = float(diff_items.mean())
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(diff_items), size=(samples, len(diff_items)))
    if a.shape[0] == 1 and b.shape[0] == 1 and _is_binary(a) and _is_binary(b):
        low, high = np.quantile(diff_items[idx].mean(axis=1), [0.025, 0.975])
        return Comparison(difference, float(low), float(high), mcnemar_exact(a[0], b[0]),
                          "McNemar exact")
    per_item = _seed_resampled(a, samples, rng) - _seed_resampled(b, samples, rng)
    boot = np.take_along_axis(per_item, idx, axis=1).mean(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    if not diff_items.any() and (a == b).all():
        p = 1.0
    else:
        centred = boot - difference  # the null distribution: same spread, centred at 0
        p = float(min(1.0, 2 * min((centred >= abs(difference)).mean(),
                                   (centred <= -abs(difference)).mean()) + 1 / samples))
    return Comparison(difference, float(low), float(high), p, "paired bootstrap")


def _seed_resampled(matrix: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples × items): per-item outcomes averaged over a resample of the seeds (rows)."""
    seeds = matrix.shape[0]
    weights = rng.multinomial(seeds, [1 / seeds] * seeds, size=samples) / seeds
    return weights @ matrix


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
