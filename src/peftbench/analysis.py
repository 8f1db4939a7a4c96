"""Turn result files into decisions: aggregation, Pareto frontiers and recommendations.

Works on any mix of our result files and the PEFT suite's published ones (both normalized by
`peftbench.results.summarize`). The unit of comparison is a *configuration*: one technique with
one set of hyper-parameters, whose seeds are aggregated into mean ± 95% confidence interval.
A *technique* view keeps, per technique, the configuration that is best on validation, so that
choosing never looks at the test split.

Frontiers and recommendations are computed within one (task, base model) group: numbers from
different tasks or models are not comparable.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftbench.errors import UserError
from peftbench.results import STATUS_SUCCESS, RunSummary, summarize

# --------------------------------------------------------------------------------------------
# Metrics


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


def _last_valid(run: RunSummary) -> float | None:
    return run.valid_curve[-1][1] if run.valid_curve else None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("test_score", "test score", True, "fraction", lambda r: r.test_score),
        Metric("valid_score", "validation score", True, "fraction", _last_valid),
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
        raise UserError(f"unknown metric '{name}'; known: {', '.join(METRICS)}")
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
            if isinstance(data, dict) and "run_info" in data and "train_info" in data:
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
        """The 95% confidence interval of ``metric`` (degenerate with one seed)."""
        value = self.values.get(metric)
        if value is None:
            return None
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
    return agg


def _selection_score(run: RunSummary) -> float:
    value = _last_valid(run)
    if value is None:
        value = run.test_score
    return -math.inf if value is None else value


def _config_label(run: RunSummary) -> str:
    if run.source == "peftbench":
        lr = f" lr={run.lr:g}" if isinstance(run.lr, int | float) else ""
        train = run.spec.get("train") or {}
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
# Techniques and capabilities

_NAME_ALIASES = {
    "prefixtuning": "prefix_tuning", "ptuning": "p_tuning", "adaptionprompt": "adaption_prompt",
    "prompttuning": "prompt_tuning", "full-finetuning": "full", "full_finetuning": "full",
    "fullfinetuning": "full", "full-fine-tuning": "full", "lntuning": "ln_tuning",
}


def technique_name(run: RunSummary) -> str:
    """A run's technique in catalog spelling ('prefixtuning' → 'prefix_tuning')."""
    name = run.method.strip().lower()
    return _NAME_ALIASES.get(name, name.replace("-", "_"))


def lookup_capabilities(technique: str, peft_type: str = "") -> dict[str, Any] | None:
    """The catalog's capabilities of a technique, or None when the catalog does not know it.

    Tries the technique name, its PEFT type and a few spellings; a missing catalog means every
    technique's capabilities are unknown.
    """
    try:
        from peftbench import methods
    except ImportError:
        return None
    lookup = getattr(methods, "capabilities", None)
    if lookup is None:
        return None
    candidates = [technique, peft_type.lower(), technique.replace("_", "-"),
                  technique.replace("_", "")]
    for name in dict.fromkeys(c for c in candidates if c):
        try:
            caps = lookup(name)
        except (UserError, KeyError, ValueError):
            continue
        if isinstance(caps, dict):
            return caps
    return None


CAPABILITY_WORDS = {
    "merge": "can be merged into the base weights",
    "multi_adapter": "several adapters can be loaded at once",
    "quantized": "trains on a quantized base model (any kind; 'quantized:bnb-4bit' for one)",
    "lora_convertible": "can be exported to plain LoRA",
    "prompt_only": "adds virtual tokens only, no weight changes",
    "layer:<type>": "adapts layers of this type: Linear, Conv or Embedding",
}


def capability_check(caps: dict[str, Any], word: str, arg: str = "") -> bool:
    """Whether capabilities ``caps`` satisfy the requirement ``word`` (with optional ``arg``)."""
    if word == "quantized":
        kinds = [str(k).lower() for k in caps.get("quantized") or []]
        return bool(kinds) and (not arg or arg.lower() in kinds)
    if word == "layer":
        return arg.lower() in {str(x).lower() for x in caps.get("layers") or []}
    return bool(caps.get(word))


