"""`jsonl:PATH` and `csv:PATH`: the user's own data.

Two shapes are understood, told apart by the fields of the first record (or option ``kind``):

- generation: ``prompt``/``response`` fields; the model reads the prompt and must produce the
  response; scored by exact match of the whitespace-normalized continuation (option ``match``:
  ``exact``, ``first_line`` or ``number`` for the final number as in GSM8K);
- classification: ``text``/``label`` fields; labels are text or integers. Text labels are
  indexed in sorted order; integer labels are indexed in numeric order and named by their
  digits, or by option ``label_names`` (then label ``i`` is ``label_names[i]``).

The file is ``jsonl:PATH``'s argument or the option ``data`` (``--task jsonl --data PATH``).
Field names are options (``prompt_field``, ``response_field``, ``text_field``, ``label_field``).
One file is split deterministically (seeded permutation; ``valid_fraction`` and
``test_fraction``, 0.1 each, at least one example each); options ``validation`` and ``test``
name separate files in the same format instead. Every record of every file is checked when
the task is built, so malformed input fails before training with ``FILE line N: problem``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.tasks.answers import collapse_whitespace, extract_final_number
from peftbench.tasks.base import Example, TaskDoc, TaskOption, document_task, register
from peftbench.tasks.classification import ClassificationTask
from peftbench.tasks.options import TaskOptions
from peftbench.tasks.prepared import PreparedTask
from peftbench.tasks.readers import Row, read_jsonl, read_table
from peftbench.tasks.sampling import carve

_INTEGER = re.compile(r"[+-]?\d+")
MATCH_MODES = ("exact", "first_line", "number")


class UserDataConfig:
    """The options of a user-data task, read and checked once."""

    def __init__(self, fmt: str, path: str, options: dict[str, Any]) -> None:
        opts = TaskOptions(f"{fmt}:{path}" if path else fmt, options)
        data = opts.text("data", None)
        self.prompt_field = opts.text("prompt_field", "prompt")
        self.response_field = opts.text("response_field", "response")
        self.text_field = opts.text("text_field", "text")
        self.label_field = opts.text("label_field", "label")
        self.kind = opts.text("kind", "auto", ("auto", "generation", "classification"))
        self.match = opts.text("match", "exact", MATCH_MODES)
        self.label_names = opts.names("label_names")
        self.prompt_template = opts.text("prompt_template", "{text}\nLabel:")
        self.validation = opts.text("validation", None)
        self.test = opts.text("test", None)
        self.seed = opts.integer("seed", 0) or 0
        self.valid_fraction = opts.fraction("valid_fraction", 0.1)
        self.test_fraction = opts.fraction("test_fraction", 0.1)
        self.delimiter = opts.text("delimiter", ",") if fmt == "csv" else ","
        opts.finish()
        self.fmt, self.path = fmt, _one_path(fmt, path, data)
        where = f"task {fmt}:{self.path}"
        if "{text}" not in (self.prompt_template or ""):
            raise UserError(f"{where}: option 'prompt_template' must contain '{{text}}'")
        if len(self.delimiter or "") != 1:
            raise UserError(f"{where}: option 'delimiter' must be one character")
        if self.valid_fraction + self.test_fraction >= 1 and not (self.validation or self.test):
            raise UserError(
                f"{where}: valid_fraction {self.valid_fraction:g} + test_fraction "
                f"{self.test_fraction:g} sum to {self.valid_fraction + self.test_fraction:g}, "
                "leaving nothing to train on; together they must stay below 1")

    def read(self, path: str) -> list[Row]:
        """All records of one file in this task's format."""
        if self.fmt == "jsonl":
            return read_jsonl(path)
        return read_table(path, delimiter=self.delimiter or ",")

    def option_for(self, field: str, kind: str) -> str:
        """The task option that names ``field`` in a ``kind`` record (``response_field``)."""
        options = (("prompt_field", "response_field") if kind == "generation"
                   else ("text_field", "label_field"))
        return dict(zip(self.required(kind), options, strict=True)).get(field, options[0])

    def field(self, row: Row, name: str, kind: str, allow_numbers: bool = False) -> str:
        """Field ``name`` of ``row`` as text; a missing one names the option that renames it."""
        if name not in row.fields:
            have = ", ".join(row.fields) or "none"
            raise row.fail(f"missing field '{name}' (it has: {have}); set the task option "
                           f"{self.option_for(name, kind)}=NAME to use another field")
        return row.string(name, allow_numbers=allow_numbers)

    def required(self, kind: str) -> tuple[str, str]:
        """The two fields a record of ``kind`` needs."""
        if kind == "generation":
            return (self.prompt_field or "", self.response_field or "")
        return (self.text_field or "", self.label_field or "")


