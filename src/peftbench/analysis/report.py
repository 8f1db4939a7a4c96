"""`peftbench report`: a self-contained HTML report, PNG charts and a Markdown table.

One section per (task, base model) group: what the test scores cannot tell (a tiny test split,
every technique scoring the same), the Pareto plot of the chosen metric pair (with confidence
intervals and the frontier), per-technique bars with error bars, training curves, the table, a
few wrong answers per technique (from the answers saved beside each result) and the runs that
failed. The HTML embeds plotly.js, so it opens offline.

The figures themselves (plotly and PNG) are in `peftbench.analysis.figures`.
"""

from __future__ import annotations

import functools
import html
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peftbench import analysis as an
from peftbench.analysis.answers import failure_rows
from peftbench.analysis.caveats import score_caveats
from peftbench.analysis.figures import (
    axis_title,
    bars_figure,
    bars_png,
    curves_figure,
    pareto_figure,
    pareto_png,
)
from peftbench.analysis.samples import SampleGrid, grid_html, grid_markdown, sample_grid
from peftbench.analysis.suite_tables import SuiteTable, suite_tables, table_html, table_markdown
from peftbench.engine.results import RunSummary
from peftbench.errors import UserError


@dataclass
class Section:
    """Everything shown for one (task, model) group."""

    task: str
    model: str
    configs: list[an.Aggregate]
    techniques: list[an.Aggregate]
    status: list[str]
    specs: list[an.MetricSpec]
    failed: list[RunSummary]

    @property
    def title(self) -> str:
        """'MetaMathQA / meta-llama/Llama-3.2-3B'."""
        return f"{self.task} / {self.model}"

    @property
    def slug(self) -> str:
        """A file-name-safe name of the group."""
        return re.sub(r"[^A-Za-z0-9]+", "-", f"{self.task}-{self.model}").strip("-").lower()

    @functools.cached_property
    def caveats(self) -> list[str]:
        """What the techniques' test scores cannot tell (see `score_caveats`)."""
        return score_caveats(self.techniques)

    @functools.cached_property
    def samples(self) -> SampleGrid:
        """Image runs' sample images: base model and each technique (empty for text)."""
        return sample_grid(self.techniques)

    @functools.cached_property
    def wrong_answers(self) -> list[dict]:
        """A few wrong test answers per technique (its best configuration's first run)."""
        return failure_rows(self.techniques)

    def frontier(self) -> list[an.Aggregate]:
        """Configurations exactly on the frontier, along the x metric."""
        front = [a for a, s in zip(self.configs, self.status, strict=True) if s == an.FRONTIER]
        return sorted(front, key=lambda a: a.value(self.specs[0].name))


def build_sections(results: an.ResultSet, x: str = "peak_memory", y: str = "test_score",
                   level: str = "config", task: str | None = None,
                   model: str | None = None, where: str = "") -> list[Section]:
    """Aggregate each (task, model) group and place its points relative to the frontier."""
    specs = [an.parse_metric_spec(x), an.parse_metric_spec(y)]
    if specs[0].name == specs[1].name:
        raise UserError(f"pick two different metrics (got {specs[0].name} twice)")
    clauses = an.parse_filter(where)
    runs = results.select(task, model)
    sections = []
    for group in sorted({(r.task, r.model) for r in runs}):
        members = [r for r in runs if (r.task, r.model) == group]
        points = an.aggregate(members, level)
        points, _ = an.apply_filter(points, clauses)
        techniques = [t for t in an.aggregate(members, "technique") if t.runs]
        techniques, _ = an.apply_filter(techniques, clauses)
        sections.append(Section(group[0], group[1], points, techniques,
                                an.frontier_status(points, specs), specs,
                                [r for r in members if not r.ok]))
    return sections


# -- Markdown --------------------------------------------------------------------------------

def markdown_table(rows: Sequence[dict]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (dicts with the same keys)."""
    if not rows:
        return "_no runs_\n"
    keys = list(rows[0])
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def section_markdown(section: Section) -> str:
    """The Markdown of one group: caveats, frontier, table, wrong answers, failed runs."""
    sx, sy = section.specs
    front = ", ".join(a.label for a in section.frontier()) or "none"
    parts = [f"## {section.title}\n",
             *[f"**Note:** {line}\n" for line in section.caveats],
             f"Pareto frontier of {axis_title(sy)} vs {axis_title(sx)}: {front}\n",
             markdown_table(an.summary_rows(section.configs, section.specs))]
    if section.wrong_answers:
        parts.append("### Wrong answers (a few per technique)\n")
        parts.append(markdown_table(section.wrong_answers))
    if section.failed:
        parts.append("### Failed runs\n")
        parts.append(markdown_table([_failed_row(r) for r in section.failed]))
    return "\n".join(parts)


def suite_markdown(table: SuiteTable) -> str:
    """The Markdown of a suite's per-task table, with a line per technique lacking tasks."""
    return (f"## {table.title}: per task\n\n{table_markdown(table)}\n"
            + "".join(f"{line}\n" for line in suite_missing_lines(table)))


def suite_html(table: SuiteTable) -> str:
    """The HTML section of a suite's per-task table."""
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in suite_missing_lines(table))
    return (f"<section><h2>{html.escape(table.title)}: per task</h2>{table_html(table)}"
            f"{lines}</section>")


