"""`peftbench run`: one experiment end to end (filled in by the engine)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `run` verb to ``app``."""

    @app.command("run")
    def run() -> None:
        """Train, evaluate and measure one experiment, writing one result file."""
        raise NotImplementedError