# --------------------------------------------------------------------------------------------
# Filters: a small grammar parsed with regular expressions, never evaluated as code.

_UNITS = {
    "bytes": {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10,
              "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 1e3, "m": 1e6, "g": 1e9},
    "seconds": {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600},
    "count": {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9},
    "fraction": {"": 1, "%": 0.01},
}
_MAX_FILTER = 500
_CMP = re.compile(r"(?P<metric>[a-z_][a-z0-9_ -]*?)\s*(?P<op><=|>=|==|!=|<|>|=)\s*"
                  r"(?P<num>[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?|\.[0-9]+)\s*(?P<unit>[a-z%]*)")
_CAP = re.compile(r"(?P<neg>not\s+|!)?(?P<word>[a-z_]+)(?::(?P<arg>[a-z0-9_-]+))?")
_NAMES = re.compile(r"(?:method|technique)\s*(?P<op>==|=|!=)\s*(?P<names>[a-z0-9_|-]+)")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "=": lambda a, b: a == b, "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def parse_quantity(text: str, metric: Metric) -> float:
    """Parse '20GB', '1.5h', '10M' or '45%' in the units of ``metric``; a bad value is a
    `UserError`."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)\s*"
                         r"([A-Za-z%]*)\s*", text)
    if not match:
        raise UserError(f"bad value '{text}' for {metric.name}: expected a number and a unit")
    return _scale(float(match.group(1)), match.group(2), metric)


def _scale(number: float, unit: str, metric: Metric) -> float:
    units = _UNITS.get(metric.kind, {"": 1})
    factor = units.get(unit.lower())
    if factor is None:
        allowed = ", ".join(u for u in units if u) or "none"
        raise UserError(f"unknown unit '{unit}' for {metric.name} (units: {allowed})")
    value = number * factor
    if not math.isfinite(value):
        raise UserError(f"value out of range for {metric.name}")
    return value


@dataclass(frozen=True)
class Clause:
    """One condition of a filter: a metric bound, a capability, or a technique name."""

    kind: str  # "metric", "capability", "name"
    text: str
    metric: str = ""
    op: str = ""
    value: float = 0.0
    word: str = ""
    arg: str = ""
    negate: bool = False
    names: tuple[str, ...] = ()


def parse_filter(text: str) -> list[Clause]:
    """Parse a filter such as 'peak_memory < 20GB, merge and not prompt_only'.

    Clauses are separated by ',', ';' or 'and'; each is ``metric op value[unit]``, a
    capability (``merge``, ``quantized:bnb-4bit``, ``layer:conv``, optionally ``not``), or
    ``method = a|b``. Anything else is a `UserError`: the text is matched, never evaluated.
    """
    text = (text or "").strip()
    if len(text) > _MAX_FILTER:
        raise UserError(f"filter too long ({len(text)} characters, at most {_MAX_FILTER})")
    if not text:
        return []
    parts = re.split(r"\s*(?:,|;|\band\b)\s*", text.lower())
    return [_parse_clause(part) for part in parts]


def _parse_clause(part: str) -> Clause:
    part = part.strip()
    if not part:
        raise UserError("empty clause in filter (two separators in a row?)")
    if match := _NAMES.fullmatch(part):
        names = tuple(n for n in match["names"].split("|") if n)
        return Clause("name", part, names=names, negate=match["op"] == "!=")
    if match := _CMP.fullmatch(part):
        metric = get_metric(match["metric"])
        value = _scale(float(match["num"]), match["unit"], metric)
        return Clause("metric", part, metric=metric.name, op=match["op"], value=value)
    if (match := _CAP.fullmatch(part)) and _known_capability(match["word"], match["arg"]):
        return Clause("capability", part, word=match["word"], arg=match["arg"] or "",
                      negate=bool(match["neg"]))
    shown = part if len(part) <= 60 else part[:57] + "..."
    raise UserError(f"cannot parse filter clause '{shown}'; expected e.g. 'peak_memory < 20GB', "
                    f"'merge', 'not prompt_only', 'layer:conv' or 'method = lora|ia3'")


def _known_capability(word: str, arg: str | None) -> bool:
    if word == "layer":
        return (arg or "") in ("linear", "conv", "embedding")
    if word == "quantized":
        return True
    return word in CAPABILITY_WORDS and not arg


def parse_must(text: str) -> list[Clause]:
    """Parse a comma-separated list of required capabilities ('merge,quantized')."""
    clauses = parse_filter(text)
    for clause in clauses:
        if clause.kind != "capability":
            raise UserError(f"'{clause.text}' is not a capability; known: "
                            f"{', '.join(CAPABILITY_WORDS)}")
    return clauses


class CapabilityCache:
    """Capabilities per technique, looked up once per analysis."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, Any] | None] = {}

    def get(self, agg: Aggregate) -> dict[str, Any] | None:
        """The capabilities of ``agg``'s technique, or None when unknown."""
        if agg.technique not in self._known:
            self._known[agg.technique] = lookup_capabilities(agg.technique, agg.peft_type)
        return self._known[agg.technique]


def check_clause(clause: Clause, agg: Aggregate, caps: CapabilityCache) -> str | None:
    """Why ``agg`` fails ``clause``, or None when it passes."""
    if clause.kind == "name":
        hit = agg.technique in clause.names or agg.label.lower() in clause.names
        return None if hit != clause.negate else f"technique is {agg.technique}"
    if clause.kind == "metric":
        metric = METRICS[clause.metric]
        value = agg.value(clause.metric)
        if value is None:
            return f"{clause.metric} not measured"
        if _OPS[clause.op](value, clause.value):
            return None
        return (f"{clause.metric} {format_value(metric, value)} fails "
                f"{clause.op} {format_value(metric, clause.value)}")
    found = caps.get(agg)
    if found is None:
        return "capabilities unknown (not in the catalog)"
    if capability_check(found, clause.word, clause.arg) != clause.negate:
        return None
    wanted = clause.word + (f":{clause.arg}" if clause.arg else "")
    return f"{'has' if clause.negate else 'lacks'} {wanted}"


def apply_filter(aggs: Sequence[Aggregate], clauses: Sequence[Clause],
                 caps: CapabilityCache | None = None
                 ) -> tuple[list[Aggregate], list[tuple[Aggregate, list[str]]]]:
    """Split ``aggs`` into those passing every clause and those failing, with the reasons."""
    caps = caps or CapabilityCache()
    kept, dropped = [], []
    for agg in aggs:
        reasons = [r for r in (check_clause(c, agg, caps) for c in clauses) if r]
        (dropped.append((agg, reasons)) if reasons else kept.append(agg))
    return kept, dropped


# --------------------------------------------------------------------------------------------
# Pareto frontiers

FRONTIER, NEAR, DOMINATED, MISSING = "frontier", "within noise", "dominated", "not measured"


def non_dominated(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (n × k) that no other row Pareto-dominates."""
    return ~_dominated_by_any(values, values, maximize)


def _dominated_by_any(worse: np.ndarray, better: np.ndarray, maximize: Sequence[bool],
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
    """`_dominated_by_any` for two minimized metrics in O(n log n): sort ``b`` by the first
    metric and keep running minima of the second."""
    order = np.argsort(b[:, 0], kind="stable")
    xs = b[order, 0]
    best_y = np.concatenate([[np.inf], np.minimum.accumulate(b[order, 1])])
    upto = np.searchsorted(xs, a[:, 0], side="right")  # b with x <= a's x
    before = np.searchsorted(xs, a[:, 0], side="left")  # b with x < a's x
    return (best_y[upto] < a[:, 1]) | (best_y[before] <= a[:, 1])


def frontier_status(aggs: Sequence[Aggregate], specs: Sequence[MetricSpec]) -> list[str]:
    """Each aggregate's place relative to the Pareto frontier over ``specs``.

    'frontier': no other point dominates it. 'within noise': dominated, but no point dominates
    it beyond the confidence intervals (the dominating point's pessimistic end still does not
    beat its optimistic end). 'dominated': clearly beaten. 'not measured': a metric is missing.
    """
    names = [s.name for s in specs]
    maximize = [s.maximize for s in specs]
    status = [MISSING] * len(aggs)
    idx = [i for i, a in enumerate(aggs) if all(a.value(n) is not None for n in names)]
    if not idx:
        return status
    mean = np.array([[aggs[i].value(n) for n in names] for i in idx], dtype=float)
    half = np.array([[aggs[i].ci.get(n, 0.0) for n in names] for i in idx], dtype=float)
    sign = np.where(np.asarray(maximize), 1.0, -1.0)
    optimistic, pessimistic = mean + sign * half, mean - sign * half
    on_front = non_dominated(mean, maximize)
    clearly_beaten = _dominated_by_any(optimistic, pessimistic, maximize)
    for pos, i in enumerate(idx):
        status[i] = FRONTIER if on_front[pos] else DOMINATED if clearly_beaten[pos] else NEAR
    return status


def pareto_frontier(aggs: Sequence[Aggregate], specs: Sequence[MetricSpec]) -> list[Aggregate]:
    """The aggregates exactly on the Pareto frontier, sorted along the first metric."""
    status = frontier_status(aggs, specs)
    front = [a for a, s in zip(aggs, status, strict=True) if s == FRONTIER]
    return sorted(front, key=lambda a: a.value(specs[0].name))


# --------------------------------------------------------------------------------------------
# Recommendation


@dataclass
class Recommendation:
    """The best technique under constraints, its runners-up, and what was ruled out and why."""

    optimize: MetricSpec
    constraints: list[str]
    ranked: list[Aggregate]
    excluded: list[tuple[Aggregate, list[str]]]
    task: str = ""
    model: str = ""

    @property
    def best(self) -> Aggregate | None:
        """The winner, or None when nothing satisfies the constraints."""
        return self.ranked[0] if self.ranked else None

    def runners_up(self, count: int = 3) -> list[Aggregate]:
        """The next ``count`` techniques after the winner."""
        return self.ranked[1:1 + count]

    def within_noise_of_best(self, agg: Aggregate) -> bool:
        """Whether ``agg``'s confidence interval on the optimized metric overlaps the best's."""
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
        if self.best is None:
            lines.append("No technique satisfies the constraints.")
        else:
            lines.append(f"Best: {describe(self.best, metric)}")
            for agg in self.runners_up(runners_up):
                noise = " (within noise of the best)" if self.within_noise_of_best(agg) else ""
                lines.append(f"  runner-up: {describe(agg, metric)}{noise}")
        for agg, reasons in self.excluded:
            lines.append(f"  ruled out {agg.technique}: {'; '.join(reasons)}")
        return lines


def describe(agg: Aggregate, metric: Metric) -> str:
    """'lora (lora/rank32): test score 0.478 ± 0.010 (3 seeds)' for tables and explanations."""
    value = agg.value(metric.name)
    text = format_value(metric, value)
    half = agg.ci.get(metric.name, 0.0)
    if agg.n > 1 and value is not None:
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
    return Recommendation(spec, described, ranked, excluded, first.task, first.model)


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
        metric = METRICS["peak_memory"]
        bound = (float(max_memory) if isinstance(max_memory, int | float)
                 else parse_quantity(str(max_memory), metric))
        clauses.append(Clause("metric", f"peak_memory <= {max_memory}", metric="peak_memory",
                              op="<=", value=bound))
    must_text = must if isinstance(must, str) else ",".join(must)
    clauses += parse_must(must_text)
    clauses += parse_filter(where)
    return clauses, [c.text for c in clauses]


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
            metric = METRICS[name]
            text = format_value(metric, agg.value(name))
            if agg.n > 1 and agg.value(name) is not None:
                text += f" ± {format_value(metric, agg.ci.get(name, 0.0))}"
            row[metric.label] = text
        value = agg.value(key_metric.name)
        sort_value = -math.inf if value is None else value * (1 if key_metric.maximize else -1)
        rows.append((order[st], -sort_value, agg.label, row))
    return [row for *_, row in sorted(rows, key=lambda t: t[:3])]
