"""`peftbench tasks`: every task with what it is, how it is scored, its options and defaults."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from peftbench.cli.display import Grid, print_grid
from peftbench.cli.options import add_verb, check_task

EXAMPLES = [
    "peftbench tasks",
    "peftbench tasks jsonl",
    "peftbench tasks arith --json",
]


def register(app: typer.Typer) -> None:
    """Add the `tasks` verb to ``app``."""
    add_verb(app, "tasks", tasks, EXAMPLES)


def tasks(
    name: Annotated[str | None, typer.Argument(
        metavar="TASK", callback=check_task,
        help="only this task  \\[default: all of them]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List the tasks with their options and defaults, your own data's included.

    A task is chosen with `--task NAME` (your data: `--task jsonl:FILE`, `--task csv:FILE` or
    `--data FILE`) and set with `--task-opt KEY=VALUE`."""
    from peftbench.tasks import task_doc, task_names

    names = [name.partition(":")[0]] if name else task_names()
    described = {n: describe(n, task_doc(n)) for n in names}
    if as_json:
        typer.echo(json.dumps(described, indent=1))
        return
    console = Console()
    for task, doc in described.items():
        print_grid(task_grid(task, doc), console)
        console.print()


def describe(name: str, doc: Any) -> dict[str, Any]:
    """A task's description as plain data (the JSON output)."""
    return {"name": name, "summary": doc.summary, "metric": doc.metric,
            "argument": doc.argument, "example": doc.example,
            "options": [{"name": o.name, "default": o.default, "meaning": o.meaning}
                        for o in doc.options]}


def task_grid(name: str, doc: dict[str, Any]) -> Grid:
    """One task as a table of its options, titled with what it is."""
    usage = f"--task {name}:{doc['argument'].split(':')[0]}" if doc["argument"] else \
        f"--task {name}"
    caption = "; ".join(part for part in (
        f"scored by {doc['metric']}" if doc["metric"] else "",
        f"argument {doc['argument']}" if doc["argument"] else "",
        f"e.g. peftbench run {doc['example']}" if doc["example"] else "",
        "options: --task-opt NAME=VALUE (repeatable)" if doc["options"] else "no options")
        if part)
    rows = [[o["name"], show_default(o["default"]), o["meaning"]] for o in doc["options"]]
    return Grid(["option", "default", "meaning"], rows, title=f"{usage}: {doc['summary']}",
                caption=caption)


def show_default(value: Any) -> str:
    """A default as typed on the command line: ``—`` when not set, escapes visible."""
    if value is None:
        return "—"
    text = json.dumps(value) if isinstance(value, str) else str(value)
    return text.strip('"') if isinstance(value, str) and "\n" not in value else text
