"""The per-task table of a suite (GLUE, SuperGLUE): technique × task, each cell the task's
official test metrics (two where the task has two: ``0.812/0.750``), the best of each column
marked, and the suite's score per technique, or the tasks it still lacks.

Built from `suite_standings` (each technique's chosen configuration per task, never chosen on
test); rendered as Markdown and HTML by the report and as a grid by the tournament.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from peftbench.analysis.suite_scores import SUITES, SuiteStanding, suite_standings
from peftbench.engine.results import RunSummary

#: the suites' names as their benchmarks spell them
SUITE_TITLES = {"glue": "GLUE", "superglue": "SuperGLUE"}


@dataclass
class SuiteTable:
    """One suite's table for one base model: a row per technique, a column per task."""

    suite: str
    model: str
    headers: list[str]
    rows: list[list[str]]
    #: (row, column) of the cells best in their column
    best: set[tuple[int, int]] = field(default_factory=set)
    #: technique -> the suite's tasks it has no score on
    missing: dict[str, list[str]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """'GLUE / tiny-bert'."""
        return f"{SUITE_TITLES.get(self.suite, self.suite)} / {self.model}"

    def caption(self) -> str:
        """What the cells hold: each task's metrics, the score's definition."""
        name = SUITE_TITLES.get(self.suite, self.suite)
        return (f"Test metrics of each technique's configuration chosen on validation (seeds "
                f"averaged): {metric_labels(self.suite)}; the best of each column is marked. "
                f"{name} score: the mean of the task scores (a task with two metrics: their "
                "mean), once every task has one.")


def metric_labels(suite: str) -> str:
    """Which metrics each task's cell shows, e.g. ``cola matthews_corrcoef, mrpc
    f1/accuracy, mnli mnli_matched/mnli_mismatched accuracy, the others accuracy``."""
    labels = []
    for component, parts in SUITES[suite].items():
        tasks = list(dict.fromkeys(task.partition(":")[2] for task, _ in parts))
        metrics = list(dict.fromkeys(metric for _, metric in parts))
        if len(tasks) > 1:
            labels.append(f"{component} {'/'.join(tasks)} {'/'.join(metrics)}")
        elif metrics != ["accuracy"]:
            labels.append(f"{component} {'/'.join(metrics)}")
    return ", ".join(labels) + ", the others accuracy"


def suite_table(suite: str, model: str, standings: Sequence[SuiteStanding],
                techniques: Sequence[str] = ()) -> SuiteTable:
    """The table of ``standings`` (one suite, one model), the best suite score first;
    ``techniques`` adds rows for those without any result (every task missing)."""
    mine = {s.technique: s for s in standings if s.suite == suite and s.model == model}
    names = sorted(dict.fromkeys([*techniques, *mine]), key=lambda n: _rank(mine.get(n)))
    components = list(SUITES[suite])
    headers = ["technique", *components, f"{SUITE_TITLES.get(suite, suite)} score"]
    rows, missing = [], {}
    for name in names:
        standing = mine.get(name)
        missing[name] = list(standing.missing) if standing else components
        cells = [_cell(suite, component, standing) for component in components]
        rows.append([name, *cells, _score_cell(standing, missing[name])])
    table = SuiteTable(suite, model, headers, rows, missing=missing)
    table.best = _best_cells(suite, [mine.get(n) for n in names])
    return table


def suite_tables(runs: Sequence[RunSummary], min_tasks: int = 2) -> list[SuiteTable]:
    """A table per (suite, base model) whose results cover at least ``min_tasks`` of the
    suite's tasks (one task alone is its own section already)."""
    standings = suite_standings(runs)
    tables = []
    for suite, model in sorted({(s.suite, s.model) for s in standings}):
        mine = [s for s in standings if (s.suite, s.model) == (suite, model)]
        covered = {c for s in mine for c in SUITES[suite] if c not in s.missing}
        if len(covered) >= min_tasks:
            tables.append(suite_table(suite, model, mine))
    return tables


def _rank(standing: SuiteStanding | None) -> tuple[int, float, int]:
    """Rows in order: scored ones, best first, then those with the most tasks."""
    if standing is None:
        return (1, 0.0, 1 << 30)
    if standing.score is None:
        return (1, 0.0, len(standing.missing))
    return (0, -standing.score, 0)


def _cell(suite: str, component: str, standing: SuiteStanding | None) -> str:
    if standing is None or component not in standing.tasks:
        return "—"
    values = [standing.metrics[task][metric] for task, metric in SUITES[suite][component]]
    return "/".join(f"{v:.3f}" for v in values)


def _score_cell(standing: SuiteStanding | None, missing: list[str]) -> str:
    if standing is not None and standing.score is not None:
        return f"{standing.score:.3f}"
    return "— (missing: " + ", ".join(missing) + ")"


def _best_cells(suite: str, standings: list[SuiteStanding | None]) -> set[tuple[int, int]]:
    """The cells whose task score (or suite score, last column) is the column's highest."""
    best = set()
    columns = [*SUITES[suite], None]  # None: the suite's score
    for col, component in enumerate(columns, start=1):
        values = {row: (s.tasks.get(component) if component else s.score)
                  for row, s in enumerate(standings) if s is not None}
        found = [v for v in values.values() if v is not None]
        if found:
            top = max(found)
            best |= {(row, col) for row, v in values.items() if v is not None and v == top}
    return best


def table_markdown(table: SuiteTable) -> str:
    """The table in Markdown: the best of each column in bold, the caption below."""
    def cell(row: int, col: int, text: str) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if (row, col) in table.best else text

    lines = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(cell(r, c, t) for c, t in enumerate(row)) + " |"
              for r, row in enumerate(table.rows)]
    return "\n".join(lines) + "\n\n" + table.caption() + "\n"


def table_html(table: SuiteTable) -> str:
    """The table in HTML: the best of each column in bold, the caption below."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_bold(html.escape(t), (r, c) in table.best)}</td>"
                         for c, t in enumerate(row)) + "</tr>"
        for r, row in enumerate(table.rows))
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>{html.escape(table.caption())}</p>")


def _bold(text: str, bold: bool) -> str:
    return f"<b>{text}</b>" if bold else text
