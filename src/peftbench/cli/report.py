"""`peftbench report`: HTML, PNG and Markdown reports from result folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peftbench.cli.options import OnlyModel, OnlyTask, ResultDirs, add_verb

EXAMPLES = [
    "peftbench report tournament-quick",
    "peftbench report tournament-quick --level technique --x train_time --out report-time",
    "peftbench report tournament-quick results --where 'merge, peak_memory < 24GB'",
]


def register(app: typer.Typer) -> None:
    """Add the `report` verb to ``app``."""
    add_verb(app, "report", report, EXAMPLES)


def report(
    dirs: ResultDirs,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("report"),
    x: Annotated[str, typer.Option(help="x metric of the Pareto plot (:min/:max)")]
    = "peak_memory",
    y: Annotated[str, typer.Option(help="y metric of the Pareto plot (:min/:max)")]
    = "test_score",
    level: Annotated[str, typer.Option(help="'config' (every configuration) or 'technique' "
                                            "(best configuration per technique)")] = "config",
    where: Annotated[str, typer.Option(help="filter, e.g. 'merge, peak_memory < 24GB'")] = "",
    task: OnlyTask = None,
    model: OnlyModel = None,
) -> None:
    """Write report.html (self-contained, interactive), PNG charts and report.md."""
    from peftbench.analysis.report import write_report

    written = write_report(dirs, out, x, y, level, task, model, where)
    for path in written:
        typer.echo(str(path))
