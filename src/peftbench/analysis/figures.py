"""The report's figures: plotly (interactive, for the HTML page and the web app) and PNGs
drawn with matplotlib.

    section (points, frontier status, metric pair) ─ Pareto scatter ─ per-technique bars
                                                   ─ training curves ─ PNGs of the first two

PNGs are drawn with matplotlib: plotly's own image export (kaleido) needs a Chrome install and
several seconds to start it, which a report should not depend on.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from peftbench import analysis as an

if TYPE_CHECKING:
    from peftbench.analysis.report import Section

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
