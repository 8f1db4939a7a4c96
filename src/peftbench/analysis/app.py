"""`peftbench app`: an interactive dashboard (Gradio) over result folders.

Pick a task and base model, two metrics, and see the Pareto plot and the table; filter
techniques by capability or with a free-text filter (parsed by `analysis.parse_filter`, never
evaluated); get a recommendation under constraints; compare two runs' configurations.

The view logic lives in `Dashboard` (plain Python, tested directly); `build_app` only wires it
to Gradio components. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from peftbench import analysis as an
from peftbench.analysis.answers import failures_markdown
from peftbench.analysis.caveats import score_caveats
from peftbench.analysis.figures import pareto_figure
from peftbench.analysis.suite_tables import suite_tables, table_markdown
from peftbench.engine.results import RunSummary
from peftbench.errors import UserError

CAPABILITY_FILTERS = {
    "mergeable": "merge",
    "multi-adapter": "multi_adapter",
    "quantized base": "quantized",
    "LoRA-convertible": "lora_convertible",
    "Linear layers": "layer:linear",
    "Conv layers": "layer:conv",
    "Embedding layers": "layer:embedding",
    "not prompt-only": "not prompt_only",
}
GROUP_SEP = " / "


class Dashboard:
    """What the app shows, computed from a `ResultSet`; every method returns plain data."""

    def __init__(self, results: an.ResultSet) -> None:
        self.results = results
        self._runs_by_group: dict[str, list[RunSummary]] = {}
        for run in results.runs:
            self._runs_by_group.setdefault(f"{run.task}{GROUP_SEP}{run.model}", []).append(run)

    @property
    def groups(self) -> list[str]:
        """'task / model' choices, in a stable order."""
        return sorted(self._runs_by_group)

    def default_group(self) -> str:
        """The group with the most runs."""
        return max(self.groups, key=lambda g: (len(self._runs_by_group[g]), g))

    def runs(self, group: str) -> list[RunSummary]:
        """The runs of one group; an unknown group is a `UserError`."""
        if group not in self._runs_by_group:
            raise UserError(f"unknown task/model '{group}'")
        return self._runs_by_group[group]

    def filter_clauses(self, capabilities: Sequence[str], text: str) -> list[an.Clause]:
        """Clauses from the capability checkboxes and the free-text filter."""
        words = [CAPABILITY_FILTERS[c] for c in capabilities if c in CAPABILITY_FILTERS]
        return an.parse_filter(", ".join(words)) + an.parse_filter(text)

    def view(self, group: str, x: str, y: str, level: str = "config",
             capabilities: Sequence[str] = (), text: str = ""
             ) -> tuple[go.Figure, pd.DataFrame, str]:
        """The Pareto plot, the table and a status line for the chosen group and metrics."""
        specs = [an.parse_metric_spec(x), an.parse_metric_spec(y)]
        if specs[0].name == specs[1].name:
            raise UserError("pick two different metrics")
        points = an.aggregate(self.runs(group), level)
        points, dropped = an.apply_filter(points, self.filter_clauses(capabilities, text))
        status = an.frontier_status(points, specs)
        fig = pareto_figure(points, status, specs, f"{group}: Pareto frontier")
        table = pd.DataFrame(an.summary_rows(points, specs))
        front = [a for a, s in zip(points, status, strict=True) if s == an.FRONTIER]
        lines = [f"**Frontier** ({len(front)}): " + (", ".join(a.label for a in front) or "—")]
        near = [a.label for a, s in zip(points, status, strict=True) if s == an.NEAR]
        if near:
            lines.append(f"**Within noise of the frontier**: {', '.join(near)}")
        if dropped:
            lines.append(f"Filtered out: {len(dropped)} of {len(points) + len(dropped)}")
        lines += [f"**Note:** {line}" for line in score_caveats(self.techniques(group))]
        lines.append(self.failed_markdown(group))
        return fig, table, "\n\n".join(line for line in lines if line)

    def failed_markdown(self, group: str) -> str:
        """The failed runs of a group, and unreadable files, as Markdown (empty when none)."""
        failed = [f"- {r.experiment_name} ({r.status}): {r.error or 'no message'}"
                  for r in self.runs(group) if not r.ok]
        unreadable = [f"- {Path(p).name}: {why}" for p, why in self.results.problems]
        parts = []
        if failed:
            parts.append("**Failed runs**\n\n" + "\n".join(failed))
        if unreadable:
            parts.append("**Unreadable files**\n\n" + "\n".join(unreadable))
        return "\n\n".join(parts)

    def suites_markdown(self) -> str:
        """The per-task table of each suite (GLUE, SuperGLUE) the results cover at least two
        tasks of, with its score per technique, as in the report; "" when there is none."""
        return "\n".join(f"### {table.title}\n\n{table_markdown(table)}"
                         for table in suite_tables(self.results.runs))

    def techniques(self, group: str) -> list[an.Aggregate]:
        """Each technique's best configuration in a group (chosen on validation)."""
        return [a for a in an.aggregate(self.runs(group), "technique") if a.runs]

    def wrong_answers(self, group: str) -> str:
        """A few wrong test answers per technique of a group, as Markdown: prompt, reference,
        the model's output and what was extracted from it."""
        table = failures_markdown(self.techniques(group))
        return table or "_No saved answers in these results (runs of peftbench before answers " \
                        "were saved, or results of the PEFT suite)._"

    def samples_html(self, group: str) -> str:
        """An image group's sample images (base model and each technique) as HTML."""
        from peftbench.analysis.samples import grid_html, sample_grid

        return grid_html(sample_grid(self.techniques(group))) or \
            "<p><i>No sample images in this group (only image-generation runs save them).</i></p>"

    def recommendation(self, group: str, optimize: str, max_memory: str,
                       must: Sequence[str], text: str = "") -> str:
        """The recommendation under constraints, as Markdown."""
        must_words = ",".join(CAPABILITY_FILTERS.get(m, m) for m in must)
        rec = an.recommend(self.runs(group), optimize, max_memory.strip() or None, must_words,
                           text)
        lines = rec.explain()
        head, rest = lines[0], lines[1:]
        return f"**{head}**\n\n" + "\n".join(f"- {line.strip()}" for line in rest)

    def run_choices(self, group: str) -> list[str]:
        """Labels of every run in a group, for the comparison pickers."""
        return [_run_label(r) for r in self.runs(group)]

    def compare(self, group: str, first: str, second: str) -> pd.DataFrame:
        """Two runs' configurations side by side, differing fields first."""
        by_label = {_run_label(r): r for r in self.runs(group)}
        if first not in by_label or second not in by_label:
            raise UserError("pick two runs to compare")
        a, b = _flat_config(by_label[first]), _flat_config(by_label[second])
        rows = [{"field": key, "A": a.get(key, "—"), "B": b.get(key, "—"),
                 "differs": a.get(key) != b.get(key)} for key in sorted(set(a) | set(b))]
        rows.sort(key=lambda r: (not r["differs"], r["field"]))
        return pd.DataFrame(rows, columns=["field", "A", "B", "differs"])


