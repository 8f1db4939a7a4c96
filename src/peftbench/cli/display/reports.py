"""What `census` and `export` print: the census tables and the export's verification."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

from peftbench.cli.display.tables import Grid, print_grid

if TYPE_CHECKING:
    from peftbench.export import ExportReport


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
