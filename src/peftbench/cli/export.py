"""`peftbench export`: a finished run's adapter as a plain LoRA (or a merged model), verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from peftbench.cli.display import print_export_report
from peftbench.cli.options import ShowProgress, add_verb, non_negative
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench export RESULT.json --to-lora --rank 16 --out lora-export",
    "peftbench export RESULT.json --to-lora --rank 0.9 --min-score-ratio 0.95 --out lora-export",
    "peftbench export RESULT.json --merge --out merged-model",
]


def register(app: typer.Typer) -> None:
    """Add the `export` verb to ``app``."""
    add_verb(app, "export", export, EXAMPLES)


def _rank(value: str | None) -> str | None:
    """``--rank``: an integer of at least 1, or a fraction in (0, 1]."""
    if value is None:
        return value
    from peftbench.export.factorization import parse_rank

    try:
        parse_rank(value)
    except UserError as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"--rank {value!r} ")
                                 .removeprefix(f"--rank {value} ")) from None
    return value


def _existing(value: str | None) -> str | None:
    """``--data``: a file or folder that exists."""
    if value is not None and not Path(value).expanduser().exists():
        raise typer.BadParameter(f"{value}: no such file or folder")
    return value


def _input_pairs(values: list[str] | None) -> list[str] | None:
    """``--input ROLE=PATH``: a role and a path that exists."""
    for item in values or []:
        role, sep, path = item.partition("=")
        if not sep or not role.strip() or not path.strip():
            raise typer.BadParameter(f"'{item}' is not of the form ROLE=PATH (e.g. "
                                     "model=models/base or test=held-out.jsonl)")
        _existing(path)
    return values


def export(
    result: Annotated[Path, typer.Argument(
        metavar="RESULT", exists=True, dir_okay=False,
        help="the result JSON of a finished run")],
    out: Annotated[Path, typer.Option(
        file_okay=False, help="folder to write (must not exist unless --overwrite)")],
    to_lora: Annotated[bool, typer.Option(
        "--to-lora", help="write a plain LoRA adapter (PEFT layout; its files checked "
                          "against vLLM's loader rules, a static check)")] = False,
    merge: Annotated[bool, typer.Option(
        "--merge", help="write the whole model with the adapter merged in")] = False,
    rank: Annotated[str | None, typer.Option(
        callback=_rank, show_default="none: required with --to-lora",
        help="LoRA rank: an integer (16), or a fraction in (0, 1] of each layer's update "
             "energy to keep (0.9)")] = None,
    min_score_ratio: Annotated[float | None, typer.Option(
        callback=non_negative, show_default=False,
        help="fail (exit 1, weights removed, report kept) when test score after / before is "
             "below this (not checked when the score before is 0)  \\[default: no "
             "check]")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out folder")] = False,
    data: Annotated[str | None, typer.Option(
        metavar="PATH", callback=_existing, show_default="the path the run recorded",
        help="where the run's data file (or folder) is now, when it moved (checked against "
             "the recorded content)")] = None,
    input_: Annotated[list[str] | None, typer.Option(
        "--input", metavar="ROLE=PATH", callback=_input_pairs,
        show_default="the paths the run recorded",
        help="where another of the run's inputs is now: model=FOLDER, test=FILE, "
             "validation=FILE… (repeatable; checked against the recorded content)")] = None,
    progress: ShowProgress = True,
) -> None:
    """Export a run's adapter as a plain LoRA (or a merged model), and check it still scores.

    For servers that only take plain LoRA (or no adapters at all): the report compares the test
    score before and after, the reconstruction error and the sizes, and checks the files
    against vLLM's loader rules (a static check, not a load)."""
    from peftbench import export as ex

    if to_lora == merge:
        raise UserError("choose one of --to-lora (with --rank) and --merge")
    if to_lora and rank is None:
        raise UserError("--to-lora needs --rank: an integer (16) or a fraction in (0, 1] (0.9)")
    if merge and rank is not None:
        raise UserError("--rank applies to --to-lora only; --merge writes the whole model")
    moved = {role.strip(): path for role, _, path in (i.partition("=") for i in input_ or [])}
    if data is not None:
        moved["data"] = data
    if to_lora:
        report = ex.export_lora(result, out, ex.parse_rank(rank), min_score_ratio=min_score_ratio,
                                overwrite=overwrite, progress=progress, inputs=moved)
    else:
        report = ex.export_merged(result, out, min_score_ratio=min_score_ratio,
                                  overwrite=overwrite, progress=progress, inputs=moved)
    print_export_report(report, Console())  # the report is the result: stdout
    if not report.ok:
        raise typer.Exit(1)
