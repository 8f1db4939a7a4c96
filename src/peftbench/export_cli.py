"""`peftbench export`: a finished run's adapter as a plain LoRA (or a merged model), verified."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from peftbench.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from peftbench.export import ExportReport


def register(app: typer.Typer) -> None:
    """Add the `export` verb to ``app``."""
    app.command("export")(export)


def export(
    result: Annotated[Path, typer.Argument(help="the result JSON of a finished run")],
    out: Annotated[Path, typer.Option(help="folder to write (must not exist unless --overwrite)")],
    to_lora: Annotated[bool, typer.Option(
        "--to-lora", help="write a plain LoRA adapter (PEFT layout, checked against vLLM's "
                          "rules)")] = False,
    merge: Annotated[bool, typer.Option(
        "--merge", help="write the whole model with the adapter merged in")] = False,
    rank: Annotated[str | None, typer.Option(
        help="LoRA rank: an integer (16), or a fraction in (0, 1] of each layer's update "
             "energy to keep (0.9)")] = None,
    min_score_ratio: Annotated[float | None, typer.Option(
        help="fail (exit 1, weights removed, report kept) when test score after / before is "
             "below this")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out folder")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Export a run's adapter for servers that only take plain LoRA (or no adapters at all),
    and check that it still scores: test score before/after, reconstruction error, sizes."""
    from peftbench import export as ex
    from peftbench.progress import console

    if to_lora == merge:
        raise UserError("choose one of --to-lora (with --rank) and --merge")
    if to_lora and rank is None:
        raise UserError("--to-lora needs --rank: an integer (16) or a fraction in (0, 1] (0.9)")
    if merge and rank is not None:
        raise UserError("--rank applies to --to-lora only; --merge writes the whole model")
    if to_lora:
        report = ex.export_lora(result, out, ex.parse_rank(rank), min_score_ratio=min_score_ratio,
                                overwrite=overwrite, progress=progress)
    else:
        report = ex.export_merged(result, out, min_score_ratio=min_score_ratio,
                                  overwrite=overwrite, progress=progress)
    print_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: ExportReport, console: Console) -> None:
    """The verification as Rich tables: scores and sizes, then errors by layer type."""
    from rich.table import Table

    table = Table(title=f"export of {report.method} ({report.mode})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in _summary_rows(report):
        table.add_row(label, value)
    console.print(table)
    if report.layers:
        console.print(_layer_table(report))
    if report.ok:
        console.print(f"[bold green]exported:[/] {report.out}")
    else:
        console.print(f"[bold red]rejected:[/] {report.reason}; report: {report.out}")


def _summary_rows(report: ExportReport) -> list[tuple[str, str]]:
    rows = [
        (f"test {report.metric}", f"{report.score_before:.4f} → {report.score_after:.4f} "
                                  f"(ratio {report.score_ratio:.3f}; recorded "
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
        rows.append(("vLLM", _vllm_line(report.vllm or {})))
    if report.min_score_ratio is not None:
        rows.append(("--min-score-ratio", f"{report.min_score_ratio} → {report.status}"))
    return rows


def _layer_table(report: ExportReport) -> object:
    """Errors grouped by layer type (q_proj, …): count, ranks, mean and max error."""
    from rich.table import Table

    groups: dict[str, list[dict]] = {}
    for layer in report.layers:
        groups.setdefault(layer["name"].rpartition(".")[2], []).append(layer)
    table = Table(title="relative reconstruction error ||ΔW − B·A||_F / ||ΔW||_F")
    for column in ("layer", "count", "rank", "mean error", "max error", "SVD bound (mean)"):
        table.add_column(column, justify="left" if column == "layer" else "right")
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


def _vllm_line(vllm: dict) -> str:
    if vllm.get("problems"):
        return "[red]not loadable[/]: " + "; ".join(vllm["problems"])
    notes = "; ".join(vllm.get("notes") or [])
    return f"[green]loadable[/] (--max-lora-rank {vllm.get('max_lora_rank')})" + (
        f"; {notes}" if notes else "")


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def _num(value: float | None, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"
