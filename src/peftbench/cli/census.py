"""`peftbench census`: how often model cards and code name each PEFT technique."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from peftbench import census
from peftbench.cli.display import census_progress, print_census_report
from peftbench.cli.options import add_verb, one_of
from peftbench.engine.results import atomic_write_json
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench census --limit 10000",
    "peftbench census --code path/to/repo --out code-census.json --chart code-census.png",
    "peftbench census --cards cards.parquet --source tags --source library_name",
]


def register(app: typer.Typer) -> None:
    """Add the `census` verb to ``app``."""
    add_verb(app, "census", census_command, EXAMPLES)


def _sources(values: list[str] | None) -> list[str] | None:
    """``--source``: each one of `census.CARD_SOURCES`, the closest suggested otherwise."""
    check = one_of("card source", lambda: list(census.CARD_SOURCES))
    return [check(value) for value in values] if values else values


def census_command(
    cards: Annotated[str | None, typer.Option(
        show_default=f"{census.HUB_DATASET} (streamed) unless --code is given",
        help="Model cards: a Hub data set id, or a local Parquet/JSONL file or folder in its "
        "schema.")] = None,
    code: Annotated[Path | None, typer.Option(
        exists=True, file_okay=False, show_default="none",
        help="A folder of source files (.py, .ipynb) to scan for `from peft import "
        "XxxConfig` and `peft.XxxConfig(`.")] = None,
    out: Annotated[Path, typer.Option(
        dir_okay=False, help="JSON file for counts and shares.")] = Path("census.json"),
    chart: Annotated[Path, typer.Option(
        dir_okay=False, help="Bar chart (.png, .svg or .pdf).")] = Path("census.png"),
    limit: Annotated[int | None, typer.Option(
        min=1, show_default="no limit", help="Stop after this many cards.")] = None,
    source: Annotated[list[str] | None, typer.Option(
        callback=_sources,
        help="Where to look in a card (repeatable): " + ", ".join(census.CARD_SOURCES)
        + " \\[default: all].")] = None,
    text_column: Annotated[str, typer.Option(help="Column holding the card text.")] = "card",
    tags_column: Annotated[str | None, typer.Option(
        help="Column holding the tags \\[default: tags, if present].")] = None,
    library_column: Annotated[str | None, typer.Option(
        help="Column holding library_name \\[default: library_name, if present].")] = None,
) -> None:
    """Count the PEFT techniques named in model cards and used in code; JSON + bar chart."""
    if cards is None and code is None:
        cards = census.HUB_DATASET
    census.chart_format(chart)
    sources = list(source or census.CARD_SOURCES)
    columns = census.CardColumns(text_column, tags_column, library_column)
    inputs: dict[str, Any] = {"cards": cards, "code": str(code) if code else None,
                              "limit": limit, "sources": sources}
    console = Console(stderr=True)
    if cards:
        _check_hub(cards)
    card_tally = _run_cards(console, cards, sources, columns, limit) if cards else None
    code_tally = _run_code(console, code) if code else None
    report = census.census_report(card_tally, code_tally, inputs)
    census.plot_census(report, chart)
    atomic_write_json(out, report)
    print_census_report(Console(), report)
    Console().print(f"wrote {out} and {chart}")


def _check_hub(cards: str) -> None:
    """A Hub data set needs the hub: when it is unreachable, say so in one line now instead of
    after the hub client's minute of retries."""
    from peftbench.tasks.hub import hub_problem

    if Path(cards).exists():
        return
    problem = hub_problem()
    if problem:
        raise UserError(f"--cards {cards}: {problem}; pass a local Parquet or JSONL copy")


def _run_cards(console: Console, cards: str, sources: list[str],
               columns: census.CardColumns, limit: int | None) -> census.Tally:
    from peftbench.tasks.hub import quiet_hub_clients

    with quiet_hub_clients():
        total = census.count_cards(cards)
        if limit is not None:
            total = min(total, limit) if total is not None else limit
        with census_progress(console, f"cards ({cards})", total) as advance:
            return census.census_cards(cards, sources=sources, columns=columns, limit=limit,
                                       on_item=advance)


def _run_code(console: Console, folder: Path) -> census.Tally:
    with census_progress(console, f"files ({folder})", None) as advance:
        return census.census_code(folder, on_item=advance)
