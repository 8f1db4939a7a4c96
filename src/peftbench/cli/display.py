"""What the verbs print: the Rich consoles, tables and progress displays they share.

Verb modules handle arguments and call the engine; the code that turns what comes back into
tables, bars and summary lines is here, one section per verb.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

# stderr: the run and tournament messages share the engine's console with its progress bars
from peftbench.engine.progress import console, make_progress

if TYPE_CHECKING:
    from peftbench.export import ExportReport

__all__ = [
    "Grid",
    "count_with_progress",
    "TournamentDisplay",
    "census_progress",
    "console",
    "err_console",
    "plan_summary",
    "plan_table",
    "print_census_report",
    "print_grid",
    "print_export_report",
    "print_methods_table",
    "quiet_third_party",
    "results_table",
    "run_summary_line",
]

#: errors from `peftbench.cli.main`: one line on stderr
err_console = Console(stderr=True)


# --------------------------------------------------------------------------------------------
# Tables: Rich on a terminal, Markdown anywhere else, never truncated


@dataclass
class Grid:
    """A table of text cells that prints as a Rich table on a terminal (long cells wrap,
    nothing is cut off) and as a Markdown table when piped or written to a file."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""
    caption: str = ""
    #: indices of right-aligned columns (numbers)
    right: set[int] = field(default_factory=set)

    #: the narrowest a column may get on a terminal (Rich shrinks columns to nothing otherwise)
    MIN_COLUMN = 4

    def rich(self) -> Table:
        """The Rich table: every column folds long cells instead of cutting them."""
        table = Table(title=self.title or None, caption=self.caption or None)
        for index, header in enumerate(self.headers):
            table.add_column(header, justify="right" if index in self.right else "left",
                             overflow="fold", min_width=min(len(header), self.MIN_COLUMN) or 1)
        for row in self.rows:
            table.add_row(*row)
        return table

    def __rich__(self) -> Table:
        return self.rich()

    def min_width(self) -> int:
        """The fewest columns of text the Rich table needs: below it, cells would be cut."""
        widths = [min(len(h), self.MIN_COLUMN) or 1 for h in self.headers]
        return sum(widths) + 3 * len(widths) + 1  # a space each side, a border between

    def markdown(self, level: int = 0) -> str:
        """The table as Markdown: the title (a heading of ``level`` when above 0, else bold),
        the table, then the caption."""
        lines = []
        if self.title:
            lines += [("#" * level + " " if level else "**") + self.title
                      + ("" if level else "**"), ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in self.headers) + " |")
        lines.append("|" + "".join("---:|" if i in self.right else "---|"
                                   for i in range(len(self.headers))))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in self.rows]
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def print_grid(grid: Grid, console: Console | None = None) -> None:
    """``grid`` on ``console`` (default stdout): a Rich table on a terminal wide enough for it,
    else Markdown (which no width cuts)."""
    console = console or Console()
    if console.is_terminal and console.width >= grid.min_width():
        console.print(grid.rich())
    else:
        console.file.write(grid.markdown())
        console.file.flush()


# --------------------------------------------------------------------------------------------
# `peftbench run`


def run_summary_line(info: dict[str, Any]) -> str:
    """One finished run's figures as one Rich-markup line."""

    def fmt(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) else "n/a"

    return (f"[bold green]done:[/] test {info.get('test_metric')} "
            f"{fmt(info.get('test_score'), '.3f')}"
            f" (base {fmt(info.get('base_test_score'), '.3f')}), "
            f"train {fmt(info.get('train_time'), '.0f')} s, "
            f"{fmt(info.get('tokens_per_sec'), '.0f')} tok/s, "
            f"peak memory {fmt((info.get('peak_memory') or 0) / 2**20, '.0f')} MiB, "
            f"forgetting {fmt(info.get('forgetting'), '+.3f')}, "
            f"trainable {fmt(info.get('num_trainable_params'), ',')}")


# --------------------------------------------------------------------------------------------
# `peftbench tournament`


def plan_table(plan: Any) -> Grid:
    """The grid before it runs: techniques and the rates each will try."""
    cfg = plan.cfg
    return Grid(["technique", "learning rates searched", "note"],
                [list(row) for row in plan.rows()],
                title=f"Tournament plan: {cfg.model} on {cfg.task}")


