"""`peftbench methods`: the technique catalog as a table, filterable by capability."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `methods` verb to ``app``."""
    app.command("methods")(methods)


def methods(
    model: Annotated[str | None, typer.Option(
        help="count trainable parameters and applicability on this model (slow the first "
             "time, then cached)")] = None,
    targets: Annotated[str | None, typer.Option(
        help="modules to adapt for the counts: attention (default), all-linear, a list")] = None,
    merge: Annotated[bool | None, typer.Option(
        "--merge/--no-merge", help="only techniques that can (not) merge")] = None,
    multi_adapter: Annotated[bool | None, typer.Option(
        "--multi-adapter/--no-multi-adapter", help="several adapters at once")] = None,
    lora_convertible: Annotated[bool | None, typer.Option(
        "--lora-convertible/--no-lora-convertible", help="convertible with convert_to_lora")
    ] = None,
    prompt_only: Annotated[bool | None, typer.Option(
        "--prompt-only/--weights", help="touches only prompts / touches model weights")] = None,
    layer: Annotated[str | None, typer.Option(help="can target: Linear, Conv, Embedding")] = None,
    quantized: Annotated[str | None, typer.Option(
        help="supports this quantized base, e.g. bnb-4bit")] = None,
    applicable: Annotated[bool, typer.Option(
        "--applicable", help="only techniques that can train --model here")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="a Markdown table")] = False,
) -> None:
    """List the techniques (contestants) with their capabilities and default learning rates."""
    from peftbench.methods.table import catalog_rows, filter_rows, markdown_table

    kind = None
    if model:
        from peftbench.models import is_encoder

        kind = "seq-cls" if is_encoder(model) else "causal-lm"
    rows = filter_rows(catalog_rows(kind, probe=model is not None), merge=merge,
                       multi_adapter=multi_adapter, lora_convertible=lora_convertible,
                       prompt_only=prompt_only, layer=layer, quantized=quantized,
                       applicable=applicable and kind is not None)
    counts = None
    if model and kind:
        from peftbench.methods.table import trainable_counts

        counts = trainable_counts(model, kind, targets, [r["name"] for r in rows])
        for row in rows:
            value = counts.get(row["name"])
            row["trainable_parameters"] = value if isinstance(value, int) else None
            if not isinstance(value, int):
                row["applicable"] = False
                row.setdefault("why_not", {})[kind] = value
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
    elif markdown:
        typer.echo(markdown_table(rows, counts, model or ""))
    else:
        _print_table(rows, kind, counts is not None)


def _print_table(rows: list[dict], kind: str | None, with_counts: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    wide = console.width >= 140 or not console.is_terminal
    if not console.is_terminal:
        console = Console(width=200)
    table = Table(show_lines=False, pad_edge=False)
    columns = ["technique", "kinds", "merge", "multi", "layers", "quantized", "→LoRA", "lr"]
    for column in columns + (["description"] if wide else []):
        table.add_column(column, no_wrap=column != "description", overflow="fold")
    if with_counts:
        table.add_column("trainable", justify="right")
    for row in rows:
        kinds = ",".join(k.split("-")[0] for k, ok in row["applies"].items() if ok) or "—"
        cells = [row["name"], kinds, _mark(row["merge"]), _mark(row["multi_adapter"]),
                 ",".join(row["layers"]) or ("prompt" if row["prompt_only"] else "—"),
                 _quant(row["quantized"]), _mark(row["lora_convertible"]),
                 f"{row['default_lr']:g}"] + ([row["description"]] if wide else [])
        if with_counts:
            value = row.get("trainable_parameters")
            cells.append(f"{value:,}" if value else "n/a: " + row["why_not"].get(kind, ""))
        table.add_row(*cells)
    console.print(table)
    usable = sum(1 for r in rows if r.get("applicable", True))
    console.print(f"{len(rows)} techniques" + (f", {usable} apply to this model" if kind else ""))


def _mark(flag: bool) -> str:
    return "yes" if flag else ""


def _quant(backends: list[str]) -> str:
    if len(backends) > 3:
        return ",".join(backends[:2]) + f",+{len(backends) - 2}"
    return ",".join(backends) or "—"
