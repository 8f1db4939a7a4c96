"""`peftbench report`: a self-contained HTML report, PNG charts and a Markdown table.

One section per (task, base model) group: the Pareto plot of the chosen metric pair (with
confidence intervals and the frontier), per-technique bars with error bars, training curves,
the table, and the runs that failed. The HTML embeds plotly.js, so it opens offline.

PNGs are drawn with matplotlib: plotly's own image export (kaleido) needs a Chrome install and
several seconds to start it, which a report should not depend on.
"""

from __future__ import annotations

import html
import io
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from peftbench import analysis as an
from peftbench.engine.results import RunSummary
from peftbench.errors import UserError

PNG_STYLE = {  # matplotlib: marker, face colour, colour, size
    an.DOMINATED: ("o", None, "gray", 4),
    an.NEAR: ("D", "none", "tab:orange", 7),
    an.FRONTIER: ("o", None, "tab:blue", 7),
}
STATUS_STYLE = {  # marker symbol, opacity, size
    an.FRONTIER: ("circle", 1.0, 12),
    an.NEAR: ("diamond-open", 0.9, 11),
    an.DOMINATED: ("circle", 0.35, 8),
}


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


# -- plotly figures --------------------------------------------------------------------------

def axis_title(spec: an.MetricSpec) -> str:
    """'peak memory ↓' for an axis."""
    return f"{spec.metric.label} {spec.arrow()}"


def _axis_format(spec: an.MetricSpec) -> dict:
    if spec.metric.kind == "bytes":
        return {"tickformat": ".3s", "ticksuffix": "B"}
    if spec.metric.kind == "count":
        return {"tickformat": ".3s"}
    return {}


def pareto_figure(points: Sequence[an.Aggregate], status: Sequence[str],
                  specs: Sequence[an.MetricSpec], title: str = "") -> go.Figure:
    """Scatter of two metrics: one trace per technique, the frontier as a dashed step line,
    within-noise points as open diamonds, dominated points faded; error bars = 95% CI."""
    sx, sy = specs[0], specs[1]
    fig = go.Figure()
    by_tech: dict[str, list[tuple[an.Aggregate, str]]] = {}
    for agg, st in zip(points, status, strict=True):
        if st != an.MISSING:
            by_tech.setdefault(agg.technique, []).append((agg, st))
    for tech, members in sorted(by_tech.items()):
        fig.add_trace(go.Scatter(
            x=[a.value(sx.name) for a, _ in members],
            y=[a.value(sy.name) for a, _ in members],
            error_x=error_bars([a for a, _ in members], sx.name),
            error_y=error_bars([a for a, _ in members], sy.name),
            mode="markers", name=tech, legendgroup=tech,
            marker={"symbol": [STATUS_STYLE[s][0] for _, s in members],
                    "opacity": [STATUS_STYLE[s][1] for _, s in members],
                    "size": [STATUS_STYLE[s][2] for _, s in members],
                    "line": {"width": 1}},
            text=[_hover(a, s, specs) for a, s in members],
            hovertemplate="%{text}<extra></extra>",
        ))
    front = sorted((a for a, s in zip(points, status, strict=True) if s == an.FRONTIER),
                   key=lambda a: a.value(sx.name))
    fig.add_trace(go.Scatter(
        x=[a.value(sx.name) for a in front], y=[a.value(sy.name) for a in front],
        mode="lines", name="Pareto frontier", line={"dash": "dash", "color": "black",
                                                    "shape": "vh" if sx.maximize == sy.maximize
                                                    else "hv"},
        hoverinfo="skip",
    ))
    fig.update_layout(title=title or f"{axis_title(sy)} vs {axis_title(sx)}",
                      xaxis={"title": {"text": axis_title(sx)}, **_axis_format(sx)},
                      yaxis={"title": {"text": axis_title(sy)}, **_axis_format(sy)},
                      template="plotly_white", height=560, legend={"font": {"size": 10}})
    return fig


