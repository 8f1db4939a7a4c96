"""The GLUE and SuperGLUE scores: one number per benchmark suite from its tasks' results.

The benchmarks' own definition: the unweighted mean of the per-task scores, where a task with
two official metrics contributes their average (MRPC: F1 and accuracy; MNLI: matched and
mismatched accuracy). The diagnostics (SuperGLUE's AX-b and AX-g) are not part of the score.
Scores stay on the metrics' own scale (a fraction; a correlation from -1 to 1), not in percent.

`suite_scores` computes them per (base model, technique) from a set of runs, once every task of
a suite is present (`suite_standings` also for an incomplete suite, naming what is missing):
per task, the technique's configuration with the best validation score (choosing never looks
at test), its seeds' test metrics averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from peftbench.analysis.aggregation import config_key, technique_name
from peftbench.analysis.metrics import last_valid_score
from peftbench.engine.results import RunSummary

#: each suite's components: (task, metric) pairs whose values average into one task score
SUITES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "glue": {
        "cola": (("glue:cola", "matthews_corrcoef"),),
        "sst2": (("glue:sst2", "accuracy"),),
        "mrpc": (("glue:mrpc", "f1"), ("glue:mrpc", "accuracy")),
        "stsb": (("glue:stsb", "pearson"), ("glue:stsb", "spearman")),
        "qqp": (("glue:qqp", "f1"), ("glue:qqp", "accuracy")),
        "mnli": (("glue:mnli_matched", "accuracy"), ("glue:mnli_mismatched", "accuracy")),
        "qnli": (("glue:qnli", "accuracy"),),
        "rte": (("glue:rte", "accuracy"),),
        "wnli": (("glue:wnli", "accuracy"),),
    },
    "superglue": {
        "boolq": (("superglue:boolq", "accuracy"),),
        "cb": (("superglue:cb", "macro_f1"), ("superglue:cb", "accuracy")),
        "copa": (("superglue:copa", "accuracy"),),
        "multirc": (("superglue:multirc", "f1a"), ("superglue:multirc", "em")),
        "record": (("superglue:record", "f1"), ("superglue:record", "em")),
        "rte": (("superglue:rte", "accuracy"),),
        "wic": (("superglue:wic", "accuracy"),),
        "wsc": (("superglue:wsc", "accuracy"),),
    },
}


def suite_tasks(suite: str) -> list[str]:
    """The task names (``glue:cola``...) a suite's score needs, in the suite's order."""
    return list(dict.fromkeys(task for parts in SUITES[suite].values() for task, _ in parts))


def task_scores(suite: str, metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each component's score (the mean of its metrics) where all its metrics are present;
    ``metrics`` maps a task name to its test metrics."""
    found = {}
    for component, parts in SUITES[suite].items():
        values = [metrics.get(task, {}).get(metric) for task, metric in parts]
        if all(v is not None for v in values):
            found[component] = sum(values) / len(values)  # type: ignore[arg-type]
    return found


def suite_score(suite: str, metrics: Mapping[str, Mapping[str, float]]) -> float | None:
    """The suite's score from its tasks' test metrics, or None when a task or one of its
    official metrics is missing."""
    scores = task_scores(suite, metrics)
    if len(scores) < len(SUITES[suite]):
        return None
    return sum(scores.values()) / len(scores)


@dataclass(frozen=True)
class SuiteScore:
    """One technique's score on a suite, with the task scores it averages."""

    suite: str
    model: str
    technique: str
    score: float
    tasks: dict[str, float] = field(default_factory=dict)
    runs: int = 0


@dataclass(frozen=True)
class SuiteStanding:
    """One technique on one suite, complete or not: the chosen configurations' test metrics
    per task, the task scores they give, the tasks still missing, and the suite's score (None
    until nothing is missing)."""

    suite: str
    model: str
    technique: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tasks: dict[str, float] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    score: float | None = None
    runs: int = 0


def missing_tasks(suite: str, metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The suite's components (``cola``, ``mnli``...) without a score in ``metrics``: a task
    or one of its official metrics is absent."""
    scores = task_scores(suite, metrics)
    return [component for component in SUITES[suite] if component not in scores]


def suite_standings(runs: Sequence[RunSummary]) -> list[SuiteStanding]:
    """Per suite that the successful runs touch (any of its tasks), per (base model,
    technique): what is there and what is missing, and the score when complete. Sorted by
    suite, model, then technique."""
    found = []
    for (model, technique), members in sorted(_by_technique(runs).items()):
        metrics, used = _chosen_metrics(members)
        for suite in SUITES:
            tasks = [task for task in suite_tasks(suite) if task in metrics]
            if not tasks:
                continue
            mine = {task: metrics[task] for task in tasks}
            found.append(SuiteStanding(suite, model, technique, mine, task_scores(suite, mine),
                                       tuple(missing_tasks(suite, mine)),
                                       suite_score(suite, mine), sum(used[t] for t in tasks)))
    return sorted(found, key=lambda s: (s.suite, s.model, s.technique))


def suite_scores(runs: Sequence[RunSummary]) -> list[SuiteScore]:
    """The score of every suite whose tasks all have successful runs, per (base model,
    technique), sorted by suite then best score first."""
    found = [SuiteScore(s.suite, s.model, s.technique, s.score, s.tasks, s.runs)
             for s in suite_standings(runs) if s.score is not None]
    return sorted(found, key=lambda s: (s.suite, -s.score, s.model, s.technique))


def _by_technique(runs: Sequence[RunSummary]) -> dict[tuple[str, str], list[RunSummary]]:
    groups: dict[tuple[str, str], list[RunSummary]] = {}
    for run in runs:
        if run.ok and run.test_metrics:
            groups.setdefault((run.model, technique_name(run)), []).append(run)
    return groups


def _chosen_metrics(runs: list[RunSummary]) -> tuple[dict[str, dict[str, float]],
                                                     dict[str, int]]:
    """Per task: the test metrics of the configuration best on validation (its seeds
    averaged), and how many runs they come from."""
    by_task: dict[str, dict[str, list[RunSummary]]] = {}
    for run in runs:
        by_task.setdefault(run.task, {}).setdefault(config_key(run), []).append(run)
    metrics, used = {}, {}
    for task, configs in by_task.items():
        best = max(configs.values(), key=_validation_mean)
        names = set.intersection(*(set(r.test_metrics) for r in best))
        metrics[task] = {name: sum(r.test_metrics[name] for r in best) / len(best)
                         for name in names}
        used[task] = len(best)
    return metrics, used


def _validation_mean(runs: list[RunSummary]) -> float:
    scores = [s for s in (last_valid_score(r) for r in runs) if s is not None]
    return sum(scores) / len(scores) if scores else float("-inf")
