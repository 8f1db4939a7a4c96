"""The `peftbench` command line: one Typer app, each verb a thin call into the modules.

One module per verb (`run`, `tournament`, `recommend`, `report`, `dashboard` for `app`,
`census`, `methods`, `export`): its command function, its examples, and `register(app)`, which
adds it through `options.add_verb`. The options several verbs take are declared once in
`options`; tables, consoles and progress displays are in `display`.
"""

from __future__ import annotations

import sys

import typer

from peftbench.cli import (
    census,
    dashboard,
    export,
    methods,
    recommend,
    report,
    run,
    tournament,
)
from peftbench.cli.display import err_console
from peftbench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Which parameter-efficient fine-tuning technique is best for YOUR model, data and "
    "hardware? A fair, fully measured tournament.",
)


@app.callback()
def _root() -> None:
    """peftbench: a fair tournament of parameter-efficient fine-tuning techniques."""


# in the order `peftbench --help` lists them
for _verb in (run, recommend, report, dashboard, census, methods, export, tournament):
    _verb.register(app)


def main() -> None:
    """Entry point: run the app; a `UserError` becomes one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)  # click returns a typer.Exit's code here
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        if not isinstance(exc, _click_errors()):
            raise
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            err_console.print(f"[bold red]error:[/] {exc.format_message()}", highlight=False)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


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

