"""Loading result files and pooling runs into configurations and techniques.

The unit of comparison is a *configuration*: one technique with one set of hyper-parameters,
whose seeds are aggregated into mean ± 95% confidence interval (`aggregate`). A *technique*
view keeps, per technique, the configuration that is best on validation
(`choose_best_config`), so that choosing never looks at the test split.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peftbench.analysis.metrics import METRICS, last_valid_score
from peftbench.analysis.stats import score_interval
from peftbench.engine.record import is_result
from peftbench.engine.results import STATUS_SUCCESS, RunSummary, summarize
from peftbench.errors import UserError

# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class ResultSet:
    """All runs found under some folders, plus the files that could not be read."""

    runs: list[RunSummary]
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok_runs(self) -> list[RunSummary]:
        """Runs that finished successfully."""
        return [r for r in self.runs if r.ok]

    @property
    def failed_runs(self) -> list[RunSummary]:
        """Runs that failed or timed out (kept so that reports can list them)."""
        return [r for r in self.runs if not r.ok]

    def groups(self) -> list[tuple[str, str]]:
        """The (task, model) pairs present, in a stable order."""
        return sorted({(r.task, r.model) for r in self.runs})

    def select(self, task: str | None = None, model: str | None = None) -> list[RunSummary]:
        """The runs of one task and/or model (None = any); an empty result is a `UserError`."""
        runs = [r for r in self.runs
                if (task is None or r.task == task) and (model is None or r.model == model)]
        if not runs:
            found = ", ".join(f"{t} / {m}" for t, m in self.groups()) or "none"
            raise UserError(f"no runs for task={task or '*'} model={model or '*'}; "
                            f"found: {found}")
        return runs


def load_results(paths: Iterable[str | Path]) -> ResultSet:
    """Load every result file under the given files/folders (ours and the PEFT suite's).

    JSON files without ``run_info``/``train_info`` (configs) are skipped; files that cannot be
    parsed are listed in `ResultSet.problems`; failed runs are kept. A missing path, or paths
    with no result at all, is a `UserError`.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no result folder given")
    runs: list[RunSummary] = []
    problems: list[tuple[str, str]] = []
    for root in paths:
        if not root.exists():
            raise UserError(f"{root}: no such file or folder")
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for file in files:
            try:
                data = json.loads(file.read_bytes())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append((str(file), f"unreadable ({exc.__class__.__name__})"))
                continue
            if is_result(data):
                try:
                    runs.append(summarize(data, str(file)))
                except (AttributeError, TypeError, ValueError) as exc:
                    problems.append((str(file), f"malformed result ({exc.__class__.__name__})"))
    if not runs:
        names = ", ".join(str(p) for p in paths)
        raise UserError(f"no result files found in {names}")
    return ResultSet(runs, problems)


# --------------------------------------------------------------------------------------------
# Aggregation

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student t; 0 for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return mean, t * sd / math.sqrt(n)


@dataclass
class Aggregate:
    """One point of a comparison: a configuration (seeds pooled) or a technique's best one."""

    key: str
    label: str
    technique: str
    task: str
    model: str
    source: str
    runs: list[RunSummary]
    failed: list[RunSummary] = field(default_factory=list)
    values: dict[str, float | None] = field(default_factory=dict)
    ci: dict[str, float] = field(default_factory=dict)
    selected_on: str = ""
    n_configs: int = 1
    #: per-item test outcomes of each seed (seeds × items) when every run recorded them on
    #: the same items; the basis of item-level intervals and paired comparisons
    test_items: list[list[float]] | None = None
    items_fingerprint: str | None = None
    #: asymmetric 95% intervals (low, high) where they are known (the test score's, from items)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of successful runs (seeds) behind the values."""
        return len(self.runs)

    @property
    def peft_type(self) -> str:
        """The PEFT type of the configuration ('' for full fine-tuning or when unknown)."""
        run = (self.runs or self.failed or [None])[0]
        return str((run.peft_config or {}).get("peft_type") or "") if run else ""

    def value(self, metric: str) -> float | None:
        """The aggregated value of ``metric`` (mean over seeds, or the best run's)."""
        return self.values.get(metric)

    def interval(self, metric: str) -> tuple[float, float] | None:
        """The 95% confidence interval of ``metric``: from the test items (and seeds) for the
        test score when items were recorded, else from the seeds (degenerate with one)."""
        value = self.values.get(metric)
        if value is None:
            return None
        if metric in self.bounds:
            return self.bounds[metric]
        half = self.ci.get(metric, 0.0)
        return value - half, value + half


def config_key(run: RunSummary) -> str:
    """What identifies a configuration: everything in the run's setup except its seed."""
    if run.source == "peftbench" and run.spec:
        spec = {k: v for k, v in run.spec.items() if k != "name"}
        if isinstance(spec.get("train"), dict):
            spec["train"] = {k: v for k, v in spec["train"].items() if k != "seed"}
        blob = json.dumps([run.method, spec], sort_keys=True, default=str)
    else:
        train = {k: v for k, v in run.train_config.items() if k != "seed"}
        name = re.sub(r"[-_]?seed[-_=]?\d+", "", run.experiment_name)
        blob = json.dumps([name, run.method, run.lr, train, run.peft_config], sort_keys=True,
                          default=str)
    return f"{run.task}|{run.model}|" + hashlib.sha1(blob.encode()).hexdigest()[:12]


def aggregate(runs: Sequence[RunSummary], level: str = "config", stat: str = "mean",
              metrics: Iterable[str] | None = None) -> list[Aggregate]:
    """Pool runs into configurations (seeds → mean ± CI) or techniques (best configuration).

    ``level="technique"`` keeps, per technique, the configuration with the best validation
    score (the test score when no validation was recorded, noted in `Aggregate.selected_on`).
    ``stat="best"`` reports a configuration's best seed (chosen on validation) instead of the
    mean. Configurations whose runs all failed are returned too, with no values.
    """
    if level not in ("config", "technique"):
        raise UserError(f"unknown aggregation level '{level}'; use 'config' or 'technique'")
    if stat not in ("mean", "best"):
        raise UserError(f"unknown statistic '{stat}'; use 'mean' or 'best'")
    names = list(metrics) if metrics is not None else list(METRICS)
    by_config: dict[str, list[RunSummary]] = {}
    for run in runs:
        by_config.setdefault(config_key(run), []).append(run)
    configs = [_pool(key, members, stat, names) for key, members in by_config.items()]
    _disambiguate_labels(configs)
    if level == "config":
        return sorted(configs, key=lambda a: (a.technique, a.label))
    return _best_per_technique(configs)


def _pool(key: str, members: list[RunSummary], stat: str, names: list[str]) -> Aggregate:
    ok = [r for r in members if r.status == STATUS_SUCCESS]
    failed = [r for r in members if r.status != STATUS_SUCCESS]
    first = (ok or failed)[0]
    agg = Aggregate(key=key, label=_config_label(first), technique=technique_name(first),
                    task=first.task, model=first.model, source=first.source, runs=ok,
                    failed=failed)
    if stat == "best" and ok:
        best = max(ok, key=_selection_score)
        ok = [best]
        agg.runs = [best]
    for name in names:
        metric = METRICS[name]
        values = [v for v in (metric.get(r) for r in ok) if v is not None]
        if values:
            agg.values[name], agg.ci[name] = mean_ci(values)
        else:
            agg.values[name] = None
    _attach_items(agg, ok)
    return agg


def _attach_items(agg: Aggregate, runs: list[RunSummary]) -> None:
    """Per-item outcomes and the item-level interval of the test score, where every run has
    them on the same items and its score is their mean (an F1 or a correlation is not: its
    interval stays the seeds')."""
    items = [r.test_items for r in runs]
    prints = {r.items_fingerprint for r in runs}
    if not runs or any(not i for i in items) or len(prints) != 1:
        return
    if not all(_score_is_item_mean(r) for r in runs):
        return
    if len({len(i) for i in items}) != 1:
        return
    agg.test_items = [list(i) for i in items]
    agg.items_fingerprint = prints.pop()
    mean, low, high = score_interval(agg.test_items)
    agg.bounds["test_score"] = (low, high)
    agg.ci["test_score"] = max(high - mean, mean - low)


def _score_is_item_mean(run: RunSummary) -> bool:
    """Whether the run's test score is the mean of its per-item outcomes (accuracy, exact
    match), so that the items' interval is the score's."""
    items = run.test_items or []
    if run.test_score is None or not items:
        return False
    return math.isclose(run.test_score, sum(items) / len(items), abs_tol=1e-9)


def _selection_score(run: RunSummary) -> float:
    value = last_valid_score(run)
    if value is None:
        value = run.test_score
    return -math.inf if value is None else value


def _config_label(run: RunSummary) -> str:
    if run.source == "peftbench":
        lr = f" lr={run.lr:g}" if isinstance(run.lr, int | float) else ""
        train = run.spec.get("train") or {}
        if run.scores_note:  # trained to measure costs only (random weights, memory-only)
            return f"{run.method}{lr} (cost only)"
        if train.get("eval_test") is False:  # a tournament's tuning run: validation only
            stop = train.get("stop_after")
            return f"{run.method}{lr} (tuning{f', {stop} steps' if stop else ''})"
        return f"{run.method}{lr}"
    return run.experiment_name or run.method


def _disambiguate_labels(configs: list[Aggregate]) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for agg in configs:
        seen[(agg.task, agg.model, agg.label)] = seen.get((agg.task, agg.model, agg.label), 0) + 1
    for agg in configs:
        if seen[(agg.task, agg.model, agg.label)] > 1:
            agg.label = f"{agg.label} #{agg.key[-6:]}"


def _best_per_technique(configs: list[Aggregate]) -> list[Aggregate]:
    by_tech: dict[tuple[str, str, str], list[Aggregate]] = {}
    for agg in configs:
        by_tech.setdefault((agg.task, agg.model, agg.technique), []).append(agg)
    chosen = []
    for members in by_tech.values():
        best, on = choose_best_config(members)
        best.selected_on = on
        best.n_configs = len(members)
        best.failed = [r for m in members for r in m.failed]
        chosen.append(best)
    return sorted(chosen, key=lambda a: a.technique)


def reported_candidates(configs: Sequence[Aggregate]) -> list[Aggregate]:
    """The configurations that can stand for their technique: where a technique has some that
    scored test, only those; a tournament's tuning runs chose a rate, they are not the
    reported point."""
    tested = {c.technique for c in configs if c.values.get("test_score") is not None}
    return [c for c in configs
            if c.values.get("test_score") is not None or c.technique not in tested]


def choose_best_config(configs: Sequence[Aggregate]) -> tuple[Aggregate, str]:
    """The configuration with the best validation score (test score as a fallback), and the
    name of the metric the choice was made on.

    Configurations that never scored test (a tournament's tuning runs) are only candidates
    when no configuration did (see `reported_candidates`).
    """
    configs = reported_candidates(configs)
    for metric in ("valid_score", "test_score"):
        scored = [c for c in configs if c.values.get(metric) is not None]
        if scored:
            return max(scored, key=lambda c: c.values[metric]), metric
    return configs[0], ""


# --------------------------------------------------------------------------------------------
# Technique names

_NAME_ALIASES = {
    "prefixtuning": "prefix_tuning", "ptuning": "p_tuning", "adaptionprompt": "adaption_prompt",
    "prompttuning": "prompt_tuning", "full-finetuning": "full", "full_finetuning": "full",
    "fullfinetuning": "full", "full-fine-tuning": "full", "lntuning": "ln_tuning",
}


def technique_name(run: RunSummary) -> str:
    """A run's technique in catalog spelling ('prefixtuning' → 'prefix_tuning')."""
    name = run.method.strip().lower()
    return _NAME_ALIASES.get(name, name.replace("-", "_"))
