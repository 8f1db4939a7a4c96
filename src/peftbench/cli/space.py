"""`peftbench space`: a Hugging Face Space folder (the dashboard over result folders), and
optionally its upload."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peftbench.cli.display import console
from peftbench.cli.options import ResultDirs, add_verb

EXAMPLES = [
    "peftbench space tournament-quick --out tournament-space",
    "peftbench space tournament-quick results --out my-space --title 'LoRA vs the rest'",
    "peftbench space tournament-quick --out tournament-space --push my-name/peft-tournament",
]


def register(app: typer.Typer) -> None:
    """Add the `space` verb to ``app``."""
    add_verb(app, "space", space, EXAMPLES)


def space(
    dirs: ResultDirs,
    out: Annotated[Path, typer.Option(
        "--out", file_okay=False, show_default=False,
        help="the Space folder to write (new, empty, or one `peftbench space` wrote)")],
    title: Annotated[str | None, typer.Option(
        show_default="peftbench: the folders' names", help="the Space's title")] = None,
    push: Annotated[str | None, typer.Option(
        metavar="OWNER/NAME", show_default="no upload",
        help="upload the folder to this Space with huggingface_hub (needs `hf auth login` "
             "or HF_TOKEN)")] = None,
) -> None:
    """Write a folder that Hugging Face Spaces runs as it is: app.py (the dashboard of
    `peftbench app`), requirements.txt pinned to the installed versions, the result files and
    a README with the Space's header.

    The folder's path goes to stdout (with --push, the Space's URL); where it is and how to
    run it locally to stderr."""
    from peftbench.analysis.space import build_space, check_logged_in, push_space

    if push is not None:
        check_logged_in(push)  # before anything is written
    written = build_space(list(dirs), out, title)
    console.print(f"Space: {written.results} result files in {out}/; try it here with "
                  f"`cd {out} && python app.py`", highlight=False, soft_wrap=True)
    if push is None:
        typer.echo(str(out))
        return
    typer.echo(push_space(out, push))
