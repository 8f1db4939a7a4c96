"""The adoption census: which PEFT techniques do model cards and code actually use?

peftbench exists because nearly everyone picks LoRA by habit. This module makes that claim a
reproducible measurement:

- **cards**: stream Hub model cards (the data set `librarian-bots/model_cards_with_metadata`, or
  a local Parquet/JSONL copy in its schema: ``card``, ``tags``, ``library_name``, ...) and find
  the techniques each card names, in its tags, ``library_name``, base model fields and text;
- **code**: scan a folder of source files for ``from peft import XxxConfig`` and
  ``peft.XxxConfig(`` and map the config classes to techniques.

Both give counts and shares in two views: "exactly one technique" (items naming one technique,
after folding a variant into its parent: QLoRA + LoRA is QLoRA) and "any mention". Cards are
read in fixed-size batches and only counters are kept, so memory stays flat as the input grows.
Names and aliases come from `peftbench.methods.aliases`, matched on word boundaries: "LoRA"
matches in "lora_alpha" and "LoRA-based" but not in "Flora" or "LoRaWAN".
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

from peftbench.errors import UserError
from peftbench.methods.aliases import (
    ALIASES,
    AMBIGUOUS,
    EXACT_CASE,
    EXTRA_CONFIG_CLASSES,
    GENERIC_CONFIG_CLASSES,
    VARIANT_OF,
    display_name,
)

HUB_DATASET = "librarian-bots/model_cards_with_metadata"
CARD_SOURCES = ("tags", "library_name", "base_model", "text")
CODE_SUFFIXES = (".py", ".ipynb")
BATCH_ROWS = 256

_SEPARATORS = re.compile(r"[\s_-]+")
_SEP = "\x00"  # a separator in an alias, as a trie token
_SKIPPED_TAG_PREFIXES = ("dataset:", "license:", "arxiv:", "doi:", "region:", "base_model:")
_BASE_MODEL_RELATIONS = ("adapter:", "finetune:", "quantized:", "merge:")
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)(?:\r?\n)---[ \t]*(?:\r?\n|\Z)", re.S)
_FRONT_BASE_MODEL = re.compile(r"^base_model[ \t]*:[ \t]*(.*)$((?:\r?\n[ \t]*-[ \t]*.*$)*)", re.M)
_PEFT_IMPORT = re.compile(r"\bfrom[ \t]+peft(?:\.[\w.]+)?[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)")
_PEFT_CALL = re.compile(r"\bpeft\.(?:\w+\.)*?(\w+Config)[ \t]*\(")
_CONFIG_NAME = re.compile(r"\b([A-Za-z_]\w*Config)\b")


# ---------------------------------------------------------------------------------------------
# Finding technique names in text
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameMatcher:
    """Two compiled regexes over every countable alias, each matching the longest alias.

    ``loose`` runs on lower-cased text (aliases matched in any case); ``exact`` runs on the
    original text (aliases that are ordinary words in another case). Each maps a matched
    string, separators removed, back to its technique.
    """

    loose: re.Pattern[str]
    loose_keys: dict[str, str]
    exact: re.Pattern[str]
    exact_keys: dict[str, str]

    def find(self, text: str) -> set[str]:
        """The techniques named in ``text`` (word-boundary aware)."""
        found = {self.loose_keys[_strip_separators(m)] for m in self.loose.findall(text.lower())}
        found.update(self.exact_keys[_strip_separators(m)] for m in _scan_exact(self.exact, text))
        return found


def _scan_exact(pattern: re.Pattern[str], text: str) -> Iterator[str]:
    # The exact pattern has no look-behind, which lets the regex engine skip ahead to its few
    # first letters (several times faster); the left word boundary is checked here instead,
    # retrying one character later so that a rejected match cannot hide one inside it.
    pos = 0
    while match := pattern.search(text, pos):
        start = match.start()
        if start and text[start - 1].isascii() and text[start - 1].isalnum():
            pos = start + 1
            continue
        yield match.group()
        pos = match.end()


def _strip_separators(text: str) -> str:
    return _SEPARATORS.sub("", text)


def _trie(aliases: Iterable[str]) -> dict:
    # Separators inside an alias become one SEP token: any one separator, or none, matches it.
    root: dict = {}
    for alias in aliases:
        node = root
        for token in _SEPARATORS.sub(_SEP, alias.strip()):
            node = node.setdefault(token, {})
        node[""] = {}
    return root



def _trie_regex(node: dict) -> str:
    # A trie as one regex: shared prefixes are tested once (about 2x faster than a flat
    # alternation), and each optional continuation is tried first, so the longest alias wins.
    branches = []
    for token in sorted(k for k in node if k):
        head = r"[\s_-]?" if token == _SEP else re.escape(token)
        branches.append(head + _trie_regex(node[token]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    return f"(?:{body})?" if "" in node else body


def _keys(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for alias, name in pairs:
        key = _strip_separators(alias)
        if keys.setdefault(key, name) != name:
            raise ValueError(f"alias {alias!r} names both {keys[key]!r} and {name!r}")
    return keys


@lru_cache(maxsize=1)
def name_matcher() -> NameMatcher:
    """The matcher built from `peftbench.methods.aliases` (built once, then shared)."""
    pairs = [(a, n) for n, aliases in ALIASES.items() for a in aliases if a not in AMBIGUOUS]
    loose = [(a.lower(), n) for a, n in pairs if a not in EXACT_CASE]
    exact = [(a, n) for a, n in pairs if a in EXACT_CASE]
    # ASCII letters and digits only count as "inside a word": "LoRAで" still names LoRA.
    loose_trie = _trie_regex(_trie(a for a, _ in loose))
    exact_trie = _trie_regex(_trie(a for a, _ in exact))
    return NameMatcher(
        loose=re.compile(rf"(?<![A-Za-z0-9]){loose_trie}(?![A-Za-z0-9])"),
        loose_keys=_keys(loose),
        exact=re.compile(rf"{exact_trie}(?![A-Za-z0-9])"),
        exact_keys=_keys(exact),
    )


def fold_variants(techniques: set[str]) -> set[str]:
    """Drop each technique that a more specific one in the set refines (QLoRA + LoRA -> QLoRA).

    Used for the "exactly one" view: a card saying "QLoRA, i.e. LoRA on a 4-bit model" names
    one technique, not two.
    """
    parents = {VARIANT_OF[t] for t in techniques if t in VARIANT_OF}
    return techniques - parents


# ---------------------------------------------------------------------------------------------
# Model cards
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Running counts of one census (cards or code files): constant size, whatever the input."""

    unit: str
    scanned: int = 0
    with_any: int = 0
    adapters: int = 0
    any_mention: Counter[str] = field(default_factory=Counter)
    exactly_one: Counter[str] = field(default_factory=Counter)
    by_source: dict[str, Counter[str]] = field(default_factory=dict)
    unmapped: Counter[str] = field(default_factory=Counter)

    def add(self, found: Mapping[str, set[str]], adapter: bool = False) -> None:
        """Count one item from its techniques per source."""
        self.scanned += 1
        self.adapters += adapter
        techniques: set[str] = set().union(*found.values()) if found else set()
        for source, names in found.items():
            self.by_source.setdefault(source, Counter()).update(names)
        if not techniques:
            return
        self.with_any += 1
        self.any_mention.update(techniques)
        folded = fold_variants(techniques)
        if len(folded) == 1:
            self.exactly_one.update(folded)

    def summary(self) -> dict[str, Any]:
        """Counts and shares as plain JSON data, techniques sorted by count."""
        exactly_one_total = sum(self.exactly_one.values())
        return {
            "unit": self.unit,
            "scanned": self.scanned,
            "with_any": self.with_any,
            "exactly_one_total": exactly_one_total,
            "peft_adapters": self.adapters,
            "exactly_one": _rows(self.exactly_one, exactly_one_total),
            "any_mention": _rows(self.any_mention, self.with_any, self.scanned),
            "by_source": {s: dict(c.most_common()) for s, c in sorted(self.by_source.items())},
            "unmapped_configs": dict(self.unmapped.most_common()),
        }


