"""Every option of every verb, given wrong: one `error:` line naming it, exit 2, no file written.

The options are enumerated from the Typer app itself, so a new option is fuzzed without being
listed here: numbers get text, negative numbers and zero; input paths get missing, empty and
binary files and the wrong kind (a folder for a file); names get misspellings, answered with
the closest known name. Everything runs in this process through the same `main` as the
`peftbench` command, from an empty working folder that must stay empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_helpers import peftbench

from peftbench.cli import app

ROOT = Path(__file__).resolve().parent.parent

#: options where 0 is a meaningful value (every other number option rejects it)
ZERO_ALLOWED = {("run", "--eval-every"), ("run", "--weight-decay"), ("run", "--seed"),
                ("tournament", "--seed"), ("tournament", "--lr-extend"),
                ("recommend", "--runners-up"), ("app", "--port"),
                ("export", "--min-score-ratio")}
#: path options that name something to write, not to read
OUTPUTS = {("run", "--out"), ("tournament", "--out"), ("report", "--out"), ("export", "--out"),
           ("census", "--out"), ("census", "--chart"), ("space", "--out"),
           ("run", "--tracking-dir"), ("tournament", "--tracking-dir")}


def verbs() -> dict[str, Any]:
    """The click commands of the app, by verb."""
    return dict(typer.main.get_command(app).commands)


def options(kind: type) -> list[tuple[str, str]]:
    """(verb, option) for every option whose value is of ``kind`` (int, float, Path)."""
    found = []
    for verb, command in verbs().items():
        for param in command.params:
            annotation = param.type_descriptor.annotation
            if param.param_type_name == "option" and annotation is kind:
                found.append((verb, param.opts[0]))
    return found


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder of inputs: a result folder, a result file, empty and binary files."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "results").mkdir()
    (folder / "result.json").write_text('{"run_info": {}, "train_info": {}}')
    (folder / "empty.json").write_bytes(b"")
    (folder / "binary.json").write_bytes(bytes(range(256)) * 4)
    return folder


@pytest.fixture()
def work(tmp_path, monkeypatch) -> Path:
    """An empty working folder; every test checks that it stays empty."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def required(verb: str, inputs: Path) -> list[str]:
    """What a verb needs besides the option under test, so that parsing reaches it."""
    return {"recommend": [str(inputs / "results")], "report": [str(inputs / "results")],
            "app": [str(inputs / "results")], "space": [str(inputs / "results")],
            "export": [str(inputs / "result.json"), "--out", "exported"]}.get(verb, [])



def assert_one_error_line(result: tuple[int, str, str], *needles: str) -> str:
    """Exit 2, nothing on stdout, one `error:` line on stderr holding every needle."""
    code, out, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and not out.strip(), (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_empty(folder: Path) -> None:
    assert sorted(os.listdir(folder)) == [], "a mistake must leave no file"


# -------------------------------------------------------------------------------- the parser


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_an_unknown_option_names_itself_and_the_verbs_help(verb, capsys, work, inputs):
    line = assert_one_error_line(
        peftbench(capsys, verb, *required(verb, inputs), "--no-such-option", "1"),
        "No such option: --no-such-option", f"peftbench {verb} -h")
    assert line.count("error") == 1
    assert_empty(work)


@pytest.mark.parametrize(("verb", "option"), options(int) + options(float))
def test_every_number_option_rejects_text_negatives_and_zero(verb, option, capsys, work,
                                                             inputs):
    for value in ("abc", "-1", "1e999x", *([] if (verb, option) in ZERO_ALLOWED else ["0"])):
        result = peftbench(capsys, verb, *required(verb, inputs), f"{option}={value}")
        assert_one_error_line(result, f"'{option}'")
    assert_empty(work)


@pytest.mark.parametrize(("verb", "option"), options(Path))
def test_every_input_path_must_exist(verb, option, capsys, work, inputs):
    if (verb, option) in OUTPUTS:
        return
    missing = str(inputs / "no-such-file")
    assert_one_error_line(peftbench(capsys, verb, *required(verb, inputs), option, missing),
                          f"'{option}'", "does not exist")
    assert_empty(work)


@pytest.mark.parametrize(
    "args",
    [["recommend"], ["report"], ["app"], ["export", "--out", "x", "--merge"], ["export", "R"]],
)
def test_a_missing_argument_is_named(args, capsys, work, inputs):
    if args == ["export", "R"]:
        args = ["export", str(inputs / "result.json")]
    assert_one_error_line(peftbench(capsys, *args), "Missing")
    assert_empty(work)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "{inputs}/result.json"], ["'EXPERIMENT'", "is a file"]),
        (["run", "--spec", "{inputs}"], ["'--spec'", "is a directory"]),
        (["run", "--adapter-config", "{inputs}"], ["'--adapter-config'", "is a directory"]),
        (["census", "--code", "{inputs}/result.json"], ["'--code'", "is a file"]),
        (["export", "{inputs}", "--out", "x", "--merge"], ["'RESULT'", "is a directory"]),
        (["report", "{inputs}/results", "--out", "{inputs}/result.json"],
         ["'--out'", "is a file"]),
        (["run", "--out", "{inputs}/result.json"], ["'--out'", "is a file"]),
        (["tournament", "--out", "{inputs}/result.json"], ["'--out'", "is a file"]),
        (["export", "{inputs}/result.json", "--out", "{inputs}/result.json", "--merge"],
         ["'--out'", "is a file"]),
        (["census", "--out", "{inputs}"], ["'--out'", "is a directory"]),
    ],
)
def test_a_path_of_the_wrong_kind_is_named(args, needles, capsys, work, inputs):
    args = [a.replace("{inputs}", str(inputs)) for a in args]
    assert_one_error_line(peftbench(capsys, *args), *needles)
    assert_empty(work)


