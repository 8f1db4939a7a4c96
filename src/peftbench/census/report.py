"""Counting and output: the running `Tally` of a census, the census of cards, the JSON report
and the bar chart.

Only counters are kept, so a census's memory does not grow with its input. Counts come in two
views: "exactly one technique" (items naming one technique, after folding a variant into its
parent: QLoRA + LoRA is QLoRA) and "any mention".
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from peftbench.census.cards import (
    CARD_SOURCES,
    HUB_DATASET,
    CardColumns,
    detect_card,
    is_adapter,
    iter_cards,
)
from peftbench.census.names import fold_variants
from peftbench.errors import UserError
from peftbench.methods.aliases import display_name


@dataclass
class Tally:
    """Running counts of one census (cards or code files): constant size, whatever the input."""

    unit: str
    scanned: int = 0
    with_any: int = 0
    adapters: int = 0
    any_mention: Counter[str] = field(default_factory=Counter)
    exactly_one: Counter[str] = field(default_factory=Counter)
    by_source: dict[str, Counter[str]] = field(default_factory=dict)
    unmapped: Counter[str] = field(default_factory=Counter)

    def add(self, found: Mapping[str, set[str]], adapter: bool = False) -> None:
        """Count one item from its techniques per source."""
        self.scanned += 1
        self.adapters += adapter
        techniques: set[str] = set().union(*found.values()) if found else set()
        for source, names in found.items():
            self.by_source.setdefault(source, Counter()).update(names)
        if not techniques:
            return
        self.with_any += 1
        self.any_mention.update(techniques)
        folded = fold_variants(techniques)
        if len(folded) == 1:
            self.exactly_one.update(folded)

    def summary(self) -> dict[str, Any]:
        """Counts and shares as plain JSON data, techniques sorted by count."""
        exactly_one_total = sum(self.exactly_one.values())
        return {
            "unit": self.unit,
            "scanned": self.scanned,
            "with_any": self.with_any,
            "exactly_one_total": exactly_one_total,
            "peft_adapters": self.adapters,
            "exactly_one": _rows(self.exactly_one, exactly_one_total),
            "any_mention": _rows(self.any_mention, self.with_any, self.scanned),
            "by_source": {s: dict(c.most_common()) for s, c in sorted(self.by_source.items())},
            "unmapped_configs": dict(self.unmapped.most_common()),
        }


def _rows(counts: Counter[str], total: int, scanned: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        row = {"technique": name, "name": display_name(name), "count": count,
               "share": count / total if total else 0.0}
        if scanned is not None:
            row["share_of_scanned"] = count / scanned if scanned else 0.0
        rows.append(row)
    return rows


def census_cards(
    source: str = HUB_DATASET,
    *,
    sources: Iterable[str] = CARD_SOURCES,
    columns: CardColumns = CardColumns(),  # noqa: B008 - a frozen dataclass, never mutated
    limit: int | None = None,
    on_item: Callable[[], None] | None = None,
) -> Tally:
    """Count the techniques named by the cards of ``source`` (Hub id or local Parquet/JSONL).

    ``sources`` picks where to look in each card; ``limit`` stops after that many cards;
    ``on_item`` is called once per card (progress display).
    """
    sources = tuple(sources)
    unknown = sorted(set(sources) - set(CARD_SOURCES))
    if unknown:
        raise UserError(f"unknown source '{unknown[0]}'; choose from {', '.join(CARD_SOURCES)}")
    tally = Tally(unit="cards")
    for card in islice(iter_cards(source, columns), limit):
        tally.add(detect_card(card, sources), adapter=is_adapter(card))
        if on_item:
            on_item()
    return tally


def census_report(cards: Tally | None, code: Tally | None, inputs: Mapping[str, Any]) -> dict:
    """The JSON document of a census: inputs, then one summary per census that ran."""
    from peftbench import __version__

    report: dict[str, Any] = {"kind": "peftbench-census", "peftbench": __version__,
                              "inputs": dict(inputs)}
    if cards is not None:
        report["cards"] = cards.summary()
    if code is not None:
        report["code"] = code.summary()
    return report


def plot_census(report: Mapping[str, Any], path: str | os.PathLike[str], top: int = 12) -> Path:
    """Write a bar chart (PNG, SVG or PDF, by suffix) of the shares, atomically.

    One panel per census; for each of the ``top`` techniques two bars: its share of the items
    naming exactly one technique, and its share of the items mentioning any.
    """
    from peftbench.optional import require

    require(["matplotlib"], "the census chart")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, report[k]) for k in ("cards", "code") if k in report]
    if not panels:
        raise UserError("nothing to plot: the census ran on no input")
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 0.45 * top + 2),
                             squeeze=False)
    for ax, (kind, summary) in zip(axes[0], panels, strict=True):
        _bar_panel(ax, kind, summary, top)
    fig.tight_layout()
    try:
        return _atomic_save(fig, Path(path))
    finally:
        plt.close(fig)


def _bar_panel(ax: Any, kind: str, summary: Mapping[str, Any], top: int) -> None:
    names = [row["technique"] for row in summary["any_mention"][:top]]
    one = {row["technique"]: row["share"] for row in summary["exactly_one"]}
    anym = {row["technique"]: row["share"] for row in summary["any_mention"]}
    ys = list(range(len(names)))
    ax.barh([y - 0.2 for y in ys], [100 * one.get(n, 0.0) for n in names], height=0.4,
            label=f"exactly one technique (n={summary['exactly_one_total']:,})")
    ax.barh([y + 0.2 for y in ys], [100 * anym.get(n, 0.0) for n in names], height=0.4,
            label=f"any mention (n={summary['with_any']:,})")
    for y, n in zip(ys, names, strict=True):
        ax.text(100 * one.get(n, 0.0) + 0.5, y - 0.2, f"{100 * one.get(n, 0.0):.1f}%",
                va="center", fontsize=7)
    ax.set_yticks(ys, [display_name(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel(f"% of the {summary['unit']} in each group (n in the legend)")
    what = "model cards" if kind == "cards" else "source files (peft config classes)"
    ax.set_title(f"PEFT techniques in {summary['scanned']:,} {what}")
    ax.legend(loc="lower right", fontsize=8)


def chart_format(path: str | os.PathLike[str]) -> str:
    """The image format a chart path asks for; checked before a long census, not after it."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in {"png", "svg", "pdf"}:
        raise UserError(f"chart file must end in .png, .svg or .pdf: {path}")
    return fmt


def _atomic_save(fig: Any, path: Path) -> Path:
    fmt = chart_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=150)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