def error_bars(points: Sequence[an.Aggregate], metric: str) -> dict[str, Any]:
    """Plotly error bars of ``metric``: each point's 95% interval (asymmetric where it comes
    from the test items), hidden when no point has one."""
    above, below = [], []
    for agg in points:
        value = agg.value(metric)
        low, high = agg.interval(metric) or (value, value)
        above.append(0.0 if value is None else high - value)
        below.append(0.0 if value is None else value - low)
    return {"type": "data", "symmetric": False, "array": above, "arrayminus": below,
            "visible": any(above) or any(below), "thickness": 1}


def _png_err(points: Sequence[an.Aggregate], metric: str, scale: float) -> list[list[float]]:
    """Matplotlib's (below, above) error lengths of ``metric``, divided by ``scale``."""
    bars = error_bars(points, metric)
    return [[v / scale for v in bars["arrayminus"]], [v / scale for v in bars["array"]]]


def _hover(agg: an.Aggregate, status: str, specs: Sequence[an.MetricSpec]) -> str:
    lines = [f"<b>{html.escape(agg.label)}</b>", f"{status}; seeds: {agg.n}"]
    for spec in specs:
        lines.append(html.escape(an.describe(agg, spec.metric).split(": ", 1)[1]))
    return "<br>".join(lines)


def bars_figure(techniques: Sequence[an.Aggregate], spec: an.MetricSpec,
                title: str = "") -> go.Figure:
    """Per-technique bars of one metric (best configuration on validation), with 95% CIs."""
    rows = [a for a in techniques if a.value(spec.name) is not None]
    rows.sort(key=lambda a: a.value(spec.name), reverse=spec.maximize)
    fig = go.Figure(go.Bar(
        x=[a.technique for a in rows], y=[a.value(spec.name) for a in rows],
        error_y=error_bars(rows, spec.name),
        text=[f"{a.n} seed{'s' if a.n != 1 else ''}" for a in rows],
        hovertext=[html.escape(a.label) for a in rows],
    ))
    fig.update_layout(title=title or f"{spec.metric.label} per technique (best configuration "
                      "on validation; 95% interval from test items and seeds)",
                      yaxis={"title": {"text": axis_title(spec)}, **_axis_format(spec)},
                      template="plotly_white", height=440)
    return fig


def curves_figure(points: Sequence[an.Aggregate], status: Sequence[str]) -> go.Figure:
    """Validation score and train loss over steps (mean over seeds); frontier and
    within-noise configurations shown, the others one legend click away."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation score", "train loss"))
    for agg, st in zip(points, status, strict=True):
        if not agg.runs:
            continue
        visible = True if st in (an.FRONTIER, an.NEAR) else "legendonly"
        for col, curve in ((1, "valid_curve"), (2, "train_loss_curve")):
            steps, values = _mean_curve([getattr(r, curve) for r in agg.runs])
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=agg.label,
                                     marker={"size": 4},
                                     legendgroup=agg.label, showlegend=col == 1,
                                     visible=visible), row=1, col=col)
    fig.update_layout(template="plotly_white", height=440, legend={"font": {"size": 9}})
    return fig


def _mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> tuple[list, list]:
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    steps = sorted(s for s in by_step if s is not None)
    return steps, [sum(by_step[s]) / len(by_step[s]) for s in steps]


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
    """The Markdown of one group: frontier, table, failed runs."""
    sx, sy = section.specs
    front = ", ".join(a.label for a in section.frontier()) or "none"
    parts = [f"## {section.title}\n",
             f"Pareto frontier of {axis_title(sy)} vs {axis_title(sx)}: {front}\n",
             markdown_table(an.summary_rows(section.configs, section.specs))]
    if section.failed:
        parts.append("### Failed runs\n")
        parts.append(markdown_table([_failed_row(r) for r in section.failed]))
    return "\n".join(parts)


def _failed_row(run: RunSummary) -> dict:
    return {"run": run.experiment_name, "status": run.status, "error": run.error or "—",
            "file": Path(run.path).name}


# -- the report ------------------------------------------------------------------------------

def render(results: an.ResultSet, sections: Sequence[Section]) -> dict[str, bytes]:
    """Every report file's name and content (HTML, Markdown, PNGs), built in memory."""
    files: dict[str, bytes] = {}
    md = ["# peftbench report\n"]
    body = []
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
    files = render(results, sections)
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
    failed = ""
    if section.failed:
        failed = "<h3>Failed runs</h3>" + _html_table([_failed_row(r) for r in section.failed])
    return (f"<section><h2>{html.escape(section.title)}</h2>"
            f"<p class='front'><b>Pareto frontier</b> of {html.escape(axis_title(sy))} vs "
            f"{html.escape(axis_title(sx))}: {front}</p>"
            f"{divs[0]}<h3>Per technique</h3>{divs[1]}<h3>Training curves</h3>{divs[2]}"
            f"<h3>Table</h3>{_html_table(rows)}{failed}</section>")


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
             "th{background:#f3f3f3}section{margin-bottom:3em}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>peftbench report</title>"
            f"<style>{style}</style></head><body><h1>peftbench report</h1>{body}</body></html>")