def _rows(counts: Counter[str], total: int, scanned: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        row = {"technique": name, "name": display_name(name), "count": count,
               "share": count / total if total else 0.0}
        if scanned is not None:
            row["share_of_scanned"] = count / scanned if scanned else 0.0
        rows.append(row)
    return rows


def census_cards(
    source: str = HUB_DATASET,
    *,
    sources: Iterable[str] = CARD_SOURCES,
    columns: CardColumns = CardColumns(),
    limit: int | None = None,
    on_item: Callable[[], None] | None = None,
) -> Tally:
    """Count the techniques named by the cards of ``source`` (Hub id or local Parquet/JSONL).

    ``sources`` picks where to look in each card; ``limit`` stops after that many cards;
    ``on_item`` is called once per card (progress display).
    """
    sources = tuple(sources)
    unknown = sorted(set(sources) - set(CARD_SOURCES))
    if unknown:
        raise UserError(f"unknown source '{unknown[0]}'; choose from {', '.join(CARD_SOURCES)}")
    tally = Tally(unit="cards")
    for card in islice(iter_cards(source, columns), limit):
        tally.add(detect_card(card, sources), adapter=is_adapter(card))
        if on_item:
            on_item()
    return tally


# ---------------------------------------------------------------------------------------------
# Code
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def config_classes() -> dict[str, str]:
    """PEFT config class name -> technique ("LoraConfig" -> "lora"), from PEFT's own mapping."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    classes = dict(EXTRA_CONFIG_CLASSES)
    for peft_type, config in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        classes[config.__name__] = str(getattr(peft_type, "value", peft_type)).lower()
    return classes


def peft_config_names(code: str) -> dict[str, set[str]]:
    """The ``...Config`` names a source text imports from peft ("import") or calls ("call")."""
    imported: set[str] = set()
    for match in _PEFT_IMPORT.finditer(code):
        imported.update(_CONFIG_NAME.findall(match.group(1)))
    return {"import": imported, "call": set(_PEFT_CALL.findall(code))}


def detect_code(code: str) -> tuple[dict[str, set[str]], set[str]]:
    """Techniques a source text uses through PEFT configs, per form; and unmapped config names."""
    classes = config_classes()
    found: dict[str, set[str]] = {}
    unmapped: set[str] = set()
    for form, names in peft_config_names(code).items():
        found[form] = {classes[n] for n in names if n in classes}
        unmapped.update(n for n in names if n not in classes and n not in GENERIC_CONFIG_CLASSES)
    return found, unmapped


def code_files(
    folder: str | os.PathLike[str], suffixes: Iterable[str] = CODE_SUFFIXES
) -> Iterator[Path]:
    """Source files under ``folder`` with one of ``suffixes``, skipping hidden folders."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"no such folder: {root}")
    suffixes = tuple(s.lower() for s in suffixes)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(suffixes):
                yield Path(dirpath) / name


def census_code(
    folder: str | os.PathLike[str],
    *,
    suffixes: Iterable[str] = CODE_SUFFIXES,
    on_item: Callable[[], None] | None = None,
) -> Tally:
    """Count the techniques used through PEFT config classes in the source files of ``folder``."""
    tally = Tally(unit="files")
    for path in code_files(folder, suffixes):
        found, unmapped = detect_code(path.read_text(encoding="utf-8", errors="replace"))
        tally.add(found)
        tally.unmapped.update(unmapped)
        if on_item:
            on_item()
    return tally


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def census_report(cards: Tally | None, code: Tally | None, inputs: Mapping[str, Any]) -> dict:
    """The JSON document of a census: inputs, then one summary per census that ran."""
    from peftbench import __version__

    report: dict[str, Any] = {"kind": "peftbench-census", "peftbench": __version__,
                              "inputs": dict(inputs)}
    if cards is not None:
        report["cards"] = cards.summary()
    if code is not None:
        report["code"] = code.summary()
    return report


def plot_census(report: Mapping[str, Any], path: str | os.PathLike[str], top: int = 12) -> Path:
    """Write a bar chart (PNG, SVG or PDF, by suffix) of the shares, atomically.

    One panel per census; for each of the ``top`` techniques two bars: its share of the items
    naming exactly one technique, and its share of the items mentioning any.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, report[k]) for k in ("cards", "code") if k in report]
    if not panels:
        raise UserError("nothing to plot: the census ran on no input")
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 0.45 * top + 2),
                             squeeze=False)
    for ax, (kind, summary) in zip(axes[0], panels, strict=True):
        _bar_panel(ax, kind, summary, top)
    fig.tight_layout()
    try:
        return _atomic_save(fig, Path(path))
    finally:
        plt.close(fig)


def _bar_panel(ax: Any, kind: str, summary: Mapping[str, Any], top: int) -> None:
    names = [row["technique"] for row in summary["any_mention"][:top]]
    one = {row["technique"]: row["share"] for row in summary["exactly_one"]}
    anym = {row["technique"]: row["share"] for row in summary["any_mention"]}
    ys = list(range(len(names)))
    ax.barh([y - 0.2 for y in ys], [100 * one.get(n, 0.0) for n in names], height=0.4,
            label=f"exactly one technique (n={summary['exactly_one_total']:,})")
    ax.barh([y + 0.2 for y in ys], [100 * anym.get(n, 0.0) for n in names], height=0.4,
            label=f"any mention (n={summary['with_any']:,})")
    for y, n in zip(ys, names, strict=True):
        ax.text(100 * one.get(n, 0.0) + 0.5, y - 0.2, f"{100 * one.get(n, 0.0):.1f}%",
                va="center", fontsize=7)
    ax.set_yticks(ys, [display_name(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel(f"% of the {summary['unit']} in each group (n in the legend)")
    what = "model cards" if kind == "cards" else "source files (peft config classes)"
    ax.set_title(f"PEFT techniques in {summary['scanned']:,} {what}")
    ax.legend(loc="lower right", fontsize=8)


def chart_format(path: str | os.PathLike[str]) -> str:
    """The image format a chart path asks for; checked before a long census, not after it."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in {"png", "svg", "pdf"}:
        raise UserError(f"chart file must end in .png, .svg or .pdf: {path}")
    return fmt


def _atomic_save(fig: Any, path: Path) -> Path:
    fmt = chart_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=150)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
