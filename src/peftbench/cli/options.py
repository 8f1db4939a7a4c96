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
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from peftbench.errors import UserError, did_you_mean, unknown_name

# --------------------------------------------------------------------------------------------
# The names help texts list, looked up when a help is shown
#
# The model names live in a module that imports torch, the built-in tasks register themselves
# when their modules are imported (numpy, ~0.2 s), and the executors' table sits behind the
# tournament package: unless those modules are loaded already, the names are read from the
# source (dict literals, ``register("name")`` calls), falling back to the import when the
# source shows none.


def config_names() -> list[str]:
    """The shipped configs' names (``config:NAME``) from `peftbench.engine.config_models`."""
    module = sys.modules.get("peftbench.engine.config_models")
    if module is None:
        names = _dict_keys(_parse(_source_file("peftbench.engine.config_models")), "CONFIGS")
        if names:
            return names
        module = importlib.import_module("peftbench.engine.config_models")
    return list(getattr(module, "CONFIGS", {}))


def model_names() -> list[str]:
    """The models known by name (embedded, tiny test ones, image models) from
    `peftbench.engine.models`."""
    tables = ("EMBEDDED", "TINY", "IMAGE")
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
    "{configs}": config_names,
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
    """Add ``function`` to ``app`` as the verb ``name``, its help ending with ``examples``
    (each on its own line: Rich's help joins the lines of a paragraph)."""
    epilog = "[bold]examples[/]\n\n" + "\n\n".join(examples)
    app.command(name, cls=VerbCommand, epilog=epilog)(function)


# --------------------------------------------------------------------------------------------
# Checks run while the command line is parsed: a bad value is a usage error naming its option
# (exit 2, one line) before the verb does anything.


def positive(value: float | None) -> float | None:
    """A number above 0 (and finite), or None when not given."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter(f"{value:g} is not a positive number")
    return value


def non_negative(value: float | None) -> float | None:
    """A number of at least 0 (and finite), or None when not given."""
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise typer.BadParameter(f"{value:g} is not a number >= 0")
    return value


def one_of(what: str, known: Callable[[], Sequence[str]]) -> Callable[[Any], Any]:
    """A check that the value is one of ``known()`` (case-insensitive; the known spelling is
    returned); an unknown one names the closest and lists them all."""

    def check(value: str | None) -> str | None:
        if value is None:
            return value
        names = list(known())
        by_key = {name.lower(): name for name in names}
        if value.strip().lower() in by_key:
            return by_key[value.strip().lower()]
        raise typer.BadParameter(str(unknown_name(what, value, names)))

    return check


def check_model(value: str | None) -> str | None:
    """A model: a known name, a local folder or a hub id (``org/name``); anything else is an
    unknown name with the closest known one."""
    if value is None or value in model_names() or "/" in value or Path(value).exists():
        return value
    if value.startswith("config:"):
        return _check_config_model(value)
    known = ", ".join(model_names())
    raise typer.BadParameter(f"unknown model '{value}'{did_you_mean(value, model_names())} "
                             f"(known: {known}; or a local folder, or a hub id like ORG/NAME)")


def _check_config_model(value: str) -> str:
    """``config:NAME``: a shipped config's name (a path or hub id is checked on loading)."""
    ref, shipped = value.removeprefix("config:"), config_names()
    if ref in shipped or "/" in ref or Path(ref).exists():
        return value
    raise typer.BadParameter(f"unknown config '{ref}'{did_you_mean(ref, shipped)} "
                             f"(shipped: {', '.join(shipped)}; or a config.json path, or a "
                             "hub id like ORG/NAME)")


def check_method(value: str | None) -> str | None:
    """A technique's catalog name (``LoRA``, ``lora-fa`` and aliases become ``lora``,
    ``lora_fa``): file names and tables then use one spelling."""
    if value is None:
        return value
    from peftbench.methods import get_method

    try:
        return get_method(value).name
    except UserError as exc:
        raise typer.BadParameter(str(exc)) from None


def check_task(value: str | None) -> str | None:
    """A task: a registered name, with ``:ARGUMENT`` where it takes one (``jsonl:data.jsonl``)."""
    if value is None:
        return value
    name = value.partition(":")[0]
    names = task_names()
    if name not in names:
        raise typer.BadParameter(str(unknown_name("task", name, names))
                                 + "; `peftbench tasks` describes them")
    return value


def as_usage_error(check: Callable[[Any], Any], value: Any) -> None:
    """Run ``check(value)``; its `UserError` becomes a usage error naming the option."""
    try:
        check(value)
    except UserError as exc:
        raise typer.BadParameter(str(exc)) from None


