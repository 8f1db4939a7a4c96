"""`peftbench methods`: the technique catalog as a table, filterable by capability."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from peftbench.cli.display import count_with_progress, print_methods_table
from peftbench.cli.options import Targets, add_verb, check_model
from peftbench.errors import UserError, unknown_name

EXAMPLES = [
    "peftbench methods",
    "peftbench methods --model smollm2-135m --applicable",
    "peftbench methods --merge --quantized bnb-4bit --json",
    "peftbench methods --layer Conv --no-prompt-only > conv-techniques.md",
]


def register(app: typer.Typer) -> None:
    """Add the `methods` verb to ``app``."""
    add_verb(app, "methods", methods, EXAMPLES)


def methods(
    model: Annotated[str | None, typer.Option(
        callback=check_model, show_default="none: no counts",
        help="count trainable parameters and applicability on this model ({models}, a hub id "
             "or a local folder; slow the first time, then cached)")] = None,
    targets: Targets = None,
    merge: Annotated[bool | None, typer.Option(
        "--merge/--no-merge", help="only techniques that can (not) merge into the base "
                                   "weights  \\[default: either]")] = None,
    multi_adapter: Annotated[bool | None, typer.Option(
        "--multi-adapter/--no-multi-adapter",
        help="only techniques that can (not) load several adapters at once  "
             "\\[default: either]")] = None,
    lora_convertible: Annotated[bool | None, typer.Option(
        "--lora-convertible/--no-lora-convertible",
        help="only techniques PEFT's convert_to_lora converts exactly (not); `peftbench export "
             "--to-lora` approximates any weight-changing one  \\[default: either]")] = None,
    prompt_only: Annotated[bool | None, typer.Option(
        "--prompt-only/--no-prompt-only",
        help="only techniques that learn virtual tokens only (not: those that change weights)"
             "  \\[default: either]")] = None,
    layer: Annotated[str | None, typer.Option(
        show_default="any",
        help="only techniques that can adapt this layer type: Linear, Conv or Embedding")]
    = None,
    quantized: Annotated[str | None, typer.Option(
        show_default="any",
        help="only techniques that train on this quantized base, e.g. bnb-4bit, gptq")]
    = None,
    applicable: Annotated[bool, typer.Option(
        "--applicable", help="only techniques that can train --model here")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="a Markdown table (the default when stdout is not a terminal)")]
    = False,
) -> None:
    """List the techniques (contestants) with their capabilities and default learning rates.

    A flag keeps only the techniques with that capability; `peftbench recommend --must`
    takes the same names (merge, multi-adapter, lora-convertible, prompt-only, quantized:KIND,
    layer:TYPE)."""
    from peftbench.methods.table import catalog_rows, filter_rows, markdown_table

    if applicable and not model:
        raise UserError("--applicable needs --model (applicability depends on the model)")
    kind = _model_kind(model)
    everything = catalog_rows(kind, probe=model is not None)
    layer = _known_value("--layer", "layer type", layer,
                         sorted({x for r in everything for x in r["layers"]}))
    quantized = _known_value("--quantized", "quantized base", quantized,
                             sorted({q for r in everything for q in r["quantized"]}))
    rows = filter_rows(everything, merge=merge, multi_adapter=multi_adapter,
                       lora_convertible=lora_convertible, prompt_only=prompt_only, layer=layer,
                       quantized=quantized)
    counts = None
    if model and kind:
        counts = count_with_progress(model, kind, targets, [r["name"] for r in rows])
        _apply_counts(rows, counts, kind)
    if applicable:
        rows = [r for r in rows if r.get("applicable", True)]
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
    elif markdown:
        typer.echo(markdown_table(rows, counts, model or ""))
    else:
        print_methods_table(rows, kind, counts is not None)


def _model_kind(model: str | None) -> str | None:
    """The model kind the counts are taken for: image-gen for an image model, seq-cls for an
    encoder, else causal-lm."""
    if not model:
        return None
    from peftbench.engine.image_models import is_image_model
    from peftbench.engine.models import is_encoder

    if is_image_model(model):
        return "image-gen"
    return "seq-cls" if is_encoder(model) else "causal-lm"


def _known_value(option: str, what: str, value: str | None, known: list[str]) -> str | None:
    """``value`` in the catalog's spelling; one no technique has is a `UserError` naming the
    valid ones (instead of an empty table)."""
    if value is None:
        return None
    by_key = {k.lower(): k for k in known}
    if value.strip().lower() not in by_key:
        raise UserError(f"{option}: {unknown_name(what, value, known)}")
    return by_key[value.strip().lower()]


def _apply_counts(rows: list[dict[str, Any]], counts: dict[str, int | str], kind: str) -> None:
    for row in rows:
        value = counts.get(row["name"])
        row["trainable_parameters"] = value if isinstance(value, int) else None
        if not isinstance(value, int):
            row["applicable"] = False
            row.setdefault("why_not", {})[kind] = value