def _run_label(run: RunSummary) -> str:
    seed = f" seed={run.seed}" if run.seed is not None else ""
    failed = "" if run.ok else f" [{run.status}]"
    return f"{run.experiment_name}{seed}{failed} ({Path(run.path).name})"


def _flat_config(run: RunSummary) -> dict[str, str]:
    flat: dict[str, str] = {"method": run.method, "status": run.status}
    sources = {"spec": run.spec} if run.spec else {}
    sources |= {"peft_config": run.peft_config, "train_config": run.train_config}
    for prefix, data in sources.items():
        _flatten(prefix, data, flat)
    return flat


def _flatten(prefix: str, data: Any, out: dict[str, str]) -> None:
    if isinstance(data, dict) and data:
        for key, value in data.items():
            _flatten(f"{prefix}.{key}", value, out)
    else:
        out[prefix] = json.dumps(data, default=str) if not isinstance(data, str) else data


def _safe(fn, *outputs_on_error):
    """Wrap a callback so that a `UserError` shows as a message instead of a crash."""
    def wrapped(*args):
        try:
            return fn(*args)
        except UserError as exc:
            return (*outputs_on_error, f"⚠ {exc}")
    return wrapped


def build_app(results: an.ResultSet):
    """The Gradio Blocks app over ``results``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    board = Dashboard(results)
    metrics = list(an.METRICS)
    group0 = board.default_group()
    with gr.Blocks(title="peftbench", analytics_enabled=False) as demo:
        gr.Markdown("# peftbench — which fine-tuning technique?")
        with gr.Row():
            group = gr.Dropdown(board.groups, value=group0, label="task / base model",
                                elem_id="group")
            x = gr.Dropdown(metrics, value="peak_memory", label="x metric", elem_id="x-metric")
            y = gr.Dropdown(metrics, value="test_score", label="y metric", elem_id="y-metric")
            level = gr.Radio(["config", "technique"], value="config", label="points",
                             elem_id="level")
        with gr.Row():
            caps = gr.CheckboxGroup(list(CAPABILITY_FILTERS), label="must have",
                                    elem_id="capabilities")
            text = gr.Textbox(label="filter", elem_id="filter",
                              placeholder="e.g. peak_memory < 22GB, train_time < 20min")
        with gr.Tab("Pareto"):
            plot = gr.Plot(label="Pareto plot", elem_id="pareto-plot")
            status = gr.Markdown(elem_id="status")
            table = gr.Dataframe(label="table", elem_id="summary-table", interactive=False)
        with gr.Tab("Wrong answers"):
            answers = gr.Markdown(elem_id="wrong-answers")
        with gr.Tab("Samples"):
            samples = gr.HTML(elem_id="samples")
        suites = board.suites_markdown()
        if suites:
            with gr.Tab("Suites"):
                gr.Markdown(suites, elem_id="suites")
        with gr.Tab("Recommend"):
            with gr.Row():
                optimize = gr.Dropdown(metrics, value="test_score", label="optimize")
                max_memory = gr.Textbox(label="max peak memory", placeholder="e.g. 20GB")
                must = gr.CheckboxGroup(list(CAPABILITY_FILTERS), label="must have")
            go_btn = gr.Button("Recommend")
            advice = gr.Markdown(elem_id="recommendation")
        with gr.Tab("Compare runs"):
            with gr.Row():
                run_a = gr.Dropdown(board.run_choices(group0), label="run A")
                run_b = gr.Dropdown(board.run_choices(group0), label="run B")
            diff = gr.Dataframe(label="configurations", interactive=False)
            diff_msg = gr.Markdown()

        view_inputs = [group, x, y, level, caps, text]
        view = _safe(board.view, go.Figure(), pd.DataFrame())
        for component in (group, x, y, level, caps):
            component.change(view, view_inputs, [plot, table, status])
        text.submit(view, view_inputs, [plot, table, status])
        demo.load(view, view_inputs, [plot, table, status])

        def pickers(g: str):
            choices = board.run_choices(g)
            return gr.update(choices=choices, value=None), gr.update(choices=choices, value=None)
        group.change(pickers, [group], [run_a, run_b])
        def shown(g: str) -> str:
            try:
                return board.wrong_answers(g)
            except UserError as exc:
                return f"⚠ {exc}"
        group.change(shown, [group], [answers])
        demo.load(shown, [group], [answers])
        group.change(board.samples_html, [group], [samples])
        demo.load(board.samples_html, [group], [samples])

        def advise(g, opt, mem, must_have, filt):
            try:
                return board.recommendation(g, opt, mem, must_have, filt)
            except UserError as exc:
                return f"⚠ {exc}"
        go_btn.click(advise, [group, optimize, max_memory, must, text], [advice])

        def compare(g, a, b):
            if not a or not b:
                return pd.DataFrame(), "pick two runs"
            try:
                return board.compare(g, a, b), ""
            except UserError as exc:
                return pd.DataFrame(), f"⚠ {exc}"
        run_a.change(compare, [group, run_a, run_b], [diff, diff_msg])
        run_b.change(compare, [group, run_a, run_b], [diff, diff_msg])
    return demo


def serve(paths: Sequence[str | Path], host: str = "127.0.0.1", port: int | None = None,
          block: bool = True):
    """Load results and serve the dashboard on ``host:port`` (127.0.0.1 by default).

    ``port=0`` picks a free port. With ``block=False`` returns the running app (call
    ``.close()`` to stop it) and its URL.
    """
    results = an.load_results(paths)  # unreadable inputs fail before gradio's slow import
    import gradio as gr

    if port == 0:
        port = free_port(host)
    demo = build_app(results)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                            share=False, quiet=not block, ssr_mode=False, theme=theme,
                            footer_links=[])
    return demo, url


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (Gradio cannot bind to port 0 itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