def plan_summary(plan: Any, calibration: Any, out: Path) -> str:
    """Run counts, the time estimate and where results go, as one paragraph."""
    from peftbench.tournament import estimate_seconds

    rungs = " → ".join(str(s) for s in plan.rungs)
    text = (f"{plan.search_runs()} search runs (steps per rung: {rungs}), "
            f"{plan.final_runs()} final runs ({plan.cfg.seeds} seed(s) each) → {out}/")
    if calibration is not None:
        text += (f"; estimated {_duration(estimate_seconds(plan, calibration))} "
                 f"(calibration: {calibration.step:.2f} s/step, "
                 f"{calibration.validation:.1f} s/validation, "
                 f"{calibration.startup:.1f} s start-up per run)")
    return text


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class TournamentDisplay:
    """Rich bars: one overall (runs done / failed / remaining, ETA), one per running run."""

    def __init__(self, enabled: bool) -> None:
        self.progress = make_progress(enabled)
        self.overall: Any = None
        self.current: dict[str, Any] = {}
        self.done = self.failed = 0
        self.total = 0

    def __enter__(self) -> TournamentDisplay:
        self.progress.__enter__()
        self.overall = self.progress.add_task("tournament", total=0, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def stage(self, name: str, total: int) -> None:
        """A stage adds its runs to the overall bar."""
        self.total += total
        self.progress.update(self.overall, total=self.total, description=f"tournament: {name}")
        self._info()

    def started(self, spec: Any) -> None:
        """A bar for the new run."""
        self.current[spec.content_hash()] = self.progress.add_task(
            f"  {spec.display_name()}", total=spec.train.steps_to_run(), info="starting")

    def event(self, spec: Any, event: dict[str, Any]) -> None:
        """Show the run's current phase (train, validation, test) and its progress."""
        task = self.current.get(spec.content_hash())
        if task is None or "description" not in event:
            return
        self.progress.update(task, total=event.get("total") or 1,
                             completed=event.get("completed", 0),
                             info=f"{event['description']} {event.get('info') or ''}".strip())

    def finished(self, record: Any) -> None:
        """Count the run; drop its bar."""
        self.done += 1
        self.failed += record.status != "success"
        task = self.current.pop(record.spec.content_hash(), None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.update(self.overall, completed=self.done)
        self._info()

    def note(self, message: str) -> None:
        """One line above the bars (on stderr), e.g. results run again after an edit."""
        self.progress.console.print(f"note: {message}", markup=False, highlight=False,
                                    soft_wrap=True)

    def _info(self) -> None:
        remaining = self.total - self.done
        self.progress.update(self.overall, info=f"{self.done - self.failed} ok, {self.failed} "
                             f"failed, {remaining} to go")


def results_table(outcome: Any) -> Grid:
    """Per technique: chosen rate, test score with its 95% interval, memory, time, size,
    parameters, forgetting, and the techniques it beats significantly (paired on the test
    items); ★ when nothing beats it beyond the noise (test score ↑ vs peak memory ↓), ☆ when
    its edge is within the noise. Failed techniques keep their whole reason."""
    from peftbench.analysis import get_metric
    from peftbench.analysis.pareto import TIE_TOLERANCE

    verdict = tournament_verdict(outcome)
    aggs, base = verdict["aggregates"], verdict["base_test_score"]
    base_note = f"; base model test score {base:.3f}" if base is not None else ""
    headers = ["", "technique", "best lr", *[get_metric(m).label for m in METRICS_SHOWN],
               "significantly better than", "seeds"]
    grid = Grid(headers, title="Tournament results (final runs; rates chosen on validation)",
                caption=f"test score [95% interval from {verdict['items']} test items and the "
                "seeds]; ★ nothing beats it beyond the noise on test score ↑ and peak memory ↓ "
                f"(scores paired item by item, Holm-corrected; memory within "
                f"{TIE_TOLERANCE['peak_memory']:.1%} ties); ☆ its edge is within the noise; "
                f"peak memory = the training phase's (weights + trainable state + "
                f"activations){base_note}",
                right=set(range(2, len(headers))))
    grid.caption = "".join(f"Note: {line}. " for line in verdict["caveats"]) + grid.caption
    for method, tech in sorted(outcome.techniques.items(),
                               key=lambda kv: _sort_key(aggs.get(kv[0]))):
        agg = aggs.get(method)
        if agg is None or not agg.n:
            grid.rows.append(["✗", method, _lr(tech.chosen_lr), f"failed: {_failure(tech)}",
                              *[""] * len(METRICS_SHOWN), "0"])
            continue
        mark = {"frontier": "★", "within noise": "☆"}.get(verdict["status"].get(method, ""), "")
        grid.rows.append([mark, method, _lr(tech.chosen_lr) + _extension(tech), *_cells(agg),
                          ", ".join(verdict["beats"].get(method, [])) or "—", str(agg.n)])
    return grid


def tournament_verdict(outcome: Any) -> dict[str, Any]:
    """What the results table shows, as data: each technique's aggregate over its final runs,
    its frontier status ("frontier", "within noise", "dominated"; none when every technique
    scored the same), whom it beats significantly, the number of test items, the base model's
    test score (None when not measured) and what the scores cannot tell (caveats)."""
    from peftbench.analysis import aggregate, frontier_status, parse_metric_spec
    from peftbench.analysis.caveats import all_tied, score_caveats
    from peftbench.analysis.pareto import score_comparisons
    from peftbench.engine.results import summarize

    runs = [summarize(r.result, str(r.path)) for t in outcome.techniques.values()
            for r in t.finals]
    aggs = {a.technique: a for a in aggregate(runs, level="technique")}
    specs = [parse_metric_spec("peak_memory"), parse_metric_spec("test_score")]
    ordered = [aggs[m] for m in outcome.techniques if m in aggs and aggs[m].n]
    status = {} if all_tied(ordered) else dict(zip(
        [a.technique for a in ordered], frontier_status(ordered, specs), strict=True))
    comparisons = score_comparisons(ordered)
    beats = {a.technique: [ordered[j].technique for j in range(len(ordered))
                           if (i, j) in comparisons and comparisons[(i, j)].significant
                           and comparisons[(i, j)].difference > 0]
             for i, a in enumerate(ordered)}
    base = [r.train_info.get("base_test_score") for t in outcome.techniques.values()
            for r in t.finals if r.train_info.get("base_test_score") is not None]
    items = next((len(a.test_items[0]) for a in ordered if a.test_items), 0)
    return {"aggregates": aggs, "status": status, "beats": beats, "items": items,
            "base_test_score": base[0] if base else None, "caveats": score_caveats(ordered)}


def _failure(tech: Any) -> str:
    return tech.note or "; ".join(sorted({r.error for r in tech.finals if r.error})) or "no run"


METRICS_SHOWN = ["test_score", "peak_memory", "train_time", "file_size", "trainable_params",
                 "forgetting"]


def _cells(agg: Any) -> list[str]:
    """The shown metrics of one technique: intervals from the items, else ± over seeds."""
    from peftbench.analysis.pareto import cell_text

    return [cell_text(agg, name) for name in METRICS_SHOWN]


def _sort_key(agg: Any) -> float:
    value = agg.value("test_score") if agg is not None and agg.n else None
    return -value if value is not None else math.inf


def _lr(lr: float | None) -> str:
    return f"{lr:g}" if lr is not None else "—"


def _extension(tech: Any) -> str:
    """' (grid +1)' when the search went past the planned grid's edge."""
    return f" (grid +{len(tech.extended)})" if getattr(tech, "extended", None) else ""


# --------------------------------------------------------------------------------------------
# `peftbench methods`


#: the methods table's columns: header, what it says (the help and the Markdown caption)
METHOD_COLUMNS = {
    "technique": "the name for --method / --methods",
    "kinds": "model kinds it trains: causal (LM), seq (encoder + classification head)",
    "merge": "can be merged into the base weights",
    "multi-adapter": "several adapters can be loaded at once",
    "layers": "layer types it adapts (prompt: virtual tokens only)",
    "quantized bases": "quantized base models it trains on",
    "exact →LoRA": "PEFT's convert_to_lora converts it exactly",
    "export →LoRA": "`peftbench export --to-lora` writes a plain LoRA (SVD of the update)",
    "lr": "default learning rate",
}


def methods_grid(rows: list[dict], kind: str | None, with_counts: bool,
                 description: bool) -> Grid:
    """The catalog rows as a `Grid` (a description column when ``description``)."""
    from peftbench.methods.table import exportable_to_lora

    headers = list(METHOD_COLUMNS) + (["trainable"] if with_counts else []) + (
        ["description"] if description else [])
    grid = Grid(headers, right={headers.index("lr")} | (
        {headers.index("trainable")} if with_counts else set()))
    grid.caption = "; ".join(f"{k}: {v}" for k, v in METHOD_COLUMNS.items() if k != "technique")
    for row in rows:
        kinds = ", ".join(k.split("-")[0] for k, ok in row["applies"].items() if ok) or "—"
        cells = [row["name"], kinds, _mark(row["merge"]), _mark(row["multi_adapter"]),
                 ", ".join(row["layers"]) or ("prompt" if row["prompt_only"] else "—"),
                 ", ".join(row["quantized"]) or "—", _mark(row["lora_convertible"]),
                 _mark(exportable_to_lora(row)), f"{row['default_lr']:g}"]
        if with_counts:
            value = row.get("trainable_parameters")
            cells.append(f"{value:,}" if value else "n/a: " + row["why_not"].get(kind, ""))
        if description:
            cells.append(row["description"])
        grid.rows.append(cells)
    return grid


def print_methods_table(rows: list[dict], kind: str | None, with_counts: bool) -> None:
    """The catalog rows on stdout (a Rich table on a terminal, with descriptions when it is
    wide enough; Markdown with descriptions otherwise), then how many there are and how many
    apply to the model."""
    stdout = Console()
    wide = stdout.width >= 160 or not stdout.is_terminal
    print_grid(methods_grid(rows, kind, with_counts, wide), stdout)
    usable = sum(1 for r in rows if r.get("applicable", True))
    line = f"{len(rows)} techniques" + (f", {usable} apply to this model" if kind else "")
    if stdout.is_terminal:
        stdout.print(line)
    else:
        stdout.file.write(f"\n{line}\n")


def _mark(flag: bool) -> str:
    return "yes" if flag else ""


#: loggers of the libraries whose warnings drown the progress of `methods --model`
THIRD_PARTY_LOGGERS = ("transformers", "peft", "torch", "huggingface_hub", "datasets",
                       "accelerate", "bitsandbytes")


@contextmanager
def quiet_third_party() -> Iterator[str]:
    """Silence the libraries while building techniques: Python warnings, their loggers below
    ERROR, and whatever they print (tqdm bars, notices) to stdout or stderr. Yields nothing
    useful; an exception still propagates with its traceback."""
    import contextlib
    import io
    import logging
    import warnings

    sink = io.StringIO()
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield ""
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def count_with_progress(model: str, kind: str, targets: str | None,
                        names: list[str]) -> dict[str, int | str]:
    """Trainable parameters of each technique in ``names`` on ``model`` (or why it does not
    apply), one technique at a time under a bar on stderr, the libraries' noise silenced."""
    import sys

    from peftbench.engine.counts import trainable_counts

    console = Console(file=sys.stderr)  # bound now: stderr is redirected while building
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    counts: dict[str, int | str] = {}
    with Progress(*columns, console=console, transient=True, redirect_stdout=False,
                  redirect_stderr=False) as progress:
        task = progress.add_task(f"building each technique on {model}", total=len(names))
        for name in names:
            progress.update(task, description=f"building {name} on {model}")
            with quiet_third_party():
                counts.update(trainable_counts(model, kind, targets, [name]))
            progress.advance(task)
    return counts


# --------------------------------------------------------------------------------------------
# `peftbench census`


@contextmanager
def census_progress(console: Console, what: str,
                    total: int | None) -> Iterator[Callable[[], None]]:
    """A transient bar while scanning ``what``; yields the function that counts one item."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"scanning {what}", total=total)
        yield lambda: progress.advance(task)


def print_census_report(console: Console, report: dict[str, Any], top: int = 12) -> None:
    """Per input (cards, code): the ``top`` techniques, exactly-one and any-mention counts (a
    Rich table on a terminal, Markdown otherwise)."""
    for kind in ("cards", "code"):
        if kind not in report:
            continue
        summary = report[kind]
        grid = Grid(["technique", "exactly one", "share", "any mention", "share"],
                    title=f"PEFT techniques in {summary['scanned']:,} {summary['unit']}: "
                    f"{summary['exactly_one_total']:,} name exactly one, "
                    f"{summary['with_any']:,} mention any", right={1, 2, 3, 4})
        one = {row["technique"]: row for row in summary["exactly_one"]}
        for row in summary["any_mention"][:top]:
            single = one.get(row["technique"], {"count": 0, "share": 0.0})
            grid.rows.append([row["name"], f"{single['count']:,}", f"{single['share']:.1%}",
                              f"{row['count']:,}", f"{row['share']:.1%}"])
        print_grid(grid, console)


# --------------------------------------------------------------------------------------------
# `peftbench export`


def print_export_report(report: ExportReport, console: Console) -> None:
    """The verification as Rich tables: scores and sizes, then errors by layer type."""
    table = Table(title=f"export of {report.method} ({report.mode})", show_header=False)
    table.add_column("", style="bold", overflow="fold")
    table.add_column("", overflow="fold")  # paths fold rather than being cut
    for label, value in _summary_rows(report):
        table.add_row(label, value)
    console.print(table)
    if report.layers:
        console.print(_layer_table(report))
    if report.ok:
        console.print(f"[bold green]exported:[/] {report.out}", soft_wrap=True, highlight=False)
    else:
        console.print(f"[bold red]rejected:[/] {report.reason}; report: {report.out}",
                      soft_wrap=True, highlight=False)


def _summary_rows(report: ExportReport) -> list[tuple[str, str]]:
    rows = [
        (f"test {report.metric}", f"{report.score_before:.4f} → {report.score_after:.4f} "
                                  f"({_ratio(report.score_ratio)}; recorded "
                                  f"{_num(report.score_recorded, '.4f')})"),
        ("probe logits", f"max |Δ| {report.probe_max_abs_logit_diff:.2e}, relative "
                         f"{report.probe_relative_logit_diff:.2e}"),
        ("checkpoint", f"{_mib(report.size_original_bytes)} → "
                       f"{_mib(report.size_exported_bytes)}"),
        ("base weights", _base_line(report.base_model)),
    ]
    if report.mode == "lora":
        ranks = [layer["rank"] for layer in report.layers]
        rows += [
            ("rank", f"requested {report.rank_requested}; per layer {_span(ranks)}"),
            ("conversion", str(report.conversion)),
            ("reconstruction", f"mean {_num(report.mean_relative_error, '.2e')}, max "
                               f"{_num(report.max_relative_error, '.2e')} (relative, "
                               f"{len(report.layers)} layers)"),
        ]
        if report.heads:
            rows.append(("shipped whole", ", ".join(report.heads)))
        if report.dropped:
            names = ", ".join(d["name"] for d in report.dropped[:3])
            rows.append(("dropped", f"{len(report.dropped)} changed tensors LoRA cannot carry "
                                    f"({names}{', …' if len(report.dropped) > 3 else ''})"))
        rows.append(("vLLM rules", _vllm_line(report.vllm or {})))
    if report.min_score_ratio is not None:
        rows.append(("--min-score-ratio", f"{report.min_score_ratio} → {report.status}"))
    return rows


def _layer_table(report: ExportReport) -> object:
    """Errors grouped by layer type (q_proj, …): count, ranks, mean and max error."""
    groups: dict[str, list[dict]] = {}
    for layer in report.layers:
        groups.setdefault(layer["name"].rpartition(".")[2], []).append(layer)
    table = Table(title="relative reconstruction error ||ΔW − B·A||_F / ||ΔW||_F")
    for column in ("layer", "count", "rank", "mean error", "max error", "SVD bound (mean)"):
        table.add_column(column, justify="left" if column == "layer" else "right",
                         overflow="fold")
    for leaf, layers in sorted(groups.items()):
        errors = [la["relative_error"] for la in layers]
        table.add_row(leaf, str(len(layers)), _span([la["rank"] for la in layers]),
                      f"{sum(errors) / len(errors):.2e}",
                      f"{max(errors):.2e}",
                      f"{sum(la['svd_bound'] for la in layers) / len(layers):.2e}")
    return table


def _base_line(base: dict) -> str:
    where = base.get("path")
    return f"{base.get('name')} ({base.get('source')}{': ' + str(where) if where else ''})"


def _ratio(ratio: float | None) -> str:
    """The score ratio after / before, or why there is none."""
    if ratio is None:
        return "ratio not measured: the score before is 0"
    return f"ratio {ratio:.3f}"


def _vllm_line(vllm: dict) -> str:
    """The static check of the files against vLLM's LoRA loader rules (no vLLM is run)."""
    if vllm.get("problems"):
        return "[red]break vLLM's loader rules[/] (static check): " + "; ".join(
            vllm["problems"])
    notes = "; ".join(vllm.get("notes") or [])
    return (f"[green]pass vLLM's loader rules[/] (static check of the files, not a load; "
            f"--max-lora-rank {vllm.get('max_lora_rank')})" + (f"; {notes}" if notes else ""))


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def _num(value: float | None, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"