def _one_path(fmt: str, argument: str, data: str | None) -> str:
    """The data file: ``jsonl:FILE``'s argument or the option ``data`` (``--data FILE``)."""
    if argument and data and Path(argument) != Path(data):
        raise UserError(f"task {fmt}: two files given ({fmt}:{argument} and data={data}); "
                        f"give one, as '{fmt}:FILE' or with --data FILE")
    path = argument or data
    if not path:
        raise UserError(f"task {fmt} needs a file: --task {fmt}:FILE or --task {fmt} "
                        f"--data FILE, e.g. --task {fmt}:data.{fmt}")
    return path


def detect_kind(config: UserDataConfig, first: Row) -> str:
    """``generation`` or ``classification``, from the option or the first record's fields."""
    if config.kind != "auto":
        return config.kind or "generation"
    fields = first.fields
    for kind in ("generation", "classification"):
        if any(name in fields for name in config.required(kind)):
            return kind
    gen, cls = config.required("generation"), config.required("classification")
    raise first.fail(
        f"needs fields '{gen[0]}'/'{gen[1]}' (generation) or '{cls[0]}'/'{cls[1]}' "
        f"(classification), it has: {', '.join(fields) or 'none'}; name yours with the task "
        "options prompt_field=…, response_field=… (or text_field=…, label_field=…)"
    )


def check_columns(config: UserDataConfig, rows: list[Row], kind: str) -> None:
    """For CSV, a missing column is reported once, on the header line."""
    if config.fmt != "csv":
        return
    for name in config.required(kind):
        if name not in rows[0].fields:
            header = ", ".join(rows[0].fields)
            raise UserError(
                f"{rows[0].file} line 1: missing column '{name}' (header has: {header}); "
                f"set the task option {config.option_for(name, kind)}=COLUMN to use another"
            )


@dataclass(frozen=True)
class LabelScheme:
    """Class names and how a raw label value maps to its index."""

    names: tuple[str, ...]
    numeric: bool
    index: dict[Any, int]

    def key(self, value: Any) -> Any:
        """The value as compared: an integer in integer mode, else stripped text."""
        return _as_integer(value) if self.numeric else str(value).strip()

    def of(self, value: Any) -> int:
        """The class index of a raw label value (already checked by `resolve_labels`)."""
        return self.index[self.key(value)]


def resolve_labels(raw: list[tuple[Row, Any]], label_names: tuple[str, ...] | None) -> LabelScheme:
    """The label scheme of all records, checking every label.

    Integer mode is chosen by the first record (an integer, or digits) or by ``label_names``;
    in it, every other label must be an integer too.
    """
    numeric = label_names is not None or _as_integer(raw[0][1]) is not None
    scheme = LabelScheme((), numeric, {})
    seen: set[Any] = set()
    for row, value in raw:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise row.fail(f"label must be text or an integer, got {value!r}")
        key = scheme.key(value)
        if key is None:
            raise row.fail(f"label {value!r} is not an integer, but integer labels are expected")
        if key == "":
            raise row.fail("label is empty")
        if label_names is not None and not 0 <= key < len(label_names):
            raise row.fail(f"label {key} is out of range for {len(label_names)} label_names")
        seen.add(key)
    if label_names is not None:
        return LabelScheme(label_names, True, {i: i for i in range(len(label_names))})
    if len(seen) < 2:
        row = raw[0][0]
        raise UserError(f"{row.file}: only one distinct label ({raw[0][1]!r}); need at least two")
    ordered = sorted(seen)
    return LabelScheme(
        tuple(str(v) for v in ordered), numeric, {v: i for i, v in enumerate(ordered)}
    )


