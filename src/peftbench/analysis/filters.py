"""Filters and capability requirements on aggregates.

A filter is a small grammar ('peak_memory < 20GB, merge and not prompt_only') parsed with
regular expressions into `Clause` objects, never evaluated as code; `apply_filter` splits
aggregates into those passing every clause and those failing, with the reasons. Capability
clauses are checked against the methods catalog (`lookup_capabilities`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peftbench.analysis.aggregation import Aggregate
from peftbench.analysis.metrics import METRICS, Metric, format_value, get_metric
from peftbench.errors import UserError, unknown_name

# --------------------------------------------------------------------------------------------
# Capabilities


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
    "lora_convertible": "PEFT's convert_to_lora converts it exactly (`peftbench export "
                        "--to-lora` approximates any weight-changing technique by SVD)",
    "prompt_only": "adds virtual tokens only, no weight changes",
    "layer:<type>": "adapts layers of this type: Linear, Conv or Embedding",
}

#: the layer types a ``layer:<type>`` requirement names
LAYER_TYPES = ("linear", "conv", "embedding")


def capability_names() -> list[str]:
    """The capability names as users write them, spelled as `peftbench methods`' flags are
    (``multi-adapter``, ``lora-convertible``; underscores are accepted too)."""
    return [word.replace("_", "-") for word in CAPABILITY_WORDS]


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
_CAP = re.compile(r"(?P<neg>not\s+|!)?(?P<word>[a-z_-]+)(?::(?P<arg>[a-z0-9_-]+))?")
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
    if (match := _CAP.fullmatch(part)) and _known_capability(_word(match), match["arg"]):
        return Clause("capability", part, word=_word(match), arg=match["arg"] or "",
                      negate=bool(match["neg"]))
    if _CAP.fullmatch(part) and not any(ch in part for ch in "<>=!"):
        raise _unknown_capability(part)  # a bare word: a capability, misspelled
    shown = part if len(part) <= 60 else part[:57] + "..."
    raise UserError(f"cannot parse filter clause '{shown}'; expected e.g. 'peak_memory < 20GB', "
                    f"'merge', 'not prompt-only', 'layer:conv' or 'method = lora|ia3'")


def _word(match: re.Match[str]) -> str:
    """A capability word as stored: ``lora-convertible`` and ``lora_convertible`` alike."""
    return match["word"].replace("-", "_")


def _known_capability(word: str, arg: str | None) -> bool:
    if word == "layer":
        return (arg or "") in LAYER_TYPES
    if word == "quantized":
        return True
    return word in CAPABILITY_WORDS and not arg


def parse_must(text: str) -> list[Clause]:
    """Parse a comma-separated list of required capabilities ('merge,lora-convertible'); an
    unknown one is a `UserError` that suggests the closest and lists them all."""
    clauses = []
    for part in re.split(r"\s*(?:,|;|\band\b)\s*", (text or "").strip().lower()):
        if not part:
            continue
        match = _CAP.fullmatch(part)
        if match is None or not _known_capability(_word(match), match["arg"]):
            raise _unknown_capability(part)
        clauses.append(Clause("capability", part, word=_word(match), arg=match["arg"] or "",
                              negate=bool(match["neg"])))
    return clauses


def _unknown_capability(part: str) -> UserError:
    part = re.sub(r"^(?:not\s+|!)", "", part)
    word, _, arg = part.partition(":")
    if word.replace("-", "_") == "layer":
        return unknown_name("layer type", arg, list(LAYER_TYPES))
    names = [n.replace("layer:<type>", "layer:TYPE") for n in capability_names()]
    return unknown_name("capability", part, names)


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
