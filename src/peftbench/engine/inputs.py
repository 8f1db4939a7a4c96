"""The files a run reads that the user can change, by content: part of the run's identity.

A spec names its inputs by path (``jsonl:qa.jsonl``, ``--task-opt test=held-out.jsonl``, a
local model folder, ``--general-text wiki/``); the spec's hash cannot see an edit of those
files. Every run therefore records, beside its spec, each input's absolute path and content
hash (`InputRecord`, in ``run_info.peftbench.inputs``), and

- a resumed tournament compares them with the files as they are now (`stale_reason`): a result
  made from other content is run again, and the tournament says so;
- a result opened elsewhere (`peftbench export` from another folder, another machine) finds
  its inputs again by the recorded absolute path or an override, checked by content
  (`locate_inputs`); a missing or changed one is one line naming it and the option that points
  at it.

A file's content is its SHA-256. A folder's is the SHA-256 of its files' names and hashes
(hidden files left out). Large files (model weights) keep their recorded hash while their size
and modification time are unchanged, and are hashed again only when those differ; smaller
files are always hashed. Built-in tasks that read no user files have no inputs, so their
results and spec hashes are unaffected.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.errors import UserError

if TYPE_CHECKING:
    from peftbench.engine.spec import ExperimentSpec

#: files at least this large keep their recorded hash while size and mtime are unchanged
SHORTCUT_BYTES = 16 * 1024 * 1024
#: the spec fields that may name an input, besides task options (``task_options.KEY``)
TASK, MODEL, GENERAL_TEXT = "task", "model", "general_text"
_OPTIONS = "task_options."


@dataclass(frozen=True)
class InputFile:
    """One file of an input: its name inside the input ("" for a single file), size,
    modification time and SHA-256."""

    name: str
    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The file as JSON data."""
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns,
                "sha256": self.sha256}


