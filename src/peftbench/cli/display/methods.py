"""What `methods` prints: the catalog table, and a bar while each technique is built on a model
with the libraries' noise silenced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from peftbench.cli.display.tables import Grid, print_grid

#: the methods table's columns: header, what it says (the help and the Markdown caption)
METHOD_COLUMNS = {
    "technique": "the name for --method / --methods",
    "kinds": "model kinds it trains: causal (LM), seq (encoder + classification head), "
             "image (diffusion transformer)",
    "merge": "can be merged into the base weights",
    "multi-adapter": "several adapters can be loaded at once",
    "layers": "layer types it adapts (prompt: virtual tokens only)",
    "quantized bases": "quantized base models it trains on",
    "exact →LoRA": "PEFT's convert_to_lora converts it exactly",
    "export →LoRA": "`peftbench export --to-lora` writes a plain LoRA (SVD of the update)",
    "lr": "default learning rate",
}


def methods_grid(rows: list[dict], kind: str | None, with_counts: bool,
                 description: bool) -> Grid:
    """The catalog rows as a `Grid` (a description column when ``description``)."""
    from peftbench.methods.table import exportable_to_lora

    headers = list(METHOD_COLUMNS) + (["trainable"] if with_counts else []) + (
        ["description"] if description else [])
    grid = Grid(headers, right={headers.index("lr")} | (
        {headers.index("trainable")} if with_counts else set()))
    grid.caption = "; ".join(f"{k}: {v}" for k, v in METHOD_COLUMNS.items() if k != "technique")
    for row in rows:
        kinds = ", ".join(k.split("-")[0] for k, ok in row["applies"].items() if ok) or "—"
        cells = [row["name"], kinds, _mark(row["merge"]), _mark(row["multi_adapter"]),
                 ", ".join(row["layers"]) or ("prompt" if row["prompt_only"] else "—"),
                 ", ".join(row["quantized"]) or "—", _mark(row["lora_convertible"]),
                 _mark(exportable_to_lora(row)), f"{row['default_lr']:g}"]
        if with_counts:
            value = row.get("trainable_parameters")
            cells.append(f"{value:,}" if value else "n/a: " + row["why_not"].get(kind, ""))
        if description:
            cells.append(row["description"])
        grid.rows.append(cells)
    return grid


def print_methods_table(rows: list[dict], kind: str | None, with_counts: bool) -> None:
    """The catalog rows on stdout (a Rich table on a terminal, with descriptions when it is
    wide enough; Markdown with descriptions otherwise), then how many there are and how many
    apply to the model."""
    stdout = Console()
    wide = stdout.width >= 160 or not stdout.is_terminal
    print_grid(methods_grid(rows, kind, with_counts, wide), stdout)
    usable = sum(1 for r in rows if r.get("applicable", True))
    line = f"{len(rows)} techniques" + (f", {usable} apply to this model" if kind else "")
    if stdout.is_terminal:
        stdout.print(line)
    else:
        stdout.file.write(f"\n{line}\n")


def _mark(flag: bool) -> str:
    return "yes" if flag else ""


#: loggers of the libraries whose warnings drown the progress of `methods --model`
THIRD_PARTY_LOGGERS = ("transformers", "peft", "torch", "huggingface_hub", "datasets",
                       "accelerate", "bitsandbytes")


@contextmanager
def quiet_third_party() -> Iterator[str]:
    """Silence the libraries while building techniques: Python warnings, their loggers below
    ERROR, and whatever they print (tqdm bars, notices) to stdout or stderr. Yields nothing
    useful; an exception still propagates with its traceback."""
    import contextlib
    import io
    import logging
    import warnings

    sink = io.StringIO()
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield ""
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def count_with_progress(model: str, kind: str, targets: str | None,
                        names: list[str]) -> dict[str, int | str]:
    """Trainable parameters of each technique in ``names`` on ``model`` (or why it does not
    apply), one technique at a time under a bar on stderr, the libraries' noise silenced."""
    import sys

    from peftbench.engine.counts import trainable_counts

    console = Console(file=sys.stderr)  # bound now: stderr is redirected while building
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    counts: dict[str, int | str] = {}
    with Progress(*columns, console=console, transient=True, redirect_stdout=False,
                  redirect_stderr=False) as progress:
        task = progress.add_task(f"building each technique on {model}", total=len(names))
        for name in names:
            progress.update(task, description=f"building {name} on {model}")
            with quiet_third_party():
                counts.update(trainable_counts(model, kind, targets, [name]))
            progress.advance(task)
    return counts

