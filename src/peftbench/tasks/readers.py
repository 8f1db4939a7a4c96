"""Reading data files into rows that remember their line, so errors can name file and line.

Every problem a user's file can have (missing file, bad encoding, invalid JSON, missing field
or column, wrong field count) becomes a `UserError` of the form ``FILE line N: problem``,
raised while the task loads, i.e. before any training starts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError


@dataclass(frozen=True)
class Row:
    """One record of a data file: its fields and where it came from."""

    file: str
    line: int
    fields: dict[str, Any]

    def where(self) -> str:
        """``FILE line N``, the prefix of every error about this row."""
        return f"{self.file} line {self.line}"

    def fail(self, problem: str) -> UserError:
        """A `UserError` about this row."""
        return UserError(f"{self.where()}: {problem}")

    def string(self, name: str, allow_numbers: bool = False) -> str:
        """Field ``name`` as a non-empty string; a missing, empty or non-text value is an error."""
        if name not in self.fields:
            raise self.fail(f"missing field '{name}'")
        value = self.fields[name]
        if allow_numbers and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(f"field '{name}' must be text, got {_json_type(value)}")
        if not value.strip():
            raise self.fail(f"field '{name}' is empty")
        return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_text(path: str | Path) -> str:
    """The file decoded as UTF-8 (a BOM is dropped); errors name the file and the bad line."""
    label = str(path)
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{label}: file not found")
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{label} line {line}: not valid UTF-8 text") from None


def _require_rows(label: str, rows: list[Row]) -> list[Row]:
    if not rows:
        raise UserError(f"{label}: file has no records")
    return rows


def read_jsonl(path: str | Path) -> list[Row]:
    """One JSON object per line; blank lines are skipped."""
    label = str(path)
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{label} line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            got = _json_type(value)
            raise UserError(f"{label} line {number}: expected a JSON object, got {got}")
        rows.append(Row(label, number, value))
    return _require_rows(label, rows)


def read_json_array(path: str | Path) -> list[Row]:
    """A JSON file holding a list of objects; a row's ``line`` is its 1-based item number."""
    label = str(path)
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{label} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(value, list):
        raise UserError(f"{label}: expected a JSON list of objects, got {_json_type(value)}")
    rows = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            got = _json_type(item)
            raise UserError(f"{label} item {number}: expected a JSON object, got {got}")
        rows.append(Row(label, number, item))
    return _require_rows(label, rows)


def read_records(path: str | Path) -> list[Row]:
    """JSON Lines, or a JSON list when the file name ends in ``.json`` and it starts with ``[``."""
    if str(path).endswith(".json") and read_text(path).lstrip().startswith("["):
        return read_json_array(path)
    return read_jsonl(path)


def read_table(path: str | Path, delimiter: str = ",", columns: tuple[str, ...] = ()) -> list[Row]:
    """A CSV/TSV file with a header line; ``columns`` must be among the header's names.

    A row's ``line`` is the physical line it starts on (quoted fields may span lines).
    """
    label = str(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{label}: file is empty")
        header = [name.strip() for name in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise UserError(
                f"{label} line 1: missing column '{missing[0]}' (header has: {', '.join(header)})"
            )
        rows, last = [], reader.line_num
        for record in reader:
            start, last = last + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if len(record) != len(header):
                raise UserError(
                    f"{label} line {start}: expected {len(header)} fields like the header, "
                    f"got {len(record)}"
                )
            rows.append(Row(label, start, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise UserError(f"{label} line {reader.line_num}: malformed CSV ({exc})") from None
    return _require_rows(label, rows)
