"""The README's commands stay true: its shell blocks run, and every `peftbench` command it or a
verb's help quotes names a verb and options that exist.

A shell block runs line by line in an empty folder, through the same `main` as the command:
``cat > FILE <<'EOF'`` writes the file, a `peftbench` command runs (a tournament with
``--dry-run --no-calibrate``: its plan is checked, the hours of training are not), `bash
scripts/setup.sh` and the test command itself are left out.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from peftbench.cli import app, main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    """The README's ```bash blocks."""
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def peftbench_args(line: str) -> list[str] | None:
    """The arguments of the `peftbench` command on ``line`` (None when it runs none)."""
    for part in line.split("&&"):
        words = shlex.split(part.strip(), comments=True)
        if words and words[0].endswith("peftbench"):
            return words[1:]
    return None


def steps(block: str) -> list[tuple[str, object]]:
    """A block as ("file", (name, text)) and ("peftbench", args) steps, in order."""
    found: list[tuple[str, object]] = []
    lines = iter(block.splitlines())
    for line in lines:
        heredoc = re.fullmatch(r"cat > (\S+) <<'(\w+)'", line.strip())
        if heredoc:
            body = []
            for inner in lines:
                if inner == heredoc[2]:
                    break
                body.append(inner)
            found.append(("file", (heredoc[1], "\n".join(body) + "\n")))
            continue
        args = peftbench_args(line)
        if args is not None:
            found.append(("peftbench", args))
    return found


def run(args: list[str], capsys) -> tuple[int, str, str]:
    if args and args[0] == "tournament":
        args = [*args, "--dry-run", "--no-calibrate"]
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("index", range(len(shell_blocks())))
def test_every_shell_block_of_the_readme_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for kind, what in steps(shell_blocks()[index]):
        if kind == "file":
            name, text = what
            Path(name).write_text(text)
            continue
        code, out, err = run(list(what), capsys)
        assert code == 0, (what, err)
        assert out.strip(), what  # each prints its result on stdout
        ran += 1
    if "peftbench" not in shell_blocks()[index]:
        assert ran == 0
    if "qa.jsonl" in shell_blocks()[index]:  # the bring-your-own-data example trained
        assert len(list((tmp_path / "qa-check").glob("*.json"))) == 1


def quoted_commands() -> list[str]:
    """`peftbench VERB …` as the README quotes them inline, and every verb's help examples."""
    inline = re.findall(r"`(?:\.venv/bin/)?(peftbench [a-z][^`]*)`", README)
    examples = [line for command in typer.main.get_command(app).commands.values()
                for line in (command.epilog or "").splitlines() if line.startswith("peftbench ")]
    return inline + examples


@pytest.mark.parametrize("command", quoted_commands())
def test_every_quoted_command_names_a_verb_and_options_that_exist(command):
    verbs = typer.main.get_command(app).commands
    words = shlex.split(command.replace("…", ""))
    assert words[1] in verbs, command
    known = {opt for param in verbs[words[1]].params
             for opt in [*param.opts, *getattr(param, "secondary_opts", [])]}
    known |= {"-h", "--help"}
    used = {w.split("=")[0] for w in words[2:] if w.startswith("-") and not w[1:2].isdigit()}
    assert used <= known, (command, used - known)
