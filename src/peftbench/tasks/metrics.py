"""Corpus-level metrics of the GLUE and SuperGLUE tasks, on plain Python lists.

Classification metrics take predicted and reference class indices; a prediction of ``-1``
(an answer that names no class) counts as a class of its own, i.e. as wrong. Matthews
correlation and F1 come from scikit-learn, the correlations from SciPy (both imported on first
use); the answer-string metrics (ReCoRD's exact match and token F1) follow the SQuAD
normalization: lower case, no punctuation, no articles, single spaces.
"""

from __future__ import annotations

import math
import re
import string
import warnings
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def accuracy(predicted: Sequence[int], gold: Sequence[int]) -> float:
    """The share of predictions equal to their reference (0.0 for no items)."""
    if not gold:
        return 0.0
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def f1_of_class(predicted: Sequence[int], gold: Sequence[int], positive: int = 1) -> float:
    """F1 of the class ``positive`` (GLUE's F1 for MRPC and QQP, MultiRC's F1a): 0.0 when
    neither side names it."""
    from sklearn.metrics import f1_score

    if not gold:
        return 0.0
    return float(f1_score(list(gold), list(predicted), labels=[positive], average="micro",
                          zero_division=0))


def macro_f1(predicted: Sequence[int], gold: Sequence[int], classes: int) -> float:
    """The unweighted mean of the per-class F1 over classes ``0 .. classes-1`` (CB)."""
    from sklearn.metrics import f1_score

    if not gold:
        return 0.0
    return float(f1_score(list(gold), list(predicted), labels=list(range(classes)),
                          average="macro", zero_division=0))


def matthews(predicted: Sequence[int], gold: Sequence[int]) -> float:
    """Matthews correlation coefficient (CoLA): 0.0 when it is undefined (one class only)."""
    from sklearn.metrics import matthews_corrcoef

    if not gold:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(matthews_corrcoef(list(gold), list(predicted)))
    return value if math.isfinite(value) else 0.0


def pearson(predicted: Sequence[float], gold: Sequence[float]) -> float:
    """Pearson correlation (STS-B): 0.0 when it is undefined (fewer than two items or a
    constant side)."""
    from scipy.stats import pearsonr

    return _correlation(pearsonr, predicted, gold)


def spearman(predicted: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman rank correlation (STS-B): 0.0 when it is undefined."""
    from scipy.stats import spearmanr

    return _correlation(spearmanr, predicted, gold)


def _correlation(function: object, predicted: Sequence[float], gold: Sequence[float]) -> float:
    if len(gold) < 2 or len(set(predicted)) < 2 or len(set(gold)) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(function(list(predicted), list(gold))[0])  # type: ignore[operator]
    return value if math.isfinite(value) else 0.0


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, punctuation and articles removed, single
    spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals a normalized reference, else 0.0."""
    said = normalize_answer(prediction)
    return float(any(said == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """The best bag-of-tokens F1 of the normalized prediction against any reference."""
    said = normalize_answer(prediction).split()
    best = 0.0
    for reference in references:
        wanted = normalize_answer(reference).split()
        common = sum((Counter(said) & Counter(wanted)).values())
        if common:
            precision, recall = common / len(said), common / len(wanted)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def multirc_scores(groups: Sequence[str], predicted: Sequence[int],
                   gold: Sequence[int]) -> dict[str, float]:
    """MultiRC's metrics over answer options: ``f1a`` (F1 of "true" over every option) and
    ``em`` (the share of questions, i.e. groups, whose options are all right)."""
    right: dict[str, bool] = {}
    for group, p, g in zip(groups, predicted, gold, strict=True):
        right[group] = right.get(group, True) and p == g
    em = sum(right.values()) / len(right) if right else 0.0
    return {"f1a": f1_of_class(predicted, gold, positive=1), "em": em}
