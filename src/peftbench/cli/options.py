"""What the verbs share: the options several of them take, declared once as `Annotated` aliases,
and `add_verb`, the one way a verb module adds its command (with its examples) to the app.

Help texts that list names hold a placeholder (``{models}``, ``{tasks}``, ``{executors}``) that
`VerbCommand` fills in from the registries only when that verb's help is shown, so neither
``peftbench --help`` nor a verb's actual work pays for looking them up; where a registry can
only be read by importing heavy modules (torch, numpy), its names are read from the source.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

# --------------------------------------------------------------------------------------------
# The names help texts list, looked up when a help is shown
#
# The model names live in a module that imports torch, the built-in tasks register themselves
# when their modules are imported (numpy, ~0.2 s), and the executors' table sits behind the
# tournament package: unless those modules are loaded already, the names are read from the
# source (dict literals, ``register("name")`` calls), falling back to the import when the
# source shows none.


def model_names() -> list[str]:
    """The models known by name (embedded, then tiny test ones) from `peftbench.engine.models`."""
    tables = ("EMBEDDED", "TINY")
    module = sys.modules.get("peftbench.engine.models")
    if module is None:
        tree = _parse(_source_file("peftbench.engine.models"))
        names = [name for table in tables for name in _dict_keys(tree, table)]
        if names:
            return names
        module = importlib.import_module("peftbench.engine.models")
    return [name for table in tables for name in getattr(module, table, {})]


def task_names() -> list[str]:
    """The registered task names, as `peftbench.tasks.task_names()` gives them: those the task
    modules register and those of installed plugins (entry points)."""
    init = _source_file("peftbench.tasks") if "peftbench.tasks" not in sys.modules else None
    names: set[str] = set()
    for path in sorted(init.parent.glob("*.py")) if init else []:
        text = _read(path)
        if "register" in text:  # parsing is the slow part: only modules that may register
            names.update(_registered(_parse_text(text)))
    if not names:
        from peftbench.tasks import task_names as registered

        return registered()
    group = next(iter(_constants(_parse(init.parent / "base.py"), "ENTRY_POINT_GROUP")),
                 "peftbench.tasks")
    from importlib.metadata import entry_points

    names.update(point.name for point in entry_points(group=group))
    return sorted(names)


def executor_names() -> list[str]:
    """The executors' names: the keys of `peftbench.tournament.executors.EXECUTORS`."""
    if "peftbench.tournament.executors" not in sys.modules:
        tournament = _source_file("peftbench.tournament")  # without importing the package
        if tournament is not None:
            path = tournament.parent / "executors" / "__init__.py"
            names = _dict_keys(_parse(path), "EXECUTORS")
            if names:
                return names
    from peftbench.tournament.executors import EXECUTORS

    return list(EXECUTORS)


def _source_file(module: str) -> Path | None:
    """Where ``module``'s source is, found without importing it (only its parents)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _read(path: Path | None) -> str:
    try:
        return path.read_text() if path else ""
    except (OSError, ValueError):
        return ""


def _parse_text(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _parse(path: Path | None) -> ast.Module | None:
    return _parse_text(_read(path))


def _assigned(tree: ast.Module | None, name: str) -> list[ast.expr]:
    """The values assigned to ``name`` at the top level of ``tree``."""
    values = []
    for node in tree.body if tree else []:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            values.append(value)
    return values


def _dict_keys(tree: ast.Module | None, name: str) -> list[str]:
    """The string keys of the dict literal assigned to ``name``."""
    return [key.value for value in _assigned(tree, name) if isinstance(value, ast.Dict)
            for key in value.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]


def _constants(tree: ast.Module | None, name: str) -> list[str]:
    """The string constants assigned to ``name``."""
    return [value.value for value in _assigned(tree, name)
            if isinstance(value, ast.Constant) and isinstance(value.value, str)]


def _registered(tree: ast.Module | None) -> set[str]:
    """Names given in ``register("name")`` and ``register_task(factory, "name")`` calls."""
    names = set()
    for node in ast.walk(tree) if tree else []:
        if not isinstance(node, ast.Call):
            continue
        called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if called == "register":
            given = node.args[:1]
        elif called == "register_task":
            given = node.args[1:2] or node.args[:1]  # (factory, name) or ("name") as decorator
        else:
            continue
        given += [kw.value for kw in node.keywords if kw.arg == "name"]
        names.update(g.value for g in given
                     if isinstance(g, ast.Constant) and isinstance(g.value, str))
    return names


#: placeholder in a help text -> the names it stands for
NAMES: dict[str, Callable[[], list[str]]] = {
    "{models}": model_names,
    "{tasks}": task_names,
    "{executors}": executor_names,
}


def fill_names(text: str) -> str:
    """``text`` with each placeholder of `NAMES` replaced by its comma-separated names."""
    for placeholder, names in NAMES.items():
        if placeholder in text:
            try:
                listed = ", ".join(names()) or "(none found)"
            except Exception as exc:  # a broken plugin must not break --help
                listed = f"(names unavailable: {exc})"
            text = text.replace(placeholder, listed)
    return text


class VerbCommand(TyperCommand):
    """A verb's command: fills in the names its options' help lists just before showing it."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            text = getattr(param, "help", None)
            if text and "{" in text:
                param.help = fill_names(text)
        super().format_help(ctx, formatter)


def add_verb(app: typer.Typer, name: str, function: Callable[..., Any],
             examples: list[str]) -> None:
    """Add ``function`` to ``app`` as the verb ``name``, its help ending with ``examples``."""
    epilog = "examples:\n\n" + "\n".join(examples)
    app.command(name, cls=VerbCommand, epilog=epilog)(function)


# --------------------------------------------------------------------------------------------
# Options shared by several verbs (each verb gives the default)

#: the base model (run, tournament)
Model = Annotated[str, typer.Option(help="{models}, a hub id or a local folder")]
#: the task (run, tournament)
Task = Annotated[str, typer.Option(
    help="{tasks}; NAME:ARGUMENT gives a task its argument (jsonl:PATH, csv:PATH)")]
#: the modules to adapt (run, tournament, methods)
Targets = Annotated[str | None, typer.Option(
    help="modules to adapt: attention (default), all-linear, or a comma list")]
#: local data for the task (run, tournament)
Data = Annotated[str | None, typer.Option(help="local data for the task")]
#: task options (run, tournament)
TaskOpts = Annotated[list[str] | None, typer.Option(
    help="task option key=value (repeatable), e.g. difficulty=3")]
#: the forgetting probe's text (run, tournament)
GeneralText = Annotated[str | None, typer.Option(
    help="WikiText-2 folder for the forgetting probe (default: the hub)")]
#: where result files go (run, tournament)
ResultsFolder = Annotated[Path, typer.Option("--out", help="folder for the result files")]
#: progress bars on or off (run, tournament, export)
ShowProgress = Annotated[bool, typer.Option(help="show progress bars")]
#: the result files and folders read (recommend, report, app)
ResultDirs = Annotated[list[Path], typer.Argument(
    help="result files or folders (ours and/or the PEFT suite's)")]
#: only the results of this task (recommend, report)
OnlyTask = Annotated[str | None, typer.Option("--task", help="only this task")]
#: only the results of this base model (recommend, report)
OnlyModel = Annotated[str | None, typer.Option("--model", help="only this base model")]
