"""`peftbench report`: HTML, PNG and Markdown reports from result folders.

A report folder remembers which inputs it was made from (``.peftbench-report.json``), so that
a second report from other results is refused instead of mixing its charts with the first's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from peftbench.cli.options import (
    OnlyModel,
    OnlyTask,
    ResultDirs,
    add_verb,
    check_filter,
    check_metric,
    one_of,
)
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench report tournament-quick",
    "peftbench report tournament-quick --level technique --x train_time --out report-time",
    "peftbench report tournament-quick results --where 'merge, peak_memory < 24GB'",
]

#: the aggregation levels of `--level`
LEVELS = ("config", "technique")

#: the file in a report folder naming the inputs and the files written
MARKER = ".peftbench-report.json"


def register(app: typer.Typer) -> None:
    """Add the `report` verb to ``app``."""
    add_verb(app, "report", report, EXAMPLES)


def report(
    dirs: ResultDirs,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", file_okay=False, show_default=False,
        help="output folder  \\[default: INPUT-report beside the first input]")] = None,
    x: Annotated[str, typer.Option(
        callback=check_metric, help="x metric of the Pareto plot (:min/:max)")]
    = "peak_memory",
    y: Annotated[str, typer.Option(
        callback=check_metric, help="y metric of the Pareto plot (:min/:max)")]
    = "test_score",
    level: Annotated[str, typer.Option(
        callback=one_of("level", lambda: LEVELS),
        help="config (every configuration) or technique (best configuration per technique)")]
    = "config",
    where: Annotated[str, typer.Option(
        callback=check_filter, show_default=False, help="filter, e.g. 'merge, peak_memory < 24GB'  "
                                 "\\[default: none]")] = "",
    task: OnlyTask = None,
    model: OnlyModel = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace a report made from other inputs in --out")] = False,
) -> None:
    """Write report.html (self-contained, interactive), PNG charts and report.md.

    The written files' paths go to stdout, one per line."""
    from peftbench.optional import require

    require(["plotly", "matplotlib"], "peftbench report (its charts)")
    from peftbench.analysis.report import write_report

    out = out if out is not None else default_folder(dirs)
    inputs = sorted(str(p.resolve()) for p in dirs)
    old = previous_report(out, inputs, overwrite)
    written = write_report(dirs, out, x, y, level, task, model, where)
    for stale in set(old) - {p.name for p in written}:
        (out / stale).unlink(missing_ok=True)
    (out / MARKER).write_text(json.dumps({"inputs": inputs,
                                          "files": sorted(p.name for p in written)}, indent=1))
    for path in written:
        typer.echo(str(path))


def default_folder(dirs: list[Path]) -> Path:
    """``NAME-report`` beside the first input (``tournament-quick`` -> ``tournament-quick-
    report``; a result file's folder names it)."""
    first = dirs[0].resolve()
    folder = first if first.is_dir() else first.parent
    more = f"+{len(dirs) - 1}" if len(dirs) > 1 else ""
    return folder.parent / f"{folder.name}{more}-report"


def previous_report(out: Path, inputs: list[str], overwrite: bool) -> list[str]:
    """The files of an earlier report in ``out`` (to replace), or a `UserError` when it was
    made from other inputs and ``overwrite`` is not set."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    marker = out / MARKER
    try:
        earlier = json.loads(marker.read_text())
    except (OSError, ValueError):
        earlier = None
    if earlier is None:
        if (out / "report.html").exists() and not overwrite:
            raise UserError(f"--out {out}: holds a report of unknown inputs; choose another "
                            "--out or pass --overwrite")
        return []
    if earlier.get("inputs") != inputs and not overwrite:
        made = ", ".join(earlier.get("inputs") or []) or "unknown inputs"
        raise UserError(f"--out {out}: holds the report of {made}; a report of other results "
                        "would mix their charts: choose another --out or pass --overwrite")
    return [str(name) for name in earlier.get("files", []) if "/" not in str(name)]