@dataclass(frozen=True)
class InputRecord:
    """One input of a run: its role (``data``, ``validation``, ``model``, ``general_text``…),
    the spec field naming it, the path as given, the absolute path and the content hash."""

    role: str
    field: str
    given: str
    path: str
    sha256: str
    files: tuple[InputFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data (``run_info.peftbench.inputs`` entries)."""
        return {"role": self.role, "field": self.field, "given": self.given, "path": self.path,
                "sha256": self.sha256, "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputRecord:
        """The record from its JSON data."""
        files = tuple(InputFile(str(f["name"]), int(f["size"]), int(f["mtime_ns"]),
                                str(f["sha256"])) for f in data.get("files") or [])
        return cls(str(data["role"]), str(data["field"]), str(data["given"]),
                   str(data.get("path") or ""), str(data.get("sha256") or ""), files)

    def describe(self) -> str:
        """'data qa.jsonl' for messages."""
        return f"{self.role} {self.given}"


@dataclass(frozen=True)
class InputSlot:
    """A place in a spec that names an input the run reads."""

    role: str
    field: str
    given: str

    def describe(self) -> str:
        """'data qa.jsonl' for messages."""
        return f"{self.role} {self.given}"


# ---------------------------------------------------------------------------- finding inputs


def input_slots(spec: ExperimentSpec) -> list[InputSlot]:
    """The inputs ``spec`` reads from the user's files as they are now: the task's argument
    and every task option that names an existing file or folder, a local model folder, the
    general-text file when the forgetting probe reads it."""
    slots = []
    argument = spec.task.partition(":")[2]
    if argument and _exists(argument):
        slots.append(InputSlot("data", TASK, argument))
    for key, value in sorted(spec.task_options.items()):
        if isinstance(value, str) and value.strip() and _exists(value):
            slots.append(InputSlot(key, _OPTIONS + key, value))
    if _is_local_model(spec.model):
        slots.append(InputSlot("model", MODEL, spec.model))
    if spec.general_text and reads_field(spec, GENERAL_TEXT) and _exists(spec.general_text):
        slots.append(InputSlot("general_text", GENERAL_TEXT, spec.general_text))
    return slots


def reads_field(spec: ExperimentSpec, name: str) -> bool:
    """Whether a run of ``spec`` reads the input named in field ``name`` (the general text
    only when the forgetting probe runs)."""
    return name != GENERAL_TEXT or spec.train.forgetting_samples > 0


def record_inputs(spec: ExperimentSpec) -> list[InputRecord]:
    """The inputs of ``spec`` with their absolute paths and content hashes, for the result."""
    return [fingerprint(slot.role, slot.field, slot.given, _resolve(slot.given))
            for slot in input_slots(spec)]


def _exists(path: str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except (OSError, ValueError):
        return False


def _resolve(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _is_local_model(model: str) -> bool:
    """Whether ``model`` names a local folder (as `load_model` reads it), not a built-in."""
    from peftbench.engine.models import EMBEDDED, TINY

    key = model.strip()
    return key not in EMBEDDED and key not in TINY and _exists(key)


# ---------------------------------------------------------------------------- content


def fingerprint(role: str, field_name: str, given: str, path: Path,
                known: InputRecord | None = None) -> InputRecord:
    """The content of the file or folder at ``path``; large files keep ``known``'s hash while
    their path, size and modification time are those recorded there."""
    reuse = _reusable(known, path)
    if path.is_file():
        files = (_file(path, "", reuse),)
        return InputRecord(role, field_name, given, str(path), files[0].sha256, files)
    files = tuple(_file(file, name, reuse) for name, file in _folder_files(path))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{f.sha256}\n".encode())
    return InputRecord(role, field_name, given, str(path), digest.hexdigest(), files)


def _reusable(known: InputRecord | None, path: Path) -> dict[str, InputFile]:
    if known is None or known.path != str(path):
        return {}
    return {f.name: f for f in known.files if f.size >= SHORTCUT_BYTES}


def _folder_files(folder: Path) -> list[tuple[str, Path]]:
    """Every file under ``folder`` (not hidden, not under hidden folders), by relative name."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                file = Path(root) / name
                found.append((file.relative_to(folder).as_posix(), file))
    return sorted(found)


def _file(path: Path, name: str, reuse: dict[str, InputFile]) -> InputFile:
    stat = path.stat()
    known = reuse.get(name)
    if known is not None and known.size == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
        return known
    return InputFile(name, stat.st_size, stat.st_mtime_ns, file_sha256(path, stat))


_MEMO: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path, stat: os.stat_result | None = None) -> str:
    """The SHA-256 of a file's bytes (remembered in this process by path, size, mtime and
    inode, for files read again within one run or tournament)."""
    stat = stat or path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _MEMO[key] = digest.hexdigest()
    return _MEMO[key]


# ---------------------------------------------------------------------------- resume


def parse_inputs(data: Any) -> list[InputRecord] | None:
    """The recorded inputs of a result (None when it recorded none: an older file)."""
    if not isinstance(data, list):
        return None
    try:
        return [InputRecord.from_json(entry) for entry in data]
    except (KeyError, TypeError, ValueError):
        return None


def stale_reason(recorded: list[InputRecord] | None, spec: ExperimentSpec) -> str | None:
    """Why a result of ``spec`` that recorded ``recorded`` no longer describes the files as
    they are now (an input's content changed, or the result predates input records), or None
    when it still does. An input recorded but missing now is left to the run to report."""
    slots = input_slots(spec)
    if recorded is None:
        return (f"{slots[0].describe()}: its content was not recorded (a result from an older "
                "peftbench)") if slots else None
    by_field = {r.field: r for r in recorded}
    for slot in slots:
        known = by_field.get(slot.field)
        if known is None:
            return f"{slot.describe()} was not read by the earlier run"
        now = fingerprint(slot.role, slot.field, slot.given, _resolve(slot.given), known)
        if now.sha256 != known.sha256:
            return (f"{slot.describe()} changed (content {known.sha256[:8]} then, "
                    f"{now.sha256[:8]} now)")
    return None