def _as_integer(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def split_sizes(config: UserDataConfig, n: int) -> tuple[int, int]:
    """How many records of the main file go to test and to validation."""
    n_test = 0 if config.test else max(1, round(config.test_fraction * n))
    n_valid = 0 if config.validation else max(1, round(config.valid_fraction * n))
    if n - n_test - n_valid < 1:
        raise UserError(
            f"{config.path}: {n} records are too few to split into train/validation/test "
            f"({n_valid} validation, {n_test} test); add records or name separate files with "
            "the task options validation=FILE and test=FILE"
        )
    return n_test, n_valid


def split_rows(config: UserDataConfig, rows: list[Row]) -> dict[str, list[Row]]:
    """Rows of each split: carved from the main file (seeded) or read from given files."""
    n_test, n_valid = split_sizes(config, len(rows))
    test_idx, valid_idx, train_idx = carve(len(rows), [n_test, n_valid], config.seed)
    return {
        "train": [rows[i] for i in train_idx],
        "validation": config.read(config.validation)
        if config.validation
        else [rows[i] for i in valid_idx],
        "test": config.read(config.test) if config.test else [rows[i] for i in test_idx],
    }


class UserGenerationTask(PreparedTask):
    """The user's prompt/response pairs; exact match by default."""

    kind = "generation"
    metric = "accuracy"

    def __init__(self, config: UserDataConfig, rows: dict[str, list[Row]]) -> None:
        self.config = config
        self.name = f"{config.fmt}:{config.path}"
        self._splits = {split: [self._example(r) for r in rs] for split, rs in rows.items()}
        longest = max(len(ex.answer) for ex in self._splits["train"])
        self.max_new_tokens = min(512, max(16, longest // 3 + 8))

    def _example(self, row: Row) -> Example:
        prompt = self.config.field(row, self.config.prompt_field or "", "generation")
        response = self.config.field(row, self.config.response_field or "", "generation",
                                     allow_numbers=True).strip()
        separator = "" if prompt[-1].isspace() else " "
        answer = response
        if self.config.match == "number":
            answer = extract_final_number(response)
            if not answer:
                raise row.fail(f"field '{self.config.response_field}' has no number, which "
                               "the task option match=number needs (match=exact or "
                               "match=first_line compare text)")
        return Example(prompt=prompt, target=separator + response, answer=answer)

    def build_splits(self) -> dict[str, list[Example]]:
        """Already built (and checked) in the constructor."""
        return self._splits or {}

    def source(self) -> dict[str, Any]:
        """Files, fields, split rule and scoring mode."""
        return _source(self.config) | {
            "fields": list(self.config.required("generation")),
            "match": self.config.match,
        }

    def extract_answer(self, generated: str) -> str:
        """The continuation as scored: whole, first line, or final number (option ``match``)."""
        if self.config.match == "number":
            return extract_final_number(generated)
        if self.config.match == "first_line":
            lines = [line for line in generated.splitlines() if line.strip()]
            return collapse_whitespace(lines[0]) if lines else ""
        return collapse_whitespace(generated)

    def is_correct(self, generated: str, example: Example) -> bool:
        """Exact match after whitespace normalization (an empty answer never matches)."""
        found = self.extract_answer(generated)
        return bool(found) and found == collapse_whitespace(example.answer)


class UserClassificationTask(ClassificationTask):
    """The user's text/label pairs; accuracy."""

    def __init__(self, config: UserDataConfig, rows: dict[str, list[Row]]) -> None:
        self.config = config
        self.name = f"{config.fmt}:{config.path}"
        self.prompt_template = config.prompt_template or "{text}\nLabel:"
        field = config.label_field or ""
        raw = [(r, _label_value(r, field)) for rs in rows.values() for r in rs]
        scheme = resolve_labels(raw, config.label_names)
        self.set_labels(scheme.names)
        self._splits = {
            split: [
                self.make_example(config.field(r, config.text_field or "", "classification"),
                                  scheme.of(r.fields[field]))
                for r in rs
            ]
            for split, rs in rows.items()
        }

    def build_splits(self) -> dict[str, list[Example]]:
        """Already built (and checked) in the constructor."""
        return self._splits or {}

    def source(self) -> dict[str, Any]:
        """Files, fields and split rule."""
        return _source(self.config) | {"fields": list(self.config.required("classification"))}


def _label_value(row: Row, field: str) -> Any:
    if field not in row.fields:
        have = ", ".join(row.fields) or "none"
        raise row.fail(f"missing field '{field}' (it has: {have}); set the task option "
                       "label_field=NAME to use another field")
    return row.fields[field]


def _source(config: UserDataConfig) -> dict[str, Any]:
    return {
        "data": str(Path(config.path).resolve()),
        "validation": str(Path(config.validation).resolve()) if config.validation else None,
        "test": str(Path(config.test).resolve()) if config.test else None,
        "seed": config.seed,
        "valid_fraction": None if config.validation else config.valid_fraction,
        "test_fraction": None if config.test else config.test_fraction,
    }


def build_user_task(fmt: str, path: str, options: dict[str, Any]) -> PreparedTask:
    """Read, check and split the user's file(s) into a generation or classification task."""
    config = UserDataConfig(fmt, path, options)
    main = config.read(config.path)
    kind = detect_kind(config, main[0])
    check_columns(config, main, kind)
    rows = split_rows(config, main)
    for part in rows.values():
        check_columns(config, part, kind)
    if kind == "generation":
        return UserGenerationTask(config, rows)
    return UserClassificationTask(config, rows)


_USER_OPTIONS = (
    TaskOption("data", None, "the data file, when not given as jsonl:FILE / csv:FILE "
               "(--data FILE)"),
    TaskOption("kind", "auto", "generation (prompt -> response) or classification (text -> "
               "label); auto: from the first record's fields"),
    TaskOption("prompt_field", "prompt", "generation: the field holding the prompt"),
    TaskOption("response_field", "response", "generation: the field holding the expected "
               "response"),
    TaskOption("match", "exact", "generation scoring: exact (whole response, whitespace "
               "normalized), first_line, or number (the final number, as in GSM8K)"),
    TaskOption("text_field", "text", "classification: the field holding the text"),
    TaskOption("label_field", "label", "classification: the field holding the label (text or "
               "integer)"),
    TaskOption("label_names", None, "classification: names of integer labels 0, 1, ... "
               "(comma list, e.g. neg,pos)"),
    TaskOption("prompt_template", "{text}\nLabel:", "classification: how a causal LM reads "
               "the text"),
    TaskOption("validation", None, "a separate validation file (default: carved from data)"),
    TaskOption("test", None, "a separate test file (default: carved from data)"),
    TaskOption("valid_fraction", 0.1, "share of data carved out for validation (at least one "
               "record)"),
    TaskOption("test_fraction", 0.1, "share of data carved out for test (at least one "
               "record); with valid_fraction below 1 in all"),
    TaskOption("seed", 0, "seed of the split"),
)
document_task("jsonl", TaskDoc(
    summary="your own data, one JSON object per line: {\"prompt\": …, \"response\": …} "
            "(generation) or {\"text\": …, \"label\": …} (classification)",
    metric="exact match (generation) or accuracy (classification)",
    argument="FILE: the JSON Lines file (or --data FILE)",
    options=_USER_OPTIONS,
    example="--task jsonl:qa.jsonl --task-opt match=number",
))
document_task("csv", TaskDoc(
    summary="your own data, a CSV file with a header: prompt,response columns (generation) "
            "or text,label columns (classification)",
    metric="exact match (generation) or accuracy (classification)",
    argument="FILE: the CSV file (or --data FILE)",
    options=(*_USER_OPTIONS, TaskOption("delimiter", ",", "the column separator (one "
                                        "character; a tab for TSV)")),
    example="--task csv:reviews.csv --task-opt text_field=review --task-opt label_field=stars",
))


@register("jsonl")
def make_jsonl(argument: str, options: dict[str, Any]) -> PreparedTask:
    """``jsonl:PATH``: one JSON object per line (see the module docstring for options)."""
    return build_user_task("jsonl", argument, options)


@register("csv")
def make_csv(argument: str, options: dict[str, Any]) -> PreparedTask:
    """``csv:PATH``: a CSV file with a header line (option ``delimiter``, default ``,``)."""
    return build_user_task("csv", argument, options)
