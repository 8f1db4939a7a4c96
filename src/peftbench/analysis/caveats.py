"""What the test scores cannot say: a test split too small to separate techniques, and
contestants that all scored the same (often all 0.000, which is a problem with the setup, not a
result). Tables and recommendations print these lines instead of starring a "best".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from peftbench.analysis.aggregation import Aggregate

#: fewer test items than this and the score's 95% interval is wider than about ±0.18
TINY_TEST = 30
#: scores closer than this are the same score
SAME_SCORE = 1e-9


def test_items_count(aggs: Sequence[Aggregate]) -> int | None:
    """How many test items the techniques were scored on (None when not recorded)."""
    for agg in aggs:
        if agg.test_items:
            return len(agg.test_items[0])
        for run in agg.runs:
            if run.test_items:
                return len(run.test_items)
    return None


def scored(aggs: Sequence[Aggregate]) -> list[Aggregate]:
    """The techniques (or configurations) with a test score."""
    return [a for a in aggs if a.n and a.value("test_score") is not None]


def all_tied(aggs: Sequence[Aggregate]) -> bool:
    """Whether at least two contestants have a test score and every one is the same."""
    values = [a.value("test_score") for a in scored(aggs)]
    return len(values) >= 2 and max(values) - min(values) <= SAME_SCORE  # type: ignore[operator]


def unmeasured_note(aggs: Sequence[Aggregate]) -> str | None:
    """Why no contestant has a test score, when their runs were cost-only (random weights
    from a config, a memory-only tournament): their scores are missing, not zero."""
    if scored(aggs):
        return None
    notes = [r.scores_note for a in aggs for r in a.runs if r.scores_note]
    if not notes:
        return None
    return f"test scores {notes[0]}"


def score_caveats(aggs: Sequence[Aggregate]) -> list[str]:
    """Plain lines on what the test scores of ``aggs`` cannot tell: a tiny test split, and
    contestants that all scored the same ([] when neither applies)."""
    lines = [note] if (note := unmeasured_note(aggs)) else []
    items = test_items_count(scored(aggs))
    if items is not None and items < TINY_TEST:
        half = 1.96 * math.sqrt(0.25 / items)
        lines.append(f"only {items} test items: one item moves a score by {1 / items:.3f} and a "
                     f"score's 95% interval spans about ±{half:.2f}, so differences between "
                     "techniques are weak evidence; score more test items (the task's n_test, "
                     "test_fraction or test=FILE option)")
    if all_tied(aggs):
        value = scored(aggs)[0].value("test_score") or 0.0
        line = (f"every technique scored {value:.3f} on test: the scores do not tell them "
                "apart, so none is marked best")
        if value <= SAME_SCORE:
            line += ("; no test item was answered right, which usually means the answers are "
                     "not in the form the metric expects: see the wrong answers (the report, "
                     "or each run's .answers.jsonl file)")
        lines.append(line)
    return lines