def inputs_digest(records: list[InputRecord]) -> str:
    """One hash over the inputs' roles and contents ("" when there are none)."""
    if not records:
        return ""
    text = "\n".join(f"{r.field}\0{r.sha256}" for r in sorted(records, key=lambda r: r.field))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- travel


def override_option(role: str) -> str:
    """The option of `peftbench export` that points at an input: ``--data PATH`` for the
    data, ``--input ROLE=PATH`` for the others."""
    return "--data PATH" if role == "data" else f"--input {role}=PATH"


def locate_inputs(spec: ExperimentSpec, recorded: list[InputRecord], where: str,
                  overrides: dict[str, str] | None = None) -> ExperimentSpec:
    """``spec`` with each input it reads pointed at a file holding the recorded content: the
    override for its role, else the path as given (from here), else the recorded absolute
    path. A missing or changed input is a `UserError` naming it and the option that points
    at another copy; an override for an input the run did not read is one too."""
    overrides = dict(overrides or {})
    roles = {r.role for r in recorded}
    for role in overrides:
        if role not in roles:
            read = ", ".join(sorted(roles)) or "none"
            raise UserError(f"{override_option(role).split()[0]} {role}: the run read no such "
                            f"input (its inputs: {read})")
    updates = {r.field: str(_find(r, overrides.get(r.role), where))
               for r in recorded if reads_field(spec, r.field)}
    return with_inputs(spec, updates)


def _find(record: InputRecord, override: str | None, where: str) -> Path:
    """Where ``record``'s content is now (see `locate_inputs`)."""
    option = override_option(record.role)
    if override is not None:
        path = _resolve(override)
        if not path.exists():
            raise UserError(f"{option.split()[0]} {override}: no such file or folder")
        if _matches(record, path):
            return path
        raise UserError(f"{override} is not the {record.role} the run read (its content "
                        f"differs from {record.path}, as recorded in {where})")
    changed = None
    for candidate in dict.fromkeys([_resolve(record.given), Path(record.path)]):
        if candidate.exists():
            if _matches(record, candidate):
                return candidate
            changed = changed or candidate
    if changed is not None:
        raise UserError(f"{where}: the run's {record.role} {changed} has changed since the run; "
                        f"point at the original with {option}")
    raise UserError(f"{where}: the run's {record.role} {record.given} is missing (it was at "
                    f"{record.path}); point at it with {option}")


def _matches(record: InputRecord, path: Path) -> bool:
    """Whether ``path`` holds ``record``'s content (an unrecorded hash matches anything)."""
    if not record.sha256:
        return True
    known = record if Path(record.path) == path else None
    return fingerprint(record.role, record.field, record.given, path, known).sha256 == \
        record.sha256


def with_inputs(spec: ExperimentSpec, updates: dict[str, str]) -> ExperimentSpec:
    """``spec`` with the inputs named in ``updates`` (field -> path) replaced."""
    if not updates:
        return spec
    fields: dict[str, Any] = {}
    options = dict(spec.task_options)
    for name, path in updates.items():
        if name == TASK:
            fields["task"] = f"{spec.task.partition(':')[0]}:{path}"
        elif name.startswith(_OPTIONS):
            options[name.removeprefix(_OPTIONS)] = path
        elif name in (MODEL, GENERAL_TEXT):
            fields[name] = path
    return spec.model_copy(update={**fields, "task_options": options})


def legacy_inputs(spec: ExperimentSpec, dataset_info: dict[str, Any]) -> list[InputRecord]:
    """Inputs of a result written before inputs were recorded: the data files whose absolute
    paths its ``meta_info.dataset_info`` holds (no content hash, so not checked)."""
    found = []
    argument = spec.task.partition(":")[2]
    places = {"data": (TASK, argument) if argument else
              (_OPTIONS + "data", spec.task_options.get("data")),
              "validation": (_OPTIONS + "validation", spec.task_options.get("validation")),
              "test": (_OPTIONS + "test", spec.task_options.get("test"))}
    for role, (name, given) in places.items():
        path = dataset_info.get(role)
        if isinstance(given, str) and given and isinstance(path, str) and path:
            found.append(InputRecord(role, name, given, path, ""))
    return found