def check_report_to(value: str | None) -> str | None:
    """``--report-to``: known tracker names whose packages are installed (else a usage error
    naming the closest name, or the extra to install)."""
    if value is None:
        return value
    from peftbench.trackers import check_installed, parse_report_to

    as_usage_error(lambda text: check_installed(parse_report_to(text)), value)
    return value


def check_metric(value: str) -> str:
    """A metric name, optionally with :min or :max (``--optimize``, ``--x``, ``--y``)."""
    from peftbench.analysis.metrics import parse_metric_spec

    as_usage_error(parse_metric_spec, value)
    return value


def check_filter(value: str) -> str:
    """A filter in the grammar of `peftbench.analysis.filters` (``--where``)."""
    from peftbench.analysis.filters import parse_filter

    as_usage_error(parse_filter, value)
    return value


def read_json_object(path: Path, option: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, given with ``option``; a missing, empty, binary or
    malformed file is a `UserError` naming the option and the problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    if not raw.strip():
        raise UserError(f"{option} {path}: the file is empty; expected {what} (a JSON object)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{option} {path}: not a text file; expected {what} (a JSON "
                        "object)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{option} {path}: not valid JSON ({exc.msg} at line {exc.lineno} "
                        f"column {exc.colno}); expected {what}") from None
    if not isinstance(data, dict):
        raise UserError(f"{option} {path}: expected {what} (a JSON object), got a "
                        f"{type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------
# Options shared by several verbs (each verb gives the default)

#: the base model (run, tournament)
Model = Annotated[str, typer.Option(
    callback=check_model, help="{models}, a hub id (ORG/NAME), a local model folder, or "
    "config:NAME|PATH|ORG/NAME: the architecture alone with random weights, for cost figures "
    "(shipped: {configs})")]
#: the task (run, tournament)
Task = Annotated[str, typer.Option(
    callback=check_task,
    help="{tasks}; your own data: jsonl:FILE or csv:FILE (or --data FILE); "
         "`peftbench tasks` lists every task's options")]
#: the modules to adapt (run, tournament, methods)
Targets = Annotated[str | None, typer.Option(
    help="modules to adapt: attention, all-linear, or a comma list of module names  "
         "\\[default: attention]")]
#: local data for the task (run, tournament)
Data = Annotated[str | None, typer.Option(
    help="local data for the task: the file of jsonl/csv, or the folder of gsm8k, sst2, "
         "metamathqa (default: the hub); the task option data=…")]
#: task options (run, tournament)
TaskOpts = Annotated[list[str] | None, typer.Option(
    metavar="KEY=VALUE",
    help="task option (repeatable), e.g. difficulty=3 or n_test=100; `peftbench tasks` lists "
         "each task's options and defaults")]
#: the forgetting probe's text (run, tournament)
GeneralText = Annotated[Path | None, typer.Option(
    exists=True, help="a WikiText-2 folder (valid.txt, test.txt) or a text file for the "
                      "forgetting probe  \\[default: WikiText-2 from the hub; offline, "
                      "forgetting is not measured]")]
#: where result files go (run, tournament)
ResultsFolder = Annotated[Path, typer.Option(
    "--out", file_okay=False, help="folder for the result files (created when missing)")]
#: progress bars on or off (run, tournament, export)
ShowProgress = Annotated[bool, typer.Option(help="show progress bars (on stderr)")]
#: the result files and folders read (recommend, report, app)
ResultDirs = Annotated[list[Path], typer.Argument(
    metavar="RESULTS...", exists=True,
    help="result files or folders (tournament folders, `peftbench run` --out folders, the "
         "PEFT suite's results)")]
#: only the results of this task (recommend, report)
OnlyTask = Annotated[str | None, typer.Option(
    "--task", show_default="every task", help="only this task's results")]
#: only the results of this base model (recommend, report)
OnlyModel = Annotated[str | None, typer.Option(
    "--model", show_default="every model", help="only this base model's results")]
#: a machine-readable summary on stdout (run, tournament, recommend)
AsJson = Annotated[bool, typer.Option(
    "--json", help="print a machine-readable JSON summary on stdout instead of text")]
#: experiment trackers each run reports to (run, tournament)
ReportTo = Annotated[str, typer.Option(
    callback=check_report_to, metavar="TRACKERS",
    help="experiment trackers each run reports to, from its own process, offline: any of "
         "tensorboard,mlflow,wandb,trackio (pip install 'peftbench[trackers]'), or none")]
#: where the trackers keep their local stores (run, tournament)
TrackingDir = Annotated[Path, typer.Option(
    file_okay=False, help="folder of the trackers' local stores, one sub-folder per tracker "
                          "(outside the results folder)")]
