"""`peftbench methods`: the technique catalog as a table, filterable by capability."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from peftbench.cli.display import print_methods_table
from peftbench.cli.options import Targets, add_verb

EXAMPLES = [
    "peftbench methods",
    "peftbench methods --model smollm2-135m",
    "peftbench methods --merge --quantized bnb-4bit --json",
]


def register(app: typer.Typer) -> None:
    """Add the `methods` verb to ``app``."""
    add_verb(app, "methods", methods, EXAMPLES)


def methods(
    model: Annotated[str | None, typer.Option(
        help="count trainable parameters and applicability on this model ({models}, a hub id "
             "or a local folder; slow the first time, then cached)")] = None,
    targets: Targets = None,
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
        from peftbench.engine.models import is_encoder

        kind = "seq-cls" if is_encoder(model) else "causal-lm"
    rows = filter_rows(catalog_rows(kind, probe=model is not None), merge=merge,
                       multi_adapter=multi_adapter, lora_convertible=lora_convertible,
                       prompt_only=prompt_only, layer=layer, quantized=quantized,
                       applicable=applicable and kind is not None)
    counts = None
    if model and kind:
        from peftbench.engine.counts import trainable_counts

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
        print_methods_table(rows, kind, counts is not None)