# -------------------------------------------------------------------------------- the files


@pytest.mark.parametrize("which", ["empty.json", "binary.json"])
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--spec", "{file}"], "--spec"),
        (["run", "--adapter-config", "{file}"], "--adapter-config"),
        (["run", "--model", "tiny-llama", "--general-text", "{file}"], "--general-text"),
        (["run", "--model", "tiny-llama", "--task", "jsonl:{file}"], "{file}"),
        (["run", "--model", "tiny-llama", "--task", "jsonl", "--data", "{file}"], "{file}"),
        (["tournament", "--model", "tiny-llama", "--task", "csv:{file}"], "{file}"),
        (["export", "{file}", "--out", "x", "--merge"], "{file}"),
        (["recommend", "{file}"], "{file}"),
        (["report", "{file}"], "{file}"),
        (["app", "{file}"], "{file}"),
        (["census", "--cards", "{file}"], "{file}"),
    ],
)
def test_empty_and_binary_files_are_one_line(which, args, needle, capsys, work, inputs):
    path = str(inputs / which)
    args = [a.replace("{file}", path) for a in args]
    assert_one_error_line(peftbench(capsys, *args), needle.replace("{file}", path))
    assert_empty(work)


# -------------------------------------------------------------------------------- the names


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["run", "--model", "tiny-lama"], "tiny-llama"),
        (["run", "--task", "arth"], "arith"),
        (["run", "--method", "lorra"], "lora"),
        (["run", "--dtype", "float61"], "float16"),
        (["run", "--model", "tiny-llama", "--task-opt", "n_tset=4"], "n_test"),
        (["tournament", "--preset", "quik"], "quick"),
        (["tournament", "--executor", "lcoal"], "local"),
        (["tournament", "--methods", "lora,dorra", "--model", "tiny-llama"], "dora"),
        (["tournament", "--train-opt", "batch_sise=2"], "batch_size"),
        (["recommend", "{results}", "--optimize", "tset_score"], "test_score"),
        (["recommend", "{results}", "--must", "mergable"], "merge"),
        (["recommend", "{results}", "--must", "lora_convertable"], "lora-convertible"),
        (["recommend", "{results}", "--where", "not prompt_onyl"], "prompt-only"),
        (["report", "{results}", "--x", "peak_memroy"], "peak_memory"),
        (["report", "{results}", "--level", "techniqe"], "technique"),
        (["methods", "--layer", "Lineer"], "Linear"),
        (["methods", "--quantized", "bnb4bit"], "bnb-4bit"),
        (["methods", "--model", "tiny-bret"], "tiny-bert"),
        (["census", "--source", "tag"], "tags"),
        (["tasks", "jsnl"], "jsonl"),
    ],
)
def test_an_unknown_name_suggests_the_closest(args, suggestion, capsys, work, inputs):
    args = [a.replace("{results}", str(inputs / "results")) for a in args]
    assert_one_error_line(peftbench(capsys, *args), f"did you mean '{suggestion}'")
    assert_empty(work)


def test_capabilities_are_spelled_as_the_methods_flags(capsys, work, inputs):
    flags = {opt.removeprefix("--") for verb, command in verbs().items() if verb == "methods"
             for param in command.params for opt in param.opts}
    line = assert_one_error_line(peftbench(capsys, "recommend", str(inputs / "results"),
                                           "--must", "nothing-like-it"), "unknown capability")
    known = line.split("(known: ")[1].rstrip(")").split(", ")
    words = [k for k in known if ":" not in k]
    assert words and set(words) <= flags, (words, flags)


def test_a_bare_memory_number_needs_its_unit(capsys, work, inputs):
    assert_one_error_line(
        peftbench(capsys, "recommend", str(inputs / "results"), "--max-memory", "20"),
        "'--max-memory'", "give a unit, e.g. 20GB or 20GiB")


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--quantized", "4bit", "bnb-4bit"), ("--layer", "Foo", "Conv, Embedding, Linear")])
def test_a_filter_value_no_technique_has_names_the_valid_ones(option, value, needle, capsys,
                                                             work):
    assert_one_error_line(peftbench(capsys, "methods", option, value), option, needle)


# -------------------------------------------------------------------------------- the help


def test_version_and_help_and_no_arguments(capsys, work):
    from peftbench import __version__

    code, out, _ = peftbench(capsys, "--version")
    assert (code, out) == (0, f"peftbench {__version__}\n")
    code, out, err = peftbench(capsys)
    assert code == 2 and "Usage" in out + err and "Traceback" not in err
    for verb in verbs():
        for flag in ("-h", "--help"):
            code, out, err = peftbench(capsys, verb, flag)
            assert code == 0 and f"peftbench {verb}" in out and not err, (verb, flag, err)
            assert "examples" in out


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_every_option_says_what_it_does_and_its_default(verb):
    command = verbs()[verb]
    for param in command.params:
        if param.param_type_name != "option" or param.opts == ["--help"]:
            continue
        assert param.help and len(param.help) > 10, (verb, param.opts)
        if getattr(param, "is_flag", False):
            continue
        shows = (isinstance(param.show_default, str) or "default" in param.help
                 or (param.default not in (None, "", []) and param.show_default is not False))
        assert shows or param.required, (verb, param.opts, "no default shown")


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_every_verb_ends_its_help_with_two_to_four_examples(verb):
    epilog = verbs()[verb].epilog or ""
    examples = [line for line in epilog.splitlines() if line.startswith("peftbench ")]
    assert 2 <= len(examples) <= 4, (verb, examples)
    assert all(line.startswith(f"peftbench {verb}") for line in examples)
