"""Calling the CLI inside the test process, shared by the CLI test files."""

from __future__ import annotations

from peftbench.cli import main


def peftbench(capsys, *args: str) -> tuple[int, str, str]:
    """`peftbench ARGS` in this process: exit code, stdout, stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
