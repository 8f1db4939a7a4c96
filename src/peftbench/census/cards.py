"""Model cards: reading them (a Hub data set, or local Parquet/JSONL in its schema) and
finding the techniques each names, in its tags, ``library_name``, base model fields and text.

Cards are read in fixed-size batches, so memory stays flat as the input grows.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from peftbench.census.names import name_matcher
from peftbench.errors import UserError

HUB_DATASET = "librarian-bots/model_cards_with_metadata"
CARD_SOURCES = ("tags", "library_name", "base_model", "text")
BATCH_ROWS = 256

_SKIPPED_TAG_PREFIXES = ("dataset:", "license:", "arxiv:", "doi:", "region:", "base_model:")
_BASE_MODEL_RELATIONS = ("adapter:", "finetune:", "quantized:", "merge:")
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)(?:\r?\n)---[ \t]*(?:\r?\n|\Z)", re.S)
_FRONT_BASE_MODEL = re.compile(r"^base_model[ \t]*:[ \t]*(.*)$((?:\r?\n[ \t]*-[ \t]*.*$)*)", re.M)


class Card(NamedTuple):
    """One model card: its full text (front matter included), tags and ``library_name``."""

    text: str
    tags: list[str]
    library_name: str | None


@dataclass(frozen=True)
class CardColumns:
    """Column names of the card data set. ``None`` means the data set's own name, optional."""

    text: str = "card"
    tags: str | None = None
    library_name: str | None = None

    def resolve(self, available: Iterable[str]) -> dict[str, str]:
        """Map role -> column present in ``available``; a missing named column is a UserError."""
        available = list(available)
        wanted = {"text": (self.text, True), "tags": (self.tags or "tags", self.tags is not None),
                  "library_name": (self.library_name or "library_name",
                                   self.library_name is not None)}
        resolved = {}
        for role, (column, required) in wanted.items():
            if column in available:
                resolved[role] = column
            elif required:
                raise UserError(f"unknown column '{column}'; the data has: {', '.join(available)}")
        return resolved


def split_front_matter(text: str) -> tuple[str, str]:
    """(YAML front matter, body) of a card; front matter is '' when the card has none."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return "", text
    return match.group(1), text[match.end():]


def base_models(tags: Iterable[str], front_matter: str) -> list[str]:
    """Base model ids of a card: from ``base_model:[relation:]id`` tags and the front matter."""
    found = []
    for tag in tags:
        if tag.startswith("base_model:"):
            value = tag[len("base_model:"):]
            for relation in _BASE_MODEL_RELATIONS:
                value = value.removeprefix(relation)
            found.append(value)
    for match in _FRONT_BASE_MODEL.finditer(front_matter):
        items = [match.group(1)] + re.findall(r"-[ \t]*(.*)", match.group(2))
        for item in items:
            found.extend(v.strip(" \t'\"") for v in item.strip("[] \t").split(","))
    return [f for f in found if f]


def is_adapter(card: Card) -> bool:
    """Whether the card describes a PEFT adapter (``library_name: peft`` or an adapter tag)."""
    if (card.library_name or "").lower() == "peft":
        return True
    return any(t == "peft" or t.startswith("base_model:adapter:") for t in card.tags)


def detect_card(card: Card, sources: Iterable[str] = CARD_SOURCES) -> dict[str, set[str]]:
    """Techniques named by ``card``, per source ("tags", "library_name", "base_model", "text")."""
    matcher = name_matcher()
    front, body = split_front_matter(card.text)
    found: dict[str, set[str]] = {}
    for source in sources:
        if source == "text":
            found[source] = matcher.find(body)
        elif source == "tags":
            plain = [t for t in card.tags if not t.startswith(_SKIPPED_TAG_PREFIXES)]
            found[source] = matcher.find("\n".join(plain))
        elif source == "library_name":
            found[source] = matcher.find(card.library_name or "")
        elif source == "base_model":
            found[source] = matcher.find("\n".join(base_models(card.tags, front)))
        else:
            raise UserError(f"unknown source '{source}'; choose from {', '.join(CARD_SOURCES)}")
    return found


def _as_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _card(row: Mapping[str, Any], columns: Mapping[str, str]) -> Card:
    text = row.get(columns["text"])
    tags = row.get(columns["tags"]) if "tags" in columns else None
    library = row.get(columns["library_name"]) if "library_name" in columns else None
    return Card(text=text if isinstance(text, str) else "", tags=_as_tags(tags),
                library_name=library if isinstance(library, str) else None)


def card_files(source: str | os.PathLike[str]) -> list[Path]:
    """The Parquet/JSONL files behind a local ``source`` (a file, or a folder searched deeply)."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"no such file or folder: {path}")
    files = sorted(p for p in path.rglob("*") if _card_format(p)) if path.is_dir() else [path]
    if not files:
        raise UserError(f"no .parquet or .jsonl files in {path}")
    for file in files:
        if not _card_format(file):
            raise UserError(f"{file}: expected a .parquet, .jsonl or .jsonl.gz file")
    return files


