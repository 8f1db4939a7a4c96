"""`peftbench app`: the interactive dashboard over result folders.

(The module is not called ``app``: that name in `peftbench.cli` is the Typer app.)
"""

from __future__ import annotations

from typing import Annotated

import typer

from peftbench.cli.options import ResultDirs, add_verb
from peftbench.errors import UserError

EXAMPLES = [
    "peftbench app tournament-quick",
    "peftbench app tournament-quick results --port 0",
    "peftbench app tournament-quick --host 0.0.0.0 --port 8080",
]


def register(app: typer.Typer) -> None:
    """Add the `app` verb to ``app``."""
    add_verb(app, "app", app_, EXAMPLES)


def app_(
    dirs: ResultDirs,
    host: Annotated[str, typer.Option(
        help="address to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0 = any free one)")] = 7860,
) -> None:
    """Serve the interactive dashboard (Gradio) over the given result folders."""
    from peftbench.analysis.app import serve

    try:
        serve(dirs, host=host, port=port)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
