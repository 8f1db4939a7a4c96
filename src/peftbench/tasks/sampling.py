"""Deterministic, seeded selection of examples.

Every sample in this package is a prefix of one seeded permutation (numpy's legacy
``RandomState``, so the GSM8K validation sample equals the PEFT suite's at seed 0). A prefix
makes samples nested: the 100 examples chosen with a seed contain the 50 chosen with it.
Selected indices are returned in file order, so a sample keeps the data's original order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def seeded_order(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` that depends only on ``n`` and ``seed``."""
    return [int(i) for i in np.random.RandomState(seed).permutation(n)]


def sample_indices(n: int, k: int | None, seed: int) -> list[int]:
    """``k`` of ``range(n)`` (all when ``k`` is None or too large), seeded, in ascending order."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(seeded_order(n, seed)[:k])


def carve(n: int, sizes: Sequence[int], seed: int) -> list[list[int]]:
    """Cut ``range(n)`` into disjoint parts of ``sizes`` plus the rest (last), each ascending.

    The parts are consecutive slices of one seeded permutation, so the first parts (e.g. test,
    validation) do not change when a later size changes.
    """
    order = seeded_order(n, seed)
    parts, start = [], 0
    for size in sizes:
        parts.append(sorted(order[start : start + size]))
        start += size
    parts.append(sorted(order[start:]))
    return parts