# -- PNGs (matplotlib) -----------------------------------------------------------------------

def pareto_png(section: Section) -> bytes:
    """The Pareto plot as a PNG."""
    sx, sy = section.specs
    (fx, ux), (fy, uy) = _png_unit(sx), _png_unit(sy)
    fig, ax = _figure((9, 6))
    for st, (fmt, face, color, size) in PNG_STYLE.items():
        pts = [a for a, s in zip(section.configs, section.status, strict=True) if s == st]
        if pts:
            ax.errorbar([a.value(sx.name) / fx for a in pts], [a.value(sy.name) / fy for a in pts],
                        xerr=_png_err(pts, sx.name, fx), yerr=_png_err(pts, sy.name, fy),
                        fmt=fmt, mfc=face,
                        color=color, ms=size, capsize=2, ls="none", label=st,
                        alpha=STATUS_STYLE[st][1])
    front = section.frontier()
    xs = [a.value(sx.name) / fx for a in front]
    ys = [a.value(sy.name) / fy for a in front]
    ax.step(xs, ys, where="pre" if sx.maximize == sy.maximize else "post", ls="--", c="k",
            lw=1)
    for agg, x, y in zip(front, xs, ys, strict=True):
        ax.annotate(agg.label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(axis_title(sx) + ux)
    ax.set_ylabel(axis_title(sy) + uy)
    ax.set_title(f"{section.title}: Pareto frontier (open diamonds: within noise)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _png_unit(spec: an.MetricSpec) -> tuple[float, str]:
    if spec.metric.kind == "bytes":
        return 1e9, " [GB]"
    if spec.metric.kind == "seconds":
        return 60.0, " [min]"
    if spec.metric.kind == "count":
        return 1e6, " [millions]"
    return 1.0, ""


def bars_png(section: Section) -> bytes:
    """Per-technique bars of the y metric with 95% CIs, as a PNG."""
    spec = section.specs[1]
    rows = sorted((a for a in section.techniques if a.value(spec.name) is not None),
                  key=lambda a: a.value(spec.name), reverse=spec.maximize)
    fig, ax = _figure((max(6, 0.3 * len(rows) + 2), 4.5))
    factor, unit = _png_unit(spec)
    ax.bar(range(len(rows)), [a.value(spec.name) / factor for a in rows],
           yerr=_png_err(rows, spec.name, factor), capsize=2,
           color="tab:blue")
    ax.set_xticks(range(len(rows)), [a.technique for a in rows], rotation=70, fontsize=7)
    ax.set_ylabel(axis_title(spec) + unit)
    ax.set_title(f"{section.title}: {spec.metric.label} per technique", fontsize=10)
    return _png(fig)


def _figure(size: tuple[float, float]):
    # A bare Figure (no pyplot): no global backend state, safe in threads (the web app).
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
