"""The `peftbench` command line: one Typer app, each verb a thin call into the modules.

One module per verb (`run`, `tournament`, `recommend`, `report`, `dashboard` for `app`,
`space`, `census`, `methods`, `export`, `tasks`): its command function, its examples, and
`register(app)`, which adds it through `options.add_verb`. The options several verbs take are
declared once in `options`; tables, consoles and progress displays are in `display`.

Every mistake a user can make ends in one line on stderr and exit code 2 (`main`): Typer's
usage errors (unknown option, bad value, missing argument) and peftbench's own `UserError`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from peftbench.cli import (
    census,
    dashboard,
    export,
    methods,
    recommend,
    report,
    run,
    space,
    tasks,
    tournament,
)
from peftbench.cli.display import err_console
from peftbench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",  # help texts use Rich markup: \[default: …], [bold]examples[/]
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Which parameter-efficient fine-tuning technique is best for YOUR model, data and "
    "hardware? A fair, fully measured tournament.",
    epilog="Start with `peftbench tournament --preset quick --out tournament-quick`; "
    "`peftbench VERB -h` shows a verb's options and examples.",
)


def _print_version(value: bool) -> None:
    """``--version``: print peftbench's version and stop."""
    if value:
        from peftbench import __version__

        typer.echo(f"peftbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_print_version, is_eager=True,
        help="print peftbench's version and exit")] = False,
) -> None:
    """peftbench: a fair tournament of parameter-efficient fine-tuning techniques."""


# in the order `peftbench --help` lists them
for _verb in (run, tournament, recommend, report, dashboard, space, export, methods, tasks,
              census):
    _verb.register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the app on ``argv`` (default: the process's arguments). A `UserError`
    or a usage error becomes one line on stderr and exit code 2; never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="peftbench", standalone_mode=False)
    except UserError as exc:
        _error_line(str(exc))
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        if not isinstance(exc, _click_errors()):
            raise
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            _error_line(usage_message(exc))
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


def usage_message(exc: Any) -> str:
    """A usage error as one line: click's message and where the verb's help is."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command_path:
        message += f" (see `{ctx.command_path} -h`)"
    return message


def _error_line(message: str) -> None:
    """``error: MESSAGE`` on stderr, on one line however narrow the terminal."""
    from rich.text import Text

    line = Text.assemble(("error:", "bold red"), " ", " ".join(message.splitlines()))
    err_console.print(line, highlight=False, soft_wrap=True)


def _click_errors() -> tuple[type[Exception], ...]:
    """Click's error classes: recent typers carry their own click (its errors derive from
    `typer.TyperException`), older ones raise those of the click package."""
    errors = [getattr(typer, "TyperException", None)]
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(error for error in errors if isinstance(error, type))
