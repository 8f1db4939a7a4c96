"""`peftbench recommend`, `peftbench report` and `peftbench app`: decisions from result folders."""

from __future__ import annotations

from pathlib import Path

import typer

from peftbench.errors import UserError

DIRS = typer.Argument(..., help="result files or folders (ours and/or the PEFT suite's)")
OUT = typer.Option("report", "--out", "-o", help="output folder")


def register(app: typer.Typer) -> None:
    """Add the `recommend`, `report` and `app` verbs to ``app``."""

    @app.command("recommend")
    def recommend(
        dirs: list[Path] = DIRS,
        max_memory: str = typer.Option("", help="peak memory bound, e.g. 20GB or 24GiB"),
        must: str = typer.Option("", help="required capabilities, e.g. merge,quantized"),
        optimize: str = typer.Option("test_score", help="metric to optimize (:min/:max)"),
        where: str = typer.Option("", help="more constraints, e.g. 'train_time < 1h'"),
        task: str = typer.Option(None, help="only this task"),
        model: str = typer.Option(None, help="only this base model"),
        runners_up: int = typer.Option(3, min=0, help="runners-up to show"),
    ) -> None:
        """The best technique under constraints, the runners-up, and what ruled out the rest."""
        from peftbench import analysis as an

        results = an.load_results(dirs)
        runs = results.select(task, model)
        for group in sorted({(r.task, r.model) for r in runs}):
            members = [r for r in runs if (r.task, r.model) == group]
            rec = an.recommend(members, optimize, max_memory or None, must, where)
            typer.echo("\n".join(rec.explain(runners_up)))
            failed = [r for r in members if not r.ok]
            if failed:
                names = ", ".join(f"{r.experiment_name} ({r.status})" for r in failed)
                typer.echo(f"  failed runs, not considered: {names}")
            typer.echo("")
        for path, why in results.problems:
            typer.echo(f"unreadable: {path}: {why}")

    @app.command("report")
    def report(
        dirs: list[Path] = DIRS,
        out: Path = OUT,
        x: str = typer.Option("peak_memory", help="x metric of the Pareto plot (:min/:max)"),
        y: str = typer.Option("test_score", help="y metric of the Pareto plot (:min/:max)"),
        level: str = typer.Option("config", help="'config' (every configuration) or "
                                  "'technique' (best configuration per technique)"),
        where: str = typer.Option("", help="filter, e.g. 'merge, peak_memory < 24GB'"),
        task: str = typer.Option(None, help="only this task"),
        model: str = typer.Option(None, help="only this base model"),
    ) -> None:
        """Write report.html (self-contained, interactive), PNG charts and report.md."""
        from peftbench.report import write_report

        written = write_report(dirs, out, x, y, level, task, model, where)
        for path in written:
            typer.echo(str(path))

    @app.command("app")
    def app_(
        dirs: list[Path] = DIRS,
        host: str = typer.Option("127.0.0.1", help="address to bind (default: this machine "
                                 "only)"),
        port: int = typer.Option(7860, min=0, max=65535, help="port (0 = any free one)"),
    ) -> None:
        """Serve the interactive dashboard (Gradio) over the given result folders."""
        from peftbench.app import serve

        try:
            serve(dirs, host=host, port=port)
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