def suite_missing_lines(table: SuiteTable) -> list[str]:
    """Why a technique has no suite score: the tasks it lacks (one line for all techniques
    when they lack the same)."""
    lacking = {name: tasks for name, tasks in table.missing.items() if tasks}
    if not lacking:
        return []
    name = table.title.split(" / ")[0]
    kinds = {tuple(tasks) for tasks in lacking.values()}
    if len(kinds) == 1 and len(lacking) == len(table.missing):
        return [f"No {name} score yet: every technique lacks {', '.join(next(iter(kinds)))}."]
    return [f"No {name} score for {who}: it lacks {', '.join(tasks)}."
            for who, tasks in lacking.items()]


def _failed_row(run: RunSummary) -> dict:
    return {"run": run.experiment_name, "status": run.status, "error": run.error or "—",
            "file": Path(run.path).name}


# -- the report ------------------------------------------------------------------------------

def render(results: an.ResultSet, sections: Sequence[Section],
           suites: Sequence[SuiteTable] = ()) -> dict[str, bytes]:
    """Every report file's name and content (HTML, Markdown, PNGs), built in memory; the
    ``suites`` tables (GLUE, SuperGLUE: technique × task) come first."""
    files: dict[str, bytes] = {}
    md = ["# peftbench report\n", *[suite_markdown(table) for table in suites]]
    body = [suite_html(table) for table in suites]
    first = True
    for section in sections:
        figs = [pareto_figure(section.configs, section.status, section.specs,
                              f"{section.title}: Pareto frontier"),
                bars_figure(section.techniques, section.specs[1]),
                curves_figure(section.configs, section.status)]
        divs = []
        for i, fig in enumerate(figs):
            divs.append(fig.to_html(full_html=False, include_plotlyjs=first,
                                    div_id=f"{section.slug}-{i}",
                                    config={"displaylogo": False}))
            first = False
        body.append(_section_html(section, divs))
        md.append(section_markdown(section))
        samples_md, sample_files = grid_markdown(section.samples, section.slug)
        if samples_md:
            md.append(samples_md)
            files.update(sample_files)
        files[f"pareto-{section.slug}.png"] = pareto_png(section)
        files[f"bars-{section.slug}.png"] = bars_png(section)
    md.append(_problems_markdown(results))
    files["report.md"] = "\n".join(md).encode()
    files["report.html"] = _page("\n".join(body) + _problems_html(results)).encode()
    return files


def write_report(paths: Sequence[str | Path], out_dir: str | Path, x: str = "peak_memory",
                 y: str = "test_score", level: str = "config", task: str | None = None,
                 model: str | None = None, where: str = "") -> list[Path]:
    """Load results, build the report in memory, then write each file atomically into
    ``out_dir`` (a user error leaves no file behind). Returns the written paths."""
    results = an.load_results(paths)
    sections = build_sections(results, x, y, level, task, model, where)
    files = render(results, sections, suite_tables(results.select(task, model)))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [_atomic_write(out / name, content) for name, content in files.items()]


def _atomic_write(path: Path, content: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _section_html(section: Section, divs: Sequence[str]) -> str:
    sx, sy = section.specs
    front = ", ".join(html.escape(a.label) for a in section.frontier()) or "none"
    rows = an.summary_rows(section.configs, section.specs)
    failed = wrong = ""
    if section.failed:
        failed = "<h3>Failed runs</h3>" + _html_table([_failed_row(r) for r in section.failed])
    if section.wrong_answers:
        wrong = ("<h3>Wrong answers (a few per technique)</h3>"
                 + _html_table(section.wrong_answers))
    notes = "".join(f"<p class='caveat'><b>Note:</b> {html.escape(line)}</p>"
                    for line in section.caveats)
    return (f"<section><h2>{html.escape(section.title)}</h2>{notes}"
            f"<p class='front'><b>Pareto frontier</b> of {html.escape(axis_title(sy))} vs "
            f"{html.escape(axis_title(sx))}: {front}</p>"
            f"{divs[0]}<h3>Per technique</h3>{divs[1]}<h3>Training curves</h3>{divs[2]}"
            f"<h3>Table</h3>{_html_table(rows)}{grid_html(section.samples)}{wrong}{failed}"
            "</section>")


def _html_table(rows: Sequence[dict]) -> str:
    if not rows:
        return "<p><i>no runs</i></p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(k, '')))}</td>" for k in keys)
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _problems_markdown(results: an.ResultSet) -> str:
    if not results.problems:
        return ""
    rows = [{"file": p, "problem": why} for p, why in results.problems]
    return "## Files that could not be read\n\n" + markdown_table(rows)


def _problems_html(results: an.ResultSet) -> str:
    if not results.problems:
        return ""
    rows = [{"file": p, "problem": why} for p, why in results.problems]
    return "<section><h2>Files that could not be read</h2>" + _html_table(rows) + "</section>"


def _page(body: str) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
             "th{background:#f3f3f3}section{margin-bottom:3em}"
             ".caveat{background:#fff4d6;padding:6px 10px;border-left:4px solid #e0a800}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>peftbench report</title>"
            f"<style>{style}</style></head><body><h1>peftbench report</h1>{body}</body></html>")


