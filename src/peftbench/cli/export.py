"""`peftbench export`: a finished run's adapter as a plain LoRA (or a merged model), verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peftbench.cli.display import console, print_export_report
from peftbench.cli.options import ShowProgress, add_verb
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench export RESULT.json --to-lora --rank 16 --out lora-export",
    "peftbench export RESULT.json --to-lora --rank 0.9 --min-score-ratio 0.95 --out lora-export",
    "peftbench export RESULT.json --merge --out merged-model",
]


def register(app: typer.Typer) -> None:
    """Add the `export` verb to ``app``."""
    add_verb(app, "export", export, EXAMPLES)


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
    progress: ShowProgress = True,
) -> None:
    """Export a run's adapter for servers that only take plain LoRA (or no adapters at all),
    and check that it still scores: test score before/after, reconstruction error, sizes."""
    from peftbench import export as ex

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
    print_export_report(report, console)
    if not report.ok:
        raise typer.Exit(1)