def _card_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    return None


def is_hub_id(source: str) -> bool:
    """Whether ``source`` names a Hub data set ("owner/name") rather than a local path."""
    return (not Path(source).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None
            and _card_format(Path(source)) is None)


def count_cards(source: str) -> int | None:
    """How many cards ``source`` holds, when that is known without reading them (Parquet)."""
    if is_hub_id(source):
        return None
    total = 0
    for file in card_files(source):
        if _card_format(file) != "parquet":
            return None
        total += _parquet_file(file).metadata.num_rows
    return total


def iter_cards(source: str, columns: CardColumns = CardColumns()) -> Iterator[Card]:
    """Stream the cards of ``source``: a Hub data set id, or a local Parquet/JSONL file/folder."""
    if is_hub_id(source):
        yield from _iter_hub(source, columns)
        return
    for file in card_files(source):
        if _card_format(file) == "parquet":
            yield from _iter_parquet(file, columns)
        else:
            yield from _iter_jsonl(file, columns)


def _parquet_file(path: Path) -> Any:
    from peftbench.optional import require

    require(["pyarrow"], f"reading {path.name} (Parquet)")
    import pyarrow.parquet as pq

    try:
        # Without pre-buffering, Arrow holds about one row group at a time, not the whole file.
        return pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for non-Parquet data
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None


def _iter_parquet(path: Path, columns: CardColumns) -> Iterator[Card]:
    parquet = _parquet_file(path)
    resolved = columns.resolve(parquet.schema_arrow.names)
    names = list(dict.fromkeys(resolved.values()))
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=names):
        values = {name: batch.column(name).to_pylist() for name in names}
        for i in range(batch.num_rows):
            yield _card({name: values[name][i] for name in names}, resolved)


def _iter_jsonl(path: Path, columns: CardColumns) -> Iterator[Card]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    resolved: dict[str, str] | None = None
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = _json_row(line, path, number)
            if resolved is None:
                resolved = columns.resolve(row.keys())
            if resolved["text"] not in row:
                raise UserError(f"{path}:{number}: no '{resolved['text']}' field")
            yield _card(row, resolved)


def _json_row(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise UserError(f"{path}:{number}: expected a JSON object per line")
    return row


def _iter_hub(dataset_id: str, columns: CardColumns) -> Iterator[Card]:
    from peftbench.optional import require

    require(["datasets"], f"streaming {dataset_id} from the hub")
    from datasets import load_dataset

    try:
        stream = load_dataset(dataset_id, split="train", streaming=True)
    except Exception as exc:  # network, unknown id, gated data set: all the user's to fix
        raise UserError(f"cannot stream Hub data set '{dataset_id}': {exc}") from None
    available = list(stream.features) if stream.features else None
    resolved = columns.resolve(available) if available else {
        "text": columns.text, "tags": columns.tags or "tags",
        "library_name": columns.library_name or "library_name"}
    rows = iter(stream.select_columns(list(dict.fromkeys(resolved.values()))))
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a dropped connection mid-stream: one line, not a traceback
            raise UserError(f"streaming '{dataset_id}' failed: {exc}") from None
        yield _card(row, resolved)

