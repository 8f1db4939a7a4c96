"""The `peftbench` command line: one Typer app, each verb a thin call into the modules."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from peftbench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Which parameter-efficient fine-tuning technique is best for YOUR model, data and "
    "hardware? A fair, fully measured tournament.",
)
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """peftbench: a fair tournament of parameter-efficient fine-tuning techniques."""


# Each module registers its verbs here (one line each), keeping this file a table of contents.
from peftbench import run_cli  # noqa: E402

run_cli.register(app)
from peftbench import analysis_cli  # noqa: E402

analysis_cli.register(app)
from peftbench import census_cli  # noqa: E402

census_cli.register(app)
from peftbench import methods_cli  # noqa: E402

methods_cli.register(app)
from peftbench import export_cli  # noqa: E402

export_cli.register(app)
from peftbench import tournament_cli  # noqa: E402

tournament_cli.register(app)


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
        import click

        if isinstance(exc, click.ClickException):
            err_console.print(f"[bold red]error:[/] {exc.format_message()}", highlight=False)
            sys.exit(2)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
